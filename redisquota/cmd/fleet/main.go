// Command fleet measures how a fleet of processes sharing one API key spends its quota, with each
// process throttling on its own (-store memory) and with the processes sharing their throttle state
// in Redis through redisquota (-store redis).
//
//	cd redisquota && go run ./cmd/fleet [-d 20s] [-procs 4] [-workers 8] [-limit 100] [-window 5s] [-redis host:port]
//
// The parent serves a politetest quota of limit per window on loopback (fixed windows, contract headers,
// aligned half a window before the run starts so the run overlaps d/window+1 windows), runs procs copies
// of itself with -worker, each with its own polite Transport and workers goroutines sending requests for
// d, once per mode, and prints a Markdown table of what the server saw. The Redis address defaults to
// $POLITE_REDIS_ADDR, else 127.0.0.1:6379.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/politehttp/polite"
	"github.com/politehttp/polite/politetest"
	"github.com/politehttp/polite/redisquota"
	"github.com/redis/go-redis/v9"
)

// counts is what one worker process reports on stdout.
type counts struct {
	Sent     int64 `json:"sent"`     // requests that got an answer
	OK       int64 `json:"ok"`       // 2xx answers
	TooMany  int64 `json:"tooMany"`  // 429 answers seen by the caller (after the retry layer)
	Errors   int64 `json:"errors"`   // failures other than the run ending
	Degraded bool  `json:"degraded"` // the Redis store was answering from its fallback at the end
	// Redis commands' latencies as the client saw them, in microseconds, sorted (redis mode).
	Latencies []int64 `json:"latencies,omitempty"`
}

// latencies is a go-redis hook recording how long each command took.
type latencies struct {
	mu sync.Mutex
	us []int64
}

func (l *latencies) DialHook(next redis.DialHook) redis.DialHook { return next }
func (l *latencies) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (l *latencies) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmd)
		l.mu.Lock()
		l.us = append(l.us, time.Since(start).Microseconds())
		l.mu.Unlock()
		return err
	}
}

func main() {
	var (
		worker   = flag.Bool("worker", false, "run as a worker process (internal)")
		d        = flag.Duration("d", 20*time.Second, "how long each mode runs")
		procs    = flag.Int("procs", 4, "worker processes")
		workers  = flag.Int("workers", 8, "goroutines sending requests in each process")
		limit    = flag.Int("limit", 100, "requests allowed per window")
		window   = flag.Duration("window", 5*time.Second, "quota window")
		addr     = flag.String("redis", defaultRedis(), "Redis address, host:port")
		modes    = flag.String("modes", "memory,redis", "modes to run, in order")
		url      = flag.String("url", "", "server URL (worker)")
		store    = flag.String("store", "memory", "memory or redis (worker)")
		prefix   = flag.String("prefix", "", "Redis key prefix (worker)")
		timeout  = flag.Duration("timeout", redisquota.DefaultTimeout, "redisquota's timeout for each Redis call")
		startArg = flag.Int64("start", 0, "when to start, Unix nanoseconds (worker)")
	)
	flag.Parse()
	log.SetFlags(0)
	if *worker {
		c := work(*url, *store, *addr, *prefix, time.Unix(0, *startArg), *d, *workers, *timeout)
		if err := json.NewEncoder(os.Stdout).Encode(c); err != nil {
			log.Fatal(err)
		}
		return
	}

	type row struct {
		mode  string
		stats politetest.Stats
		procs []counts
	}
	var rows []row
	for _, mode := range strings.Split(*modes, ",") {
		if mode == "redis" {
			ping(*addr)
		}
		st, pc := measure(mode, *addr, *d, *procs, *workers, *limit, *window, *timeout)
		rows = append(rows, row{mode, st, pc})
	}
	allowed := int(float64(*limit) * (d.Seconds()/window.Seconds() + 1))
	fmt.Printf("\n%d processes × %d workers for %v against %d requests per %v (quota allowed: %d × (%v/%v + 1) = %d)\n\n",
		*procs, *workers, *d, *limit, *window, *limit, *d, *window, allowed)
	fmt.Println("| mode | requests the server saw | 429s (% of requests) | successes | % of quota used |")
	fmt.Println("|---|---:|---:|---:|---:|")
	for _, r := range rows {
		ok := 0
		for status, n := range r.stats.ByStatus {
			if status >= 200 && status < 300 {
				ok += n
			}
		}
		fmt.Printf("| %s | %d | %d (%.1f%%) | %d | %.1f%% |\n", r.mode, r.stats.Total, r.stats.TooManyRequests,
			pct(r.stats.TooManyRequests, r.stats.Total), ok, pct(ok, allowed))
	}
	for _, r := range rows {
		var all []int64
		for _, c := range r.procs {
			all = append(all, c.Latencies...)
		}
		if len(all) > 0 {
			slices.Sort(all)
			q := func(p float64) time.Duration {
				return time.Duration(all[int(p*float64(len(all)-1))]) * time.Microsecond
			}
			slow := len(all) - sort.Search(len(all), func(i int) bool { return time.Duration(all[i])*time.Microsecond > *timeout })
			fmt.Printf("\n%s: %d Redis commands; latency p50 %v, p99 %v, max %v; %d over the %v timeout\n",
				r.mode, len(all), q(0.5), q(0.99), q(1), slow, *timeout)
		}
		for i, c := range r.procs {
			if c.Degraded {
				fmt.Printf("\nwarning: %s process %d ended on its in-process fallback: Redis failed during the run\n", r.mode, i)
			}
		}
	}
}

