package polite

import "net/http"

// DefaultRoute names the route of req for the throttle's learned buckets: the method and the URL path
// with ID-like segments (decimal numbers, UUIDs, hex strings of 16 or more characters) collapsed to
// ":id", e.g. "GET /v2/users/:id/repos". [RouteKey] replaces it. It is safe for concurrent use.
func DefaultRoute(req *http.Request) string {
	var buf [128]byte
	return string(appendRoute(buf[:0], req))
}

// appendRoute appends the name DefaultRoute gives req's route to b.
func appendRoute(b []byte, req *http.Request) []byte {
	b = append(b, req.Method...)
	b = append(b, ' ')
	path := req.URL.Path
	for i, start := 0, 0; i <= len(path); i++ {
		if i < len(path) && path[i] != '/' {
			continue
		}
		if seg := path[start:i]; idLike(seg) {
			b = append(b, ":id"...)
		} else {
			b = append(b, seg...)
		}
		if i < len(path) {
			b = append(b, '/')
		}
		start = i + 1
	}
	return b
}

// idLike reports whether a path segment looks like an identifier rather than a name.
func idLike(s string) bool {
	if s == "" {
		return false
	}
	digits, hex := 0, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			digits++
			hex++
		case c >= 'a' && c <= 'f', c >= 'A' && c <= 'F':
			hex++
		case c != '-':
			return false // a byte no identifier form has: a name, told at its first such byte
		}
	}
	switch {
	case digits == len(s):
		return true
	case hex == len(s) && len(s) >= 16:
		return true
	case len(s) == 36 && hex == 32 && s[8] == '-' && s[13] == '-' && s[18] == '-' && s[23] == '-':
		return true // a UUID
	}
	return false
}
