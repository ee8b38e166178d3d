package polite

import "io"

// maxDrain is the most drainClose reads from a discarded body before
// closing it. Draining a small remainder lets net/http reuse the
// connection; a body larger than this is cheaper to abandon.
const maxDrain = 64 << 10

// drainClose reads at most maxDrain (64 KiB) of a discarded response body
// and closes it, so the connection can be reused. Read and close errors are
// ignored: the body is being thrown away. A nil body is a no-op.
func drainClose(body io.ReadCloser) {
	if body == nil {
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(body, maxDrain))
	_ = body.Close()
}
