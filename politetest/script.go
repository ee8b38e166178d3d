package politetest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// A Step is one scripted answer; see [Server.Script].
type Step struct {
	// Status is the status code sent; 0 means 200.
	Status int
	// Header is added to the response after the rate-limit headers, so it
	// may override them. Without a Content-Type, net/http sniffs one.
	Header http.Header
	// Body is sent as is.
	Body string
	// Delay is waited before answering (on a real timer, fake inside a
	// testing/synctest bubble). If the request's context ends first, no
	// answer is written.
	Delay time.Duration
	// SkipQuota answers without consulting or counting the quotas, and
	// without rate-limit headers.
	SkipQuota bool
}

// Validation returns a Step answering status (typically 422 or 409) with a
// JSON body in the contract's error shape, e.g.
//
//	{"errors":["Name is required."],"message":"Validation failed"}
//
// errs may be empty, giving "errors":[].
func Validation(status int, message string, errs ...string) Step {
	return Step{
		Status: status,
		Header: http.Header{"Content-Type": {"application/json"}},
		Body:   errorBody(message, errs...),
	}
}

// errorBody returns the contract's JSON error shape.
func errorBody(message string, errs ...string) string {
	if errs == nil {
		errs = []string{}
	}
	b, err := json.Marshal(struct {
		Errors  []string `json:"errors"`
		Message string   `json:"message"`
	}{errs, message})
	if err != nil { // cannot happen: strings always marshal
		panic(err)
	}
	return string(b)
}

// route is what the server does for one exact path besides the default.
type route struct {
	steps    []Step
	next     int       // index of the next step; the last one repeats
	redirect *redirect // set instead of steps for redirects
}

// peek returns the step that answers the next request.
func (r *route) peek() *Step {
	return &r.steps[min(r.next, len(r.steps)-1)]
}

// Script makes the requests to path (exact match on the URL path, any
// method) answered by steps in order; once they are used up, the last
// step answers every further request. A step is used up only when it
// answers: a request refused by a quota does not consume it. Calling
// Script again replaces the path's script (or redirect) and starts from
// its first step; calling it with no steps removes it, giving the path
// back to the default answer. Scripted paths never get [Faults]. Script
// may be called at any time, concurrently with requests; it panics on an
// invalid path or step.
func (s *Server) Script(path string, steps ...Step) {
	checkPath("Script", path)
	own := make([]Step, len(steps))
	for i, st := range steps {
		if st.Status != 0 && (st.Status < 200 || st.Status > 599) {
			panic(fmt.Sprintf("politetest: Script(%q): step %d: status %d out of range 200-599", path, i, st.Status))
		}
		if st.Delay < 0 {
			panic(fmt.Sprintf("politetest: Script(%q): step %d: negative delay", path, i))
		}
		st.Header = st.Header.Clone()
		own[i] = st
	}
	if len(own) == 0 {
		s.setRoute(path, nil)
		return
	}
	s.setRoute(path, &route{steps: own})
}

func (s *Server) setRoute(path string, r *route) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r == nil {
		delete(s.routes, path)
		return
	}
	s.routes[path] = r
}

func checkPath(what, path string) {
	if !strings.HasPrefix(path, "/") {
		panic(fmt.Sprintf("politetest: %s(%q): path must start with \"/\"", what, path))
	}
}
