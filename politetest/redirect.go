package politetest

import (
	"fmt"
	"net/http"
	"strconv"
)

type redirect struct {
	status   int
	location string
}

func checkRedirectStatus(what string, status int) {
	switch status {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
	default:
		panic(fmt.Sprintf("politetest: %s: status %d is not 301, 302, 303, 307 or 308", what, status))
	}
}

// RedirectChain makes path redirect n times with status (301, 302, 303,
// 307 or 308) before reaching final: path → path+"/hop/1" → … →
// path+"/hop/"+(n-1) → final. Locations are relative, so the client stays
// on this server. Each hop is a request of its own: it is counted by the
// quotas and logged with rule [RuleRedirect]. final answers as any path
// does (script or default). RedirectChain replaces any script or redirect
// of these paths; it may be called at any time and panics on invalid
// arguments.
func (s *Server) RedirectChain(path string, n, status int, final string) {
	what := fmt.Sprintf("RedirectChain(%q)", path)
	checkPath("RedirectChain", path)
	checkPath("RedirectChain", final)
	checkRedirectStatus(what, status)
	if n < 1 {
		panic(fmt.Sprintf("politetest: %s: n must be at least 1, got %d", what, n))
	}
	from := path
	for i := 1; i < n; i++ {
		to := path + "/hop/" + strconv.Itoa(i)
		s.setRoute(from, &route{redirect: &redirect{status, to}})
		from = to
	}
	s.setRoute(from, &route{redirect: &redirect{status, final}})
}

// RedirectLoop makes path redirect to itself with status (301, 302, 303,
// 307 or 308), forever; a client must give up (net/http stops after 10
// redirects). It may be called at any time and panics on invalid
// arguments.
func (s *Server) RedirectLoop(path string, status int) {
	checkPath("RedirectLoop", path)
	checkRedirectStatus(fmt.Sprintf("RedirectLoop(%q)", path), status)
	s.setRoute(path, &route{redirect: &redirect{status, path}})
}

// RedirectTo makes path redirect with status (301, 302, 303, 307 or 308)
// to url, typically another origin such as a second Server's URL plus a
// path. It may be called at any time and panics on invalid arguments.
func (s *Server) RedirectTo(path, url string, status int) {
	checkPath("RedirectTo", path)
	checkRedirectStatus(fmt.Sprintf("RedirectTo(%q)", path), status)
	if url == "" {
		panic(fmt.Sprintf("politetest: RedirectTo(%q): empty url", path))
	}
	s.setRoute(path, &route{redirect: &redirect{status, url}})
}
