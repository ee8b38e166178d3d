package politetest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"time"
)

// A Server is a fake rate-limited HTTP API. Its methods are safe for
// concurrent use, except Start, which must not run concurrently with
// Client, Close or reads of URL.
type Server struct {
	// URL is the base URL of the listening server, such as
	// "http://127.0.0.1:41234", with no trailing slash. It is empty until
	// Start (NewServer starts the server).
	URL string

	cfg     config
	ts      *httptest.Server
	inProc  *http.Client
	handler http.Handler

	mu       sync.Mutex
	epoch    time.Time
	epochSet bool
	counters map[counterKey]*counter
	routes   map[string]*route
	rng      *rand.Rand
	log      []Request
	stats    Stats
}

// NewServer returns a Server listening on a loopback address. The caller
// should call Close when done. It panics on an invalid option.
func NewServer(opts ...Option) *Server {
	s := NewUnstartedServer(opts...)
	s.Start()
	return s
}

// NewUnstartedServer returns a Server that does not listen yet: no socket
// and no goroutine exist until Start. Its Handler and Client already work
// in-process, which suits testing/synctest bubbles where loopback I/O does
// not let the fake clock advance. It panics on an invalid option.
func NewUnstartedServer(opts ...Option) *Server {
	cfg := defaultConfig()
	for _, o := range opts {
		if o == nil {
			panic("politetest: nil Option")
		}
		o(&cfg)
	}
	cfg.validate()
	s := &Server{
		cfg:      cfg,
		counters: make(map[counterKey]*counter),
		routes:   make(map[string]*route),
		stats:    Stats{ByStatus: make(map[int]int), ByRule: make(map[Rule]int)},
	}
	if cfg.faults != nil {
		s.rng = newRand(cfg.faults.Seed)
	}
	if !cfg.epoch.IsZero() {
		s.epoch, s.epochSet = cfg.epoch, true
	}
	s.handler = http.HandlerFunc(s.serveHTTP)
	s.inProc = &http.Client{Transport: inProcess{s.handler}}
	return s
}

// Start starts listening on a loopback address via net/http/httptest and
// sets URL. It panics if the server is already started.
func (s *Server) Start() {
	if s.ts != nil {
		panic("politetest: Server already started")
	}
	s.ts = httptest.NewServer(s.handler)
	s.URL = s.ts.URL
}

// Close shuts a started server down and blocks until all outstanding
// requests have completed. It does nothing on an unstarted server and may
// be called more than once.
func (s *Server) Close() {
	if s.ts != nil {
		s.ts.Close()
	}
}

// Client returns an HTTP client for the server. Once started, it is the
// httptest client for its listener, closed with the server. Before Start,
// it serves every request in-process through Handler, whatever the URL's
// host (redirects to other origins included), with RemoteAddr
// "192.0.2.1:1234"; a connection-reset fault then becomes a client error
// wrapping [syscall.ECONNRESET].
func (s *Server) Client() *http.Client {
	if s.ts != nil {
		return s.ts.Client()
	}
	return s.inProc
}

// Handler returns the server's handler, to mount it elsewhere or call it
// directly, e.g. with an httptest.ResponseRecorder. It shares the server's
// quotas, scripts and log, and is safe for concurrent use. A
// connection-reset fault makes it panic with [net/http.ErrAbortHandler]
// when the ResponseWriter cannot be hijacked.
func (s *Server) Handler() http.Handler {
	return s.handler
}

// answer is what the server decided to send.
type answer struct {
	status int
	header http.Header
	body   string
	delay  time.Duration // before anything is written
	reset  bool          // close the connection instead
	slow   time.Duration // pause in the middle of the body
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	now := s.cfg.now()
	body, _ := io.ReadAll(r.Body) // on a read error, log what arrived
	sum := sha256.Sum256(body)
	key := s.cfg.key(r)
	a := s.decide(Request{
		Time:       now,
		Method:     r.Method,
		Path:       r.URL.Path,
		Header:     r.Header.Clone(),
		Key:        key,
		BodyLen:    int64(len(body)),
		BodySHA256: hex.EncodeToString(sum[:]),
	})
	s.write(w, r, a)
}

// decide chooses the answer to req, updates the quotas and scripts, and
// logs req with its status and rule.
func (s *Server) decide(req Request) answer {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.epochSet {
		s.epoch, s.epochSet = req.Time, true
	}
	a := answer{status: http.StatusOK, header: make(http.Header)}
	rt := s.routes[req.Path]
	skip := rt != nil && rt.redirect == nil && rt.peek().SkipQuota
	if !skip {
		v := s.admit(req.Time, req.Path, req.Key)
		s.cfg.rateHeaders(a.header, v, req.Time)
		if !v.ok {
			s.cfg.refuse(&a, v)
			req.Rule = RuleQuota
		}
	}
	switch {
	case req.Rule != "":
	case rt != nil && rt.redirect != nil:
		req.Rule = RuleRedirect
		a.status = rt.redirect.status
		a.header.Set("Location", rt.redirect.location)
	case rt != nil:
		req.Rule = RuleScript
		st := rt.peek()
		if rt.next < len(rt.steps) {
			rt.next++
		}
		if st.Status != 0 {
			a.status = st.Status
		}
		for k, v := range st.Header {
			a.header[http.CanonicalHeaderKey(k)] = slices.Clone(v)
		}
		a.body = st.Body
		a.delay = st.Delay
	default:
		req.Rule = s.roll()
		s.fault(&a, req.Rule, req.Path)
	}
	if a.reset {
		req.Status = 0
	} else {
		req.Status = a.status
	}
	s.record(req)
	return a
}

// fault fills a for rule, a fault or RuleDefault.
func (s *Server) fault(a *answer, rule Rule, path string) {
	code := 0
	switch rule {
	case RuleFault500:
		code = http.StatusInternalServerError
	case RuleFault502:
		code = http.StatusBadGateway
	case RuleFault503:
		code = http.StatusServiceUnavailable
		if d := s.cfg.faults.RetryAfter503; d > 0 {
			a.header.Set("Retry-After", strconv.FormatInt(ceilSeconds(d), 10))
		}
	case RuleFault504:
		code = http.StatusGatewayTimeout
	case RuleFaultReset:
		a.reset = true
		return
	}
	a.header.Set("Content-Type", "application/json")
	if code != 0 {
		a.status = code
		a.body = errorBody(http.StatusText(code))
		return
	}
	if rule == RuleFaultSlow {
		a.slow = s.cfg.faults.Slow
	}
	b, _ := json.Marshal(struct {
		OK   bool   `json:"ok"`
		Path string `json:"path"`
	}{true, path})
	a.body = string(b)
}

func (s *Server) write(w http.ResponseWriter, r *http.Request, a answer) {
	if !sleep(r, a.delay) {
		return
	}
	if a.reset {
		abort(w)
		return
	}
	h := w.Header()
	for k, v := range a.header {
		h[k] = v
	}
	w.WriteHeader(a.status)
	if a.slow <= 0 {
		io.WriteString(w, a.body)
		return
	}
	half := len(a.body) / 2
	io.WriteString(w, a.body[:half])
	http.NewResponseController(w).Flush()
	if sleep(r, a.slow) {
		io.WriteString(w, a.body[half:])
	}
}

// sleep waits d unless r's context ends first; it reports whether d passed.
func sleep(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	}
}

// abort closes the connection without an answer: a TCP reset when
// possible, else the panic net/http servers treat as an aborted handler.
func abort(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	conn.Close()
}
