package polite

import (
	"hash/maphash"
	"net/http"
	"strings"
)

// DefaultRoute names the route of req for the throttle's learned buckets: the method and the URL path
// with ID-like segments (decimal numbers, UUIDs, hex strings of 16 or more characters) collapsed to
// ":id", e.g. "GET /v2/users/:id/repos". [RouteKey] replaces it. It is safe for concurrent use.
func DefaultRoute(req *http.Request) string {
	var b strings.Builder
	b.WriteString(req.Method)
	b.WriteByte(' ')
	forEachSegment(req.URL.Path, func(seg string, first bool) {
		if !first {
			b.WriteByte('/')
		}
		b.WriteString(seg)
	})
	return b.String()
}

// routeHash hashes the route DefaultRoute would name, without building it.
func routeHash(seed maphash.Seed, req *http.Request) uint64 {
	var h maphash.Hash
	h.SetSeed(seed)
	h.WriteString(req.Method)
	h.WriteByte(' ')
	forEachSegment(req.URL.Path, func(seg string, first bool) {
		if !first {
			h.WriteByte('/')
		}
		h.WriteString(seg)
	})
	return h.Sum64()
}

// forEachSegment calls f with each "/"-separated segment of path, ID-like ones replaced by ":id".
func forEachSegment(path string, f func(seg string, first bool)) {
	for i, first := 0, true; ; first = false {
		j := strings.IndexByte(path[i:], '/')
		seg := path[i:]
		if j >= 0 {
			seg = path[i : i+j]
		}
		if idLike(seg) {
			seg = ":id"
		}
		f(seg, first)
		if j < 0 {
			return
		}
		i += j + 1
	}
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
