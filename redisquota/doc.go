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
// A bucket is the throttle's model of it, a [polite.Quota], encoded ([polite.Quota.MarshalBinary], about
// 70 bytes) in a string key, and its leases, a sorted set with one member per request in flight, scored
// by when the lease lapses. The model runs in Go, the same code as in [polite.MemoryStore]: Redis only
// keeps the state. All keys of a bucket carry its name as a hash tag ("polite:{bucket}:quota",
// "polite:{bucket}:leases", and two small keys for contention, ":lost" and ":turn"; '%' and '}' in the
// name are escaped as %25 and %7D), so a Cluster keeps them in one slot.
//
// Take and Done are each one atomic read-modify-write: with the state and leases as last read, drop the
// leases that lapsed, giving each back to the Quota as a request that got no answer; run
// [polite.Quota.Take] or [polite.Quota.Done]; and write the state and leases back with a Lua
// compare-and-set script, which writes only if the state is still the one read and the leases to remove
// are still there. The script holds no model: it compares and writes. The first attempt expects what the
// process last read or wrote of the bucket, so a bucket this process wrote last costs one round trip; a
// conflict's answer carries the bucket as the other process left it, and the next attempt starts from
// it. So the fleet sees every bucket change in one order, and 64 takes racing for the last 10 slots get
// exactly 10, from one process or many.
//
// In one process, the Takes and Dones of a bucket queue up and run in batches, one at a time, each batch
// one compare-and-set: a process's own requests never conflict with each other, and a busy bucket costs a
// round trip per batch, not per request. Between processes, a process whose write lost claims the
// bucket's turn: no other process writes until its next attempt, which therefore succeeds, or for 10 ms
// if it never comes; and a process that wins while others lost waits a round trip or two before its next
// batch, since it could otherwise write again before any of them, knowing the state without reading it.
// A batch that still fails 32 times, or outlasts the timeout, is answered by the in-process fallback, as
// on a Redis failure.
//
// A state that cannot be decoded (written by another version of polite whose encoding differs) is a
// bucket not heard from: it starts afresh, and its leases are dropped. Members of a fleet should run
// versions of polite that share the encoding.
//
// # Requests in flight
//
// A slot is a lease: a Take that lets a request go adds a member scored by now + lease ([WithLease],
// default 2 minutes), and every step first gives back the leases that lapsed, so the slots of a process
// that died free themselves within one lease. [polite.Store.Done] names only the bucket, not the slot, so
// Done gives back the newest lease: the count stays exact, and the oldest leases, those a dead process
// may have left, are the ones left to lapse. When none is left (the request's own lapsed and was given
// back then), its Done gives nothing back. A request that runs longer than its lease may stop being
// counted.
//
// # Clocks
//
// The model and the leases use the time the Throttle passes in, not Redis's clock, so that runs with a
// fixed clock are deterministic. Windows, holds, leases and key expiry are therefore judged by each
// member's clock: members of a fleet need clocks roughly in sync (NTP is plenty; a member whose clock
// runs s ahead may start a new window s early), and in sync with Redis's, which expires the keys.
// Leases and expiry are kept to the millisecond, the model's times to the nanosecond.
//
// # Expiry
//
// Every write sets the state and the leases to expire (PEXPIREAT) at the latest of now, the last time the
// state names ([polite.Quota.Until]: its hold, its window's end or its reset) and the newest lease, plus
// the retention ([WithRetention], default one minute). Idle buckets vanish; the next response teaches
// the bucket again.
//
// # Waiting
//
// Redis cannot notify waiters, so verdicts carry no Wake channel, and no Recheck either: the Throttle
// then polls the store while a request waits for an answer (every 50 ms), and sleeps until RetryAt when
// the verdict names one. How long a bucket waits for the answer of its probe before it stops waiting is
// [WithFirstWait] (default [polite.DefaultFirstWait]); [polite.ThrottleFirstWait] does not reach a Store
// given to the Throttle.
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
package redisquota
