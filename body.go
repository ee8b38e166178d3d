package polite

import (
	"io"
	"sync"
	"time"
)

// Bounds on draining a discarded response body. Draining a small remainder lets net/http reuse the
// connection; a larger or slower one is cheaper to abandon: a new connection costs a handshake, a few
// round trips, while a body that trickles or stalls would hold the next attempt back for as long as the
// server likes.
const (
	maxDrain     = 64 << 10               // bytes
	maxDrainTime = 250 * time.Millisecond // from the start of the drain
)

// drainClose reads at most maxDrain (64 KiB) of a discarded response body, for at most maxDrainTime
// (250 ms), and closes it. A drain cut short by time closes the body while the read is under way,
// which unblocks net/http's HTTP/1 and HTTP/2 bodies and loses only the connection. Read and close
// errors are ignored: the body is being thrown away. A nil body is a no-op.
func drainClose(body io.ReadCloser) {
	if body == nil {
		return
	}
	var once sync.Once
	closeBody := func() { once.Do(func() { _ = body.Close() }) }
	timer := time.AfterFunc(maxDrainTime, closeBody)
	_, _ = io.Copy(io.Discard, io.LimitReader(body, maxDrain))
	timer.Stop()
	closeBody()
}
