package polite

import (
	"bytes"
	"io"
	"net/http"
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

// readClose copies at most limit bytes of body to w, for at most maxDrainTime, and closes it: a read cut
// short by time closes the body while the read is under way, which unblocks net/http's HTTP/1 and HTTP/2
// bodies and loses only the connection. It reports whether w got all of the body (fewer than limit
// bytes, then the end).
func readClose(body io.ReadCloser, w io.Writer, limit int64) (whole bool) {
	var once sync.Once
	closeBody := func() { once.Do(func() { _ = body.Close() }) }
	timer := time.AfterFunc(maxDrainTime, closeBody)
	n, err := io.Copy(w, io.LimitReader(body, limit))
	timer.Stop()
	closeBody()
	return err == nil && n < limit
}

// keep reads resp's body into memory, at most maxDrain (64 KiB) of it for at most maxDrainTime (250 ms),
// and returns resp with that body, readable and closable as before; nil (the body closed, its connection
// lost) when it is larger or slower than that. A response being retried is kept so: it can still be given
// to the caller, while its connection is back in the pool.
func keep(resp *http.Response) *http.Response {
	if resp == nil || resp.Body == nil {
		return resp
	}
	var buf bytes.Buffer
	if !readClose(resp.Body, &buf, maxDrain) {
		return nil
	}
	resp.Body = io.NopCloser(bytes.NewReader(buf.Bytes()))
	return resp
}
