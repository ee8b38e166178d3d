package redisquota

import (
	"context"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/politehttp/polite"
	"github.com/redis/go-redis/v9"
)

func TestFallbackWhenRedisStops(t *testing.T) {
	srv := startRedis(t)
	c := redis.NewClient(&redis.Options{Addr: srv.addr()})
	defer c.Close()
	logs := &logRecords{}
	s := New(c, WithLogger(slog.New(logs)), WithTimeout(300*time.Millisecond), WithRetryInterval(50*time.Millisecond))
	ctx := context.Background()
	now := base()
	const bucket = "fallback"

	if fits, err := s.Done(ctx, bucket, seen(now, smallLimit, 3, now.Add(time.Hour))); err != nil || !fits {
		t.Fatalf("Done: %v %v", fits, err)
	}
	if v, err := s.Take(ctx, bucket, 1, now); err != nil || !v.OK {
		t.Fatalf("Take: %+v %v", v, err)
	}
	if s.Degraded() || logs.count(slog.LevelWarn) != 0 {
		t.Fatalf("degraded with Redis up:\n%s", logs)
	}

	srv.stop()
	// Every call answers, without error, from the fallback; it learned the bucket all along.
	taken := 0
	for i := range 40 { // a few retry intervals: Redis is tried again and again
		at := now.Add(time.Duration(i) * time.Millisecond)
		v, err := s.Take(ctx, bucket, 1, at)
		if err != nil {
			t.Fatalf("Take during the outage: %v", err)
		}
		if v.OK {
			taken++
		}
		if v.Wake != nil {
			t.Fatal("the fallback's verdict has a Wake channel")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if taken != 3 {
		t.Fatalf("the fallback let %d requests go against 3 remaining", taken)
	}
	if _, err := s.Done(ctx, bucket, polite.Observation{Now: now, Took: true, Status: 200}); err != nil {
		t.Fatalf("Done during the outage: %v", err)
	}
	if !s.Degraded() {
		t.Fatal("not degraded with Redis stopped")
	}
	if n := logs.count(slog.LevelWarn); n != 1 {
		t.Fatalf("%d warnings for one outage:\n%s", n, logs)
	}

	srv.start()
	deadline := time.Now().Add(10 * time.Second)
	for s.Degraded() {
		if time.Now().After(deadline) {
			t.Fatalf("no recovery after Redis restarted:\n%s", logs)
		}
		s.Done(ctx, "other", polite.Observation{Now: now, Status: 200})
		time.Sleep(20 * time.Millisecond)
	}
	if logs.count(slog.LevelWarn) != 1 || logs.count(slog.LevelInfo) != 1 {
		t.Fatalf("want one warning and one recovery:\n%s", logs)
	}
	// Redis restarted empty: the bucket is unknown there again, and slots are leased in Redis.
	if v, err := s.Take(ctx, bucket, 1, now.Add(time.Second)); err != nil || !v.OK {
		t.Fatalf("Take after recovery: %+v %v", v, err)
	}
	if n := c.ZCard(ctx, s.leaseKey(bucket)).Val(); n != 1 {
		t.Fatalf("%d leases in Redis after a Take, want 1", n)
	}
	// The fallback's slots go back to the fallback, not to Redis.
	for range 2 {
		s.Done(ctx, bucket, polite.Observation{Now: now.Add(time.Second), Took: true, Status: 200})
	}
	if n := c.ZCard(ctx, s.leaseKey(bucket)).Val(); n != 1 {
		t.Fatalf("giving back the fallback's slots took Redis leases: %d left, want 1", n)
	}
	s.Done(ctx, bucket, polite.Observation{Now: now.Add(time.Second), Took: true, Status: 200})
	if n := c.ZCard(ctx, s.leaseKey(bucket)).Val(); n != 0 {
		t.Fatalf("the Redis slot was not given back: %d leases left", n)
	}
}

// TestSlowRedisTimesOut: a server that stops answering costs a call the timeout, not the client's
// read timeout.
func TestSlowRedisTimesOut(t *testing.T) {
	srv := startRedis(t)
	c := redis.NewClient(&redis.Options{Addr: srv.addr()}) // read timeout 3 s, context deadlines ignored
	defer c.Close()
	s := New(c, WithTimeout(100*time.Millisecond), WithRetryInterval(50*time.Millisecond))
	ctx := context.Background()
	now := base()
	if _, err := s.Done(ctx, "slow", seen(now, smallLimit, 1, now.Add(time.Hour))); err != nil || s.Degraded() {
		t.Fatalf("Done: %v", err)
	}
	// Take and give back once, so that Redis caches the script: the stalled call is then one EVALSHA.
	if v, err := s.Take(ctx, "slow", 1, now); err != nil || !v.OK {
		t.Fatalf("Take: %+v %v", v, err)
	}
	s.Done(ctx, "slow", polite.Observation{Now: now, Took: true})
	calls := scriptCalls(t, c)
	srv.cmd.Process.Signal(syscall.SIGSTOP)
	defer srv.cmd.Process.Signal(syscall.SIGCONT)
	// The call returns (the test would hang otherwise) and degrades: the timeout cut it short.
	v, err := s.Take(ctx, "slow", 1, now)
	if err != nil || !v.OK || !s.Degraded() {
		t.Fatalf("Take against a stalled Redis: %+v %v degraded=%v", v, err, s.Degraded())
	}
	srv.cmd.Process.Signal(syscall.SIGCONT)
	// Redis granted the last slot after the Store stopped waiting: it is given back, not left to its lease.
	deadline := time.Now().Add(5 * time.Second)
	for scriptCalls(t, c) < calls+2 { // the stalled Take, and the Done giving its slot back
		if time.Now().After(deadline) {
			t.Fatal("the stalled Take never ran, or its slot was not given back")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := c.ZCard(ctx, s.leaseKey("slow")).Val(); n != 0 {
		t.Fatalf("%d leases left, want none", n)
	}
	s2 := New(c, WithTimeout(2*time.Second))
	for {
		v, _ := s2.Take(ctx, "slow", 1, now)
		if v.OK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the slot granted late was not given back: %+v", v)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for s.Degraded() {
		if time.Now().After(deadline) {
			t.Fatal("no recovery")
		}
		s.Done(ctx, "slow", polite.Observation{Now: now})
		time.Sleep(20 * time.Millisecond)
	}
}

// scriptCalls returns how many scripts the Redis behind c has run by EVALSHA.
func scriptCalls(t *testing.T, c *redis.Client) int {
	t.Helper()
	info := c.Info(context.Background(), "commandstats").Val()
	_, rest, ok := strings.Cut(info, "cmdstat_evalsha:calls=")
	if !ok {
		return 0
	}
	n, err := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
	if err != nil {
		t.Fatalf("INFO commandstats: %v", err)
	}
	return n
}

// TestCluster runs the store on a one-node Redis Cluster, which refuses a script whose keys lie in
// different slots: both keys of a bucket must share its hash tag.
func TestCluster(t *testing.T) {
	dir := t.TempDir()
	srv := startRedis(t, "--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(dir, "nodes.conf"), "--dir", dir)
	ctx := context.Background()
	admin := redis.NewClient(&redis.Options{Addr: srv.addr()})
	defer admin.Close()
	slots := make([]any, 0, 16384+2)
	slots = append(slots, "cluster", "addslots")
	for i := range 16384 {
		slots = append(slots, i)
	}
	if err := admin.Do(ctx, slots...).Err(); err != nil {
		t.Fatalf("CLUSTER ADDSLOTS: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(admin.ClusterInfo(ctx).Val(), "cluster_state:ok") {
		if time.Now().After(deadline) {
			t.Fatal("cluster not ok")
		}
		time.Sleep(50 * time.Millisecond)
	}
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{srv.addr()}})
	defer c.Close()
	logs := &logRecords{}
	s := New(c, WithLogger(slog.New(logs)), WithTimeout(2*time.Second))
	now := base()
	for _, bucket := range []string{"api", "", "key\x00bucket", "a}b{c", "%"} {
		if _, err := s.Done(ctx, bucket, seen(now, smallLimit, 1, now.Add(time.Minute))); err != nil {
			t.Fatal(err)
		}
		if v, _ := s.Take(ctx, bucket, 1, now); !v.OK {
			t.Fatalf("bucket %q: first Take refused: %+v", bucket, v)
		}
		if v, _ := s.Take(ctx, bucket, 1, now); v.OK || v.Reason != whySpent {
			t.Fatalf("bucket %q: second Take: %+v", bucket, v)
		}
		if s.Degraded() {
			t.Fatalf("bucket %q: the cluster refused the scripts:\n%s", bucket, logs)
		}
	}
}