func pct(n, of int) float64 {
	if of == 0 {
		return 0
	}
	return 100 * float64(n) / float64(of)
}

func defaultRedis() string {
	if a := os.Getenv("POLITE_REDIS_ADDR"); a != "" {
		return a
	}
	return "127.0.0.1:6379"
}

func ping(addr string) {
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		log.Fatalf("fleet: Redis at %s: %v (set -redis or POLITE_REDIS_ADDR)", addr, err)
	}
}

// measure runs one mode: a fresh server, procs worker processes, and their reports.
func measure(mode, addr string, d time.Duration, procs, workers, limit int, window, timeout time.Duration) (politetest.Stats, []counts) {
	start := time.Now().Add(time.Second) // time for the processes to start
	srv := politetest.NewServer(politetest.WithQuota(limit, window), politetest.WithEpoch(start.Add(-window/2)))
	defer srv.Close()
	self, err := os.Executable()
	if err != nil {
		log.Fatal(err)
	}
	prefix := "polite-fleet:" + strconv.FormatInt(time.Now().UnixNano(), 36) + ":"
	log.Printf("fleet: %s: %d processes × %d workers for %v", mode, procs, workers, d)
	out := make([]counts, procs)
	var wg sync.WaitGroup
	for i := range procs {
		cmd := exec.Command(self, "-worker", "-url", srv.URL, "-store", mode, "-redis", addr, "-prefix", prefix,
			"-start", strconv.FormatInt(start.UnixNano(), 10), "-d", d.String(), "-workers", strconv.Itoa(workers), "-timeout", timeout.String())
		var stdout bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, os.Stderr
		if err := cmd.Start(); err != nil {
			log.Fatal(err)
		}
		wg.Go(func() {
			if err := cmd.Wait(); err != nil {
				log.Fatalf("fleet: worker %d: %v", i, err)
			}
			if err := json.Unmarshal(stdout.Bytes(), &out[i]); err != nil {
				log.Fatalf("fleet: worker %d: %v: %q", i, err, stdout.String())
			}
		})
	}
	wg.Wait()
	if mode == "redis" {
		c := redis.NewClient(&redis.Options{Addr: addr})
		iter := c.Scan(context.Background(), 0, prefix+"*", 100).Iterator()
		for iter.Next(context.Background()) {
			c.Del(context.Background(), iter.Val())
		}
		c.Close()
	}
	return srv.Stats(), out
}

// work is one worker process: its own Transport and Throttle, in memory or on Redis.
func work(url, mode, addr, prefix string, start time.Time, d time.Duration, workers int, timeout time.Duration) counts {
	base := &http.Transport{MaxIdleConnsPerHost: 2 * workers}
	var opts []polite.Option
	var store *redisquota.Store
	lat := &latencies{}
	switch mode {
	case "memory":
	case "redis":
		c := redis.NewClient(&redis.Options{Addr: addr})
		defer c.Close()
		c.AddHook(lat)
		store = redisquota.New(c, redisquota.WithPrefix(prefix), redisquota.WithTimeout(timeout),
			redisquota.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, nil))))
		opts = append(opts, polite.WithThrottle(polite.NewThrottle(polite.ThrottleStore(store))))
	default:
		log.Fatalf("fleet: unknown store %q", mode)
	}
	client := &http.Client{Transport: polite.New(base, opts...)}

	time.Sleep(time.Until(start))
	// The run ends by cancellation, not by a deadline: a request whose wait would outlast a deadline
	// fails at once, and the worker would spin asking again.
	ctx, cancel := context.WithCancel(context.Background())
	defer time.AfterFunc(d, cancel).Stop()
	var c counts
	var sent, ok, tooMany, errs atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, "GET", url+"/v1/items", nil)
				req.Header.Set("Authorization", "Bearer fleet")
				resp, err := client.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						errs.Add(1)
					}
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				sent.Add(1)
				switch {
				case resp.StatusCode == http.StatusTooManyRequests:
					tooMany.Add(1)
				case resp.StatusCode >= 200 && resp.StatusCode < 300:
					ok.Add(1)
				}
			}
		})
	}
	wg.Wait()
	c.Sent, c.OK, c.TooMany, c.Errors = sent.Load(), ok.Load(), tooMany.Load(), errs.Load()
	if store != nil {
		c.Degraded = store.Degraded()
		lat.mu.Lock()
		c.Latencies = slices.Sorted(slices.Values(lat.us))
		lat.mu.Unlock()
	}
	return c
}
