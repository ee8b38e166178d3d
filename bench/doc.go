// Package bench holds the benchmark harness of polite: the happy-path overhead of polite and its peers
// (overhead_test.go), how polite scales with goroutines and what a parked request costs (scale_test.go),
// in cmd/quota, how much of a server's quota each client turns into successful calls, and, in
// cmd/limiters, how each client fares against real rate-limit middleware from the Go ecosystem
// (go-chi/httprate, ulule/limiter, throttled, sethvargo/go-limiter) and a server of bare 429s.
//
// It is a module of its own so that the peers it compares against never become dependencies of polite.
package bench
