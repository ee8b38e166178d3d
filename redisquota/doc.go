// Package redisquota keeps a [polite.Throttle]'s quota state in Redis, so that a fleet of processes
// calling one API with one key shares its quota instead of each spending all of it.
//
//	client := redis.NewClient(&redis.Options{Addr: "redis:6379"}) // or redis.NewClusterClient, ...
//	store := redisquota.New(client)
//	th := polite.NewThrottle(polite.ThrottleStore(store))
//	httpClient := &http.Client{Transport: polite.New(nil, polite.WithThrottle(th))}
//
// # How state is kept
//
// Each bucket is a hash (what the server last said: limit, remaining, reset, window; whether a probe of a
// new window is out; the Retry-After hold; the sliding-window pacer's tokens) and a sorted set of leases,
// one per request in flight. Both carry the bucket's name as a hash tag ("polite:{bucket}" and
// "polite:{bucket}:leases", with '%' and '}' in the name escaped as %25 and %7D), so a Cluster keeps them
// in one slot. Take and Done are each one Lua script
// (EVALSHA, falling back to EVAL), a port of the algorithm polite's throttle used before its quota model
// (its port to the model is under way), so every step is
// atomic across the fleet: 64 processes taking the last 10 slots get exactly 10.
//
// # Requests in flight
//
// A slot is a lease: Take adds a member scored by now + lease ([WithLease], default 2 minutes), and every
// script call first drops the leases that lapsed, so the slots of a process that died free themselves
// within one lease. [polite.Store.Done] names only the bucket, not the slot, so Done gives back the newest
// lease (ZPOPMAX): the count stays exact, and the oldest leases, those a dead process may have left, are
// the ones left to lapse. A request that runs longer than its lease may stop being counted.
//
// # Clocks
//
// The scripts use the time the Throttle passes in, not Redis's clock, so that runs with a fixed clock are
// deterministic. Windows, holds, leases and key expiry are therefore judged by each member's clock:
// members of a fleet need clocks roughly in sync (NTP is plenty; a member whose clock runs s ahead may
// start a new window s early), and in sync with Redis's, which expires the keys. Times are kept to the
// millisecond.
//
// # Expiry
//
// Every call sets the keys to expire (PEXPIREAT) at the latest of the bucket's reset, its hold and its last
// Take, plus the retention ([WithRetention], default one minute), or later if a lease runs longer. Idle
// buckets vanish; the next response teaches the bucket again.
//
// # When Redis is unreachable
//
// Each call to Redis is bounded by a timeout ([WithTimeout], default 50 ms), detached from the request's
// cancellation so that a cancelled request still gives its slot back. When a call fails or times out, the
// Store answers from an in-process [polite.MemoryStore] (which learns from every response all along, so it
// is up to date) and keeps doing so, trying Redis again once per interval ([WithRetryInterval], default one
// second) until it answers; it logs the outage once ([WithLogger]; silent by default). A request never
// fails because Redis does: Take and Done always return a nil error. During an outage each process spends
// the quota on its own, as without this package, so set the timeout above Redis's worst latency under
// load: one slow answer counts as an outage for a retry interval. Slots taken from the fallback are given
// back to it. A slot Redis grants after the Store stopped waiting is given back when the late answer
// arrives; a slot taken from Redis whose Done cannot reach Redis lapses with its lease.
//
// Redis cannot notify waiters, so verdicts carry no Wake channel and the Throttle polls the store while a
// request waits for a response (every 50 ms).
package redisquota
