package bench

import (
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/politehttp/polite"
)

// BenchmarkScale shares one polite Transport over the canned base among G goroutines that split b.N
// requests between them. ns/op is wall time per request with all G at work: on P cores, the ideal is flat
// from G = P on, and G = 1 uses one core only.
func BenchmarkScale(b *testing.B) {
	for _, g := range []int{1, 64, 1024, 10000} {
		b.Run(fmt.Sprintf("goroutines=%d", g), func(b *testing.B) {
			rt := polite.New(newCanned())
			reqs := make([]*http.Request, g)
			for i := range reqs {
				reqs[i] = newRequest(b, target)
			}
			var (
				wg    sync.WaitGroup
				start = make(chan struct{})
				fail  atomic.Pointer[error]
			)
			for i := range g {
				n := b.N / g
				if i < b.N%g {
					n++
				}
				if n == 0 {
					break
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					for range n {
						if err := do(rt, reqs[i]); err != nil {
							keepFirst(&fail, err)
							return
						}
					}
				}()
			}
			b.ReportAllocs()
			b.ResetTimer()
			close(start)
			wg.Wait()
			b.StopTimer()
			if err := fail.Load(); err != nil {
				b.Fatal(*err)
			}
		})
	}
}

// keepFirst stores err in p unless p holds an error already. Only a failing call pays for the error's
// heap cell.
func keepFirst(p *atomic.Pointer[error], err error) { p.CompareAndSwap(nil, &err) }

// parkBase answers its first request with a spent quota that resets at reset, and every later one with
// plenty of quota. It records when the second request (the first after the reset) and the latest one
// reached it.
type parkBase struct {
	first, rest  http.Header
	calls        atomic.Int64
	second, last atomic.Int64 // UnixNano
}

func newParkBase(reset time.Time) *parkBase {
	return &parkBase{
		first: quotaHeader("0", reset),
		rest:  quotaHeader("999999", reset.Add(time.Hour)),
	}
}

func (p *parkBase) RoundTrip(req *http.Request) (*http.Response, error) {
	now := time.Now().UnixNano()
	for {
		last := p.last.Load()
		if now <= last || p.last.CompareAndSwap(last, now) {
			break
		}
	}
	switch p.calls.Add(1) {
	case 1:
		return cannedResponse(req, p.first), nil
	case 2:
		p.second.Store(now)
	}
	return cannedResponse(req, p.rest), nil
}

// parked is a parked-waiters experiment: one request spends the quota, then n more are sent
// concurrently and park on the throttle until reset.
type parked struct {
	base   *parkBase
	client *http.Client // over polite: requests park as an application's do, under http.Client's frames
	req    *http.Request
	reset  time.Time
	waits  atomic.Int64 // throttle waits begun
	wg     sync.WaitGroup
	failed atomic.Int64
}

func newParked(tb testing.TB, reset time.Time) *parked {
	p := &parked{base: newParkBase(reset), reset: reset, req: newRequest(tb, target)}
	p.client = &http.Client{Transport: polite.New(p.base, polite.WithHook(func(e polite.Event) {
		if e.Kind == polite.EventThrottle {
			p.waits.Add(1)
		}
	}))}
	if err := p.get(); err != nil {
		tb.Fatal(err)
	}
	return p
}

// send starts n requests, each on a goroutine of its own. The goroutines get their arguments on their
// stacks, so starting them allocates no closure.
func (p *parked) send(n int) {
	p.wg.Add(n)
	for range n {
		go sendOne(p)
	}
}

func sendOne(p *parked) {
	defer p.wg.Done()
	if err := p.get(); err != nil {
		p.failed.Add(1)
	}
}

