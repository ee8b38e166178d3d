package polite

import (
	"hash/maphash"
	"net/http"
)

// DefaultRoute names the route of req for the throttle's learned buckets: the method and the URL path
// with ID-like segments (decimal numbers, UUIDs, hex strings of 16 or more characters) collapsed to
// ":id", e.g. "GET /v2/users/:id/repos". [RouteKey] replaces it. It is safe for concurrent use.
func DefaultRoute(req *http.Request) string {
	var buf [128]byte
	return string(appendRoute(buf[:0], req))
}

// routeHash hashes the route DefaultRoute would name: it is maphash.String of that name.
func routeHash(seed maphash.Seed, req *http.Request) uint64 {
	var buf [128]byte // most routes fit: the name is built on the stack
	return maphash.Bytes(seed, appendRoute(buf[:0], req))
}

// pathHash hashes what a request's route depends on: the method and the raw path. (The route's name does
// not depend on the throttle key, so the key is left out: requests of two keys to one path share a memo.)
func pathHash(seed maphash.Seed, req *http.Request) uint64 {
	const mix = 0x9e3779b97f4a7c15 // odd: multiplying by it spreads one hash's bits before the next is added
	return maphash.String(seed, req.URL.Path)*mix ^ methodHash(seed, req.Method)
}

// methodHash hashes an HTTP method: the common ones by a switch, which costs less than hashing, to fixed
// random-looking constants that differ in all their bits as much as hashes do.
func methodHash(seed maphash.Seed, method string) uint64 {
	switch method {
	case http.MethodGet:
		return 0xe220a8397b1dcdaf
	case http.MethodHead:
		return 0x6e789e6aa1b965f4
	case http.MethodPost:
		return 0x06c45d188009454f
	case http.MethodPut:
		return 0xf88bb8a8724c81ec
	case http.MethodPatch:
		return 0xd1cbf3d2b3e3f3a1
	case http.MethodDelete:
		return 0x7a1f3c9e5b2d4e8f
	}
	return maphash.String(seed, method)
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
