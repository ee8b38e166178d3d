package politetest

import "testing"

// TestCounterIgnoresOlderWindow: a request timed just before a boundary that takes the lock after one
// timed just after it must not roll the counter back and reopen the window.
func TestCounterIgnoresOlderWindow(t *testing.T) {
	var c counter
	c.roll(5)
	c.curr = 7
	c.roll(4)
	if c.win != 5 || c.curr != 7 {
		t.Errorf("after a late request of window 4: window %d, count %d; want window 5, count 7", c.win, c.curr)
	}
}
