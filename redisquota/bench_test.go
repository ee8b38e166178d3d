package redisquota

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/politehttp/polite"
	"github.com/redis/go-redis/v9"
)

// commandCount is a go-redis hook counting the commands a client sends.
type commandCount struct{ n atomic.Int64 }

func (c *commandCount) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *commandCount) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmd)
	}
}
func (c *commandCount) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// BenchmarkTakeDone measures a Take and its Done (a 200 without rate-limit headers: the bucket never
// throttles, so every pair is two calls to Redis) from 8 goroutines per CPU, on one bucket or on one
// bucket per goroutine, through one Store (one process) or several (processes sharing the bucket,
// each with its own client). Stores have the default timeout: degraded/op is the share of calls
// answered by the in-process fallback, cmds/op the commands sent to Redis per pair.
func BenchmarkTakeDone(b *testing.B) {
	for _, bc := range []struct {
		name     string
		stores   int
		distinct bool
	}{
		{"bucket=one/procs=1", 1, false},
		{"bucket=one/procs=4", 4, false},
		{"bucket=one/procs=16", 16, false},
		{"bucket=distinct/procs=1", 1, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			addr := redisAddr(b)
			prefix := testPrefix(b, newClient(b))
			var cmds commandCount
			stores := make([]*Store, bc.stores)
			for i := range stores {
				c := redis.NewClient(&redis.Options{Addr: addr})
				c.AddHook(&cmds)
				b.Cleanup(func() { c.Close() })
				stores[i] = New(c, WithPrefix(prefix))
			}
			var next, degraded atomic.Int64
			ctx := context.Background()
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				g := next.Add(1)
				s := stores[int(g)%len(stores)]
				bucket := "bench"
				if bc.distinct {
					bucket += strconv.FormatInt(g, 10)
				}
				for pb.Next() {
					now := time.Now()
					v, _ := s.Take(ctx, bucket, 1, now)
					s.Done(ctx, bucket, polite.Observation{Now: time.Now(), Sent: now, Took: v.OK, Probe: v.Probe, Status: 200})
					if s.Degraded() {
						degraded.Add(1)
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(degraded.Load())/float64(b.N), "degraded/op")
			b.ReportMetric(float64(cmds.n.Load())/float64(b.N), "cmds/op")
		})
	}
}
