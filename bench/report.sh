#!/usr/bin/env bash
# Writes docs/performance.md from a fresh run of the harness (about 15 minutes on 2 cores).
# Usage: bench/report.sh [outdir]   (the raw outputs go to outdir, a new temporary folder by default)
#        REUSE=1 bench/report.sh outdir   (writes the document again from the raw outputs already in outdir)
# benchstat is installed as a tool with go install, never as a dependency of this module.
set -euo pipefail
cd "$(dirname "$0")"
out=${1:-$(mktemp -d)}
mkdir -p "$out"
PATH=$PATH:$(go env GOPATH)/bin
if ! command -v benchstat >/dev/null; then
	(cd / && go install golang.org/x/perf/cmd/benchstat@latest)
fi

if [ -z "${REUSE:-}" ]; then
	echo "# limiters, quota, routes, outage" >&2
	go run ./cmd/limiters >"$out/limiters.md"
	go run ./cmd/limiters -delay 25ms >"$out/limiters-near.md"
	go run ./cmd/limiters -delay 150ms >"$out/limiters-far.md"
	go run ./cmd/quota >"$out/quota.md"
	go run ./cmd/quota -routes >"$out/routes.md"
	go run ./cmd/quota -outage >"$out/outage.md"
	echo "# benchmarks" >&2
	# Six rounds of every transport in turn, not six runs of each in a row: whatever slows the machine
	# for a while then falls on all of them alike, not on those measured last.
	go test -c -o "$out/bench.test" .
	: >"$out/overhead.txt"
	for round in 1 2 3 4 5 6; do
		"$out/bench.test" -test.run '^$' -test.bench 'Overhead/(canned|loopback)' -test.benchmem -test.count 1 >>"$out/overhead.txt"
	done
	go test -run '^$' -bench 'Scale|ParkedWaiters' -benchmem -count 3 . >"$out/scale.txt"
	(cd .. && go test -run '^$' -bench 'BenchmarkKeys' -benchmem -count 3 .) >"$out/keys.txt"
	(cd .. && go test -count=1 -run 'TestQuotaSimulatedLimiters' -v .) >"$out/sim.txt"
fi

# One file per transport, its name replaced by x, so that benchstat sets each against bare.
for t in bare polite retryablehttp failsafehttp; do
	grep -E "^BenchmarkOverhead/[a-z-]+/[a-z]+/$t-|^(goos|goarch|pkg|cpu):" "$out/overhead.txt" |
		sed -E "s#^(BenchmarkOverhead/[a-z-]+/[a-z]+)/$t-#\1/x-#" >"$out/$t.txt"
done
# benchstat names its columns after the files: run it where they are, so the names carry no folder.
(cd "$out" && benchstat bare.txt polite.txt retryablehttp.txt failsafehttp.txt) >"$out/overhead-stat.txt"
(cd "$out" && benchstat scale.txt) >"$out/scale-stat.txt"
(cd "$out" && benchstat keys.txt) >"$out/keys-stat.txt"

# body prints a run's output from its first table row (or all of it), without trailing blank lines.
body() { sed -n '/^|/,$p' "$1"; }
doc=../docs/performance.md
{
	cat <<EOF
# Performance

Written by \`bench/report.sh\` from one run: $(go version | cut -d' ' -f3-), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')).
This kind of machine is noisy: the same benchmark moves by 10–50 % between runs minutes apart, so
compare transports within one table, never absolute times across runs. The harness is its own module,
\`bench/\`, so the peers never enter polite's \`go.mod\`. Peers: \`hashicorp/go-retryablehttp\` (its
RoundTripper, default configuration) and \`failsafe-go/failsafehttp\` (its HTTP retry policy; the bodies
of the responses it retries are drained, or it would run out of connections).

## Against real rate limiters

    cd bench && go run ./cmd/limiters

EOF
	sed -n '3,/^$/p' "$out/limiters.md" | sed '/^$/d'
	echo
	sed -n '/^- /p' "$out/limiters.md"
	echo
	body "$out/limiters.md"
	cat <<'EOF'

### Across the internet

The same suite with each request and each answer held 25 ms by the server: round trips of 50 ms, as
to an API in another region of the same continent. Every answer polite learns from is half a round
trip old.

    cd bench && go run ./cmd/limiters -delay 25ms

EOF
	body "$out/limiters-near.md"
	cat <<'EOF'

### Far away

The same suite with each request and each answer held 150 ms by the server: round trips of 300 ms, as
to an API across an ocean. Every answer polite learns from is then half a round trip old, and every
probe (a window's end, a hold's end) costs a round trip in which the others wait: against windows of a
second, a large share of each window.

    cd bench && go run ./cmd/limiters -delay 150ms

EOF
	body "$out/limiters-far.md"
	cat <<'EOF'

## The simulator: fixed and sliding windows

    cd bench && go run ./cmd/quota

EOF
	sed -n '1,2p' "$out/quota.md"
	echo
	body "$out/quota.md"
	cat <<'EOF'

Two routes of one host, counted apart; with named buckets the server sends `X-RateLimit-Bucket`,
without, polite learns the second counter from its answers:

    cd bench && go run ./cmd/quota -routes

EOF
	body "$out/routes.md"
	cat <<'EOF'

## A full outage

    cd bench && go run ./cmd/quota -outage

EOF
	sed -n '1p' "$out/outage.md"
	echo
	body "$out/outage.md"
	cat <<'EOF'

## Happy-path overhead

`canned` is an in-memory 200 carrying `Ratelimit-Limit/Remaining/Reset` far from the limit, so reading
the headers is on the measured path; `canned-named` adds `X-RateLimit-Bucket`; `loopback` is an
`httptest` server. benchstat of six rounds, each running every transport once in turn (so that whatever
slows the machine for a while falls on all of them alike), each transport against bare:

    cd bench && go test -c -o bench.test . && for i in 1 2 3 4 5 6; do
        ./bench.test -test.run '^$' -test.bench 'Overhead/(canned|loopback)' -test.benchmem; done

```
EOF
	cat "$out/overhead-stat.txt"
	cat <<'EOF'
```

## Many goroutines, parked requests, many keys

One Transport over the canned base shared by G goroutines; 10,000, then 100,000 requests parked until a
reset, each sent through an http.Client as an application sends it (ms-last-after-reset: when the last of
them reached the base; heapB/parked counts what the http.Client holds for a request too):

    cd bench && go test -run '^$' -bench 'Scale|ParkedWaiters' -benchmem -count 3 .

```
EOF
	cat "$out/scale-stat.txt"
	cat <<'EOF'
```

Requests cycling over 1, 1,000 and 100,000 hosts (each its own key, bucket and retry budget), or over
as many routes of one host whose answers name their bucket:

    go test -run '^$' -bench BenchmarkKeys -benchmem -count 3 .

```
EOF
	cat "$out/keys-stat.txt"
	cat <<'EOF'
```

## The model alone

A deterministic simulation of the quota model against simulated limiters of the same shapes (16
workers, 5 s, round trips of 1–3 ms), beside a plain client:

    go test -run TestQuotaSimulatedLimiters -v .

```
EOF
	grep -E '^=== RUN   TestQuotaSimulatedLimiters/|plain [0-9]+ ok' "$out/sim.txt" |
		sed -E 's/^=== RUN   TestQuotaSimulatedLimiters\///; s/^ +quota_sim_test.go:[0-9]+: /  /'
	echo '```'
} >"$doc"
echo "wrote $doc (raw outputs in $out)" >&2
