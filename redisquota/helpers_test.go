package redisquota

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// inCI reports whether the tests run in CI, where a missing Redis is a failure rather than a skip.
func inCI() bool { return os.Getenv("CI") == "true" }

// unavailable fails the test in CI and skips it elsewhere.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if inCI() {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// redisAddr returns the address of the Redis the tests use, from POLITE_REDIS_ADDR.
func redisAddr(t testing.TB) string {
	t.Helper()
	addr := os.Getenv("POLITE_REDIS_ADDR")
	if addr == "" {
		unavailable(t, "POLITE_REDIS_ADDR unset")
	}
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		unavailable(t, "POLITE_REDIS_ADDR=%s unreachable: %v", addr, err)
	}
	return addr
}

// newClient returns a client of the test Redis, closed when the test ends.
func newClient(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: redisAddr(t)})
	t.Cleanup(func() { c.Close() })
	return c
}

// testPrefix returns a key prefix of the test's own, whose keys are deleted when it ends.
func testPrefix(t testing.TB, c redis.UniversalClient) string {
	t.Helper()
	b := make([]byte, 6)
	rand.Read(b)
	p := "polite-test:" + hex.EncodeToString(b) + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		iter := c.Scan(ctx, 0, p+"*", 100).Iterator()
		for iter.Next(ctx) {
			c.Del(ctx, iter.Val())
		}
	})
	return p
}

// newStore returns a Store on the test Redis under a prefix of the test's own, with a timeout generous
// enough for a loaded machine running the race detector.
func newStore(t testing.TB, opts ...Option) (*Store, *redis.Client) {
	t.Helper()
	c := newClient(t)
	opts = append([]Option{WithPrefix(testPrefix(t, c)), WithTimeout(2 * time.Second)}, opts...)
	return New(c, opts...), c
}

// redisServer is a redis-server process a test started.
type redisServer struct {
	t    testing.TB
	port string
	args []string
	cmd  *exec.Cmd
	out  *bytes.Buffer
}

// redisServerBinary returns the path of redis-server, skipping the test (failing it in CI) if there is none.
func redisServerBinary(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("redis-server")
	if err != nil {
		unavailable(t, "redis-server not installed: %v", err)
	}
	return p
}

// startRedis starts a redis-server of the test's own on a free loopback port, with extra arguments.
// It is killed when the test ends.
func startRedis(t testing.TB, extra ...string) *redisServer {
	t.Helper()
	redisServerBinary(t)
	port := strconv.Itoa(freePort(t))
	s := &redisServer{t: t, port: port, args: append([]string{"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"}, extra...)}
	s.start()
	t.Cleanup(s.stop)
	return s
}

// freePort returns a loopback port that is free, and whose port + 10000 (a cluster node's bus port) is
// free too.
func freePort(t testing.TB) int {
	t.Helper()
	for range 100 {
		port := 20000 + mrand.IntN(30000)
		l1, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		l2, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+10000))
		l1.Close()
		if err != nil {
			continue
		}
		l2.Close()
		return port
	}
	t.Fatal("no free port")
	return 0
}

func (s *redisServer) addr() string { return "127.0.0.1:" + s.port }

func (s *redisServer) start() {
	s.t.Helper()
	s.out = new(bytes.Buffer)
	s.cmd = exec.Command("redis-server", s.args...)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	c := redis.NewClient(&redis.Options{Addr: s.addr(), MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("redis-server on %s did not start: %v\n%s", s.addr(), err, s.out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop kills the server and waits for it to exit.
func (s *redisServer) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Kill()
	s.cmd.Wait()
	s.cmd = nil
}

// logRecords is a slog handler that keeps what is logged.
type logRecords struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecords) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, r.Clone())
	return nil
}
func (h *logRecords) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logRecords) WithGroup(string) slog.Handler      { return h }

// count returns how many records of level were logged.
func (h *logRecords) count(level slog.Level) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, r := range h.recs {
		if r.Level == level {
			n++
		}
	}
	return n
}

func (h *logRecords) String() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var b bytes.Buffer
	for _, r := range h.recs {
		fmt.Fprintf(&b, "%s %s\n", r.Level, r.Message)
	}
	return b.String()
}

// base returns a starting time for a test's explicit clock: now, to the millisecond, so that keys the
// scripts expire relative to it live on Redis's clock too.
func base() time.Time { return time.Now().Truncate(time.Millisecond) }

// TestMain silences go-redis's own logging: the fallback tests stop servers on purpose.
func TestMain(m *testing.M) {
	redis.SetLogger(quiet{})
	os.Exit(m.Run())
}

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}
