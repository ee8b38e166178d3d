package politetest

import (
	"maps"
	"net/http"
	"slices"
	"time"
)

// A Rule names what produced an answer, as recorded in [Request.Rule].
type Rule string

// The rules, in the order the server tries them: the quotas first, then
// the path's script or redirect, then faults, then the default answer.
const (
	RuleQuota      Rule = "quota"       // 429 from a quota
	RuleScript     Rule = "script"      // a Step of Server.Script
	RuleRedirect   Rule = "redirect"    // RedirectChain, RedirectLoop, RedirectTo
	RuleFault500   Rule = "fault:500"   // Faults.Rate500
	RuleFault502   Rule = "fault:502"   // Faults.Rate502
	RuleFault503   Rule = "fault:503"   // Faults.Rate503
	RuleFault504   Rule = "fault:504"   // Faults.Rate504
	RuleFaultReset Rule = "fault:reset" // Faults.RateReset; Status 0
	RuleFaultSlow  Rule = "fault:slow"  // Faults.RateSlow; Status 200
	RuleDefault    Rule = "default"     // 200 {"ok":true,"path":...}
)

// A Request is the log entry of one request the server received. It is
// recorded when the server decides the answer, before any delay, so an
// answer may still be in flight.
type Request struct {
	Time       time.Time   // arrival, on the server's clock
	Method     string      // e.g. "GET"
	Path       string      // URL path, without the query
	Header     http.Header // request headers, a copy
	Key        string      // key the quotas counted it under
	BodyLen    int64       // length of the request body read
	BodySHA256 string      // lowercase hex SHA-256 of that body
	Status     int         // status sent; 0 when the connection was reset
	Rule       Rule        // what answered
}

// Stats counts the answers of a server; see [Server.Stats].
type Stats struct {
	Total           int          // requests logged
	ByStatus        map[int]int  // answers per status; 0 counts resets
	ByRule          map[Rule]int // answers per rule
	TooManyRequests int          // answers with status 429, from a quota or a script
}

// record logs one request. s.mu must be held.
func (s *Server) record(r Request) {
	s.log = append(s.log, r)
	s.stats.Total++
	s.stats.ByStatus[r.Status]++
	s.stats.ByRule[r.Rule]++
	if r.Status == http.StatusTooManyRequests {
		s.stats.TooManyRequests++
	}
}

// Requests returns a copy of the request log, in the order the answers
// were decided. It is safe to call concurrently with requests.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := slices.Clone(s.log)
	for i := range out {
		out[i].Header = out[i].Header.Clone()
	}
	return out
}

// Stats returns a copy of the server's counters. It is safe to call
// concurrently with requests.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.ByStatus = maps.Clone(st.ByStatus)
	st.ByRule = maps.Clone(st.ByRule)
	return st
}