// get sends the experiment's request through its client and reads the answer.
func (p *parked) get() error {
	resp, err := p.client.Do(p.req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.Body.Close()
}

// warmGoroutines starts n goroutines and lets them end, so that the runtime's free list holds n goroutine
// descriptors and stacks: the goroutines started next reuse them instead of growing the heap.
func warmGoroutines(n int) {
	var wg sync.WaitGroup
	release := make(chan struct{})
	wg.Add(n)
	for range n {
		go parkOn(release, &wg)
	}
	close(release)
	wg.Wait()
}

func parkOn(release chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	<-release
}

func heapAlloc() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkParkedWaiters parks 10,000, then 100,000 requests on a throttle wait and reports, on the real
// clock:
//   - heapB/parked: live heap per parked request (HeapAlloc delta after GC, divided by their number), with
//     goroutine descriptors and stacks excluded by reusing freed goroutines;
//   - stackB/parked: what each parked goroutine's stack adds on top (StackInuse delta per request), for
//     context;
//   - ms-first-after-reset: how long after the reset the first parked request reached the base;
//   - ms-last-after-reset: how long after the reset the last one did.
//
// Each iteration waits for a reset 1 to 2 seconds ahead, so the benchmark takes that long per run.
func BenchmarkParkedWaiters(b *testing.B) {
	for _, n := range []int{10000, 100000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) { benchmarkParked(b, n) })
	}
}

func benchmarkParked(b *testing.B, n int) {
	var heap, stack, last, first float64
	for range b.N {
		reset := time.Now().Truncate(time.Second).Add(2 * time.Second)
		p := newParked(b, reset)
		warmGoroutines(n)
		var m0, m1 runtime.MemStats
		h0 := heapAlloc()
		runtime.ReadMemStats(&m0)
		p.send(n)
		for p.waits.Load() < int64(n) {
			if time.Now().After(reset) {
				b.Fatalf("only %d of %d requests parked before the reset", p.waits.Load(), n)
			}
			time.Sleep(time.Millisecond)
		}
		time.Sleep(20 * time.Millisecond) // from the hook to the select
		h1 := heapAlloc()
		runtime.ReadMemStats(&m1)
		if time.Now().After(reset) {
			b.Fatal("the reset passed before the heap was measured")
		}
		if calls := p.base.calls.Load(); calls != 1 {
			b.Fatalf("%d requests reached the base before the reset, want 1", calls)
		}
		p.wg.Wait()
		if f := p.failed.Load(); f != 0 {
			b.Fatalf("%d parked requests failed", f)
		}
		heap += (float64(h1) - float64(h0)) / float64(n)
		stack += (float64(m1.StackInuse) - float64(m0.StackInuse)) / float64(n)
		first += msAfter(p.base.second.Load(), reset)
		last += msAfter(p.base.last.Load(), reset)
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(heap/float64(b.N), "heapB/parked")
	b.ReportMetric(stack/float64(b.N), "stackB/parked")
	b.ReportMetric(last/float64(b.N), "ms-last-after-reset")
	b.ReportMetric(first/float64(b.N), "ms-first-after-reset")
}

func msAfter(unixNano int64, t time.Time) float64 {
	return float64(time.Unix(0, unixNano).Sub(t)) / float64(time.Millisecond)
}

// TestParkedWaitersRelease checks the parked-waiters experiment on the fake clock of a synctest bubble: the
// parked requests wait, none reaches the base before the reset, and all are released at it.
func TestParkedWaitersRelease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 1000
		reset := time.Now().Truncate(time.Second).Add(2 * time.Second)
		p := newParked(t, reset)
		p.send(n)
		synctest.Wait()
		if got := p.waits.Load(); got != n {
			t.Fatalf("%d of %d requests parked", got, n)
		}
		if calls := p.base.calls.Load(); calls != 1 {
			t.Fatalf("%d requests reached the base before the reset, want 1", calls)
		}
		p.wg.Wait()
		if f := p.failed.Load(); f != 0 {
			t.Fatalf("%d parked requests failed", f)
		}
		if calls := p.base.calls.Load(); calls != n+1 {
			t.Fatalf("%d requests reached the base, want %d", calls, n+1)
		}
		first, last := time.Unix(0, p.base.second.Load()), time.Unix(0, p.base.last.Load())
		if first.Before(reset) {
			t.Errorf("a parked request reached the base %v before the reset", reset.Sub(first))
		}
		if late := last.Sub(reset); late > time.Second {
			t.Errorf("the last parked request was released %v after the reset", late)
		}
		t.Logf("released from %v to %v after the reset (fake clock)", first.Sub(reset), last.Sub(reset))
	})
}
