#!/usr/bin/env bash
# Runs the whole benchmark harness and compares the transports with benchstat.
# Usage: bench/run.sh [outdir]   (default /tmp/polite-bench)
# benchstat is installed as a tool with go install, never as a dependency of this module.
set -euo pipefail
cd "$(dirname "$0")"
out=${1:-/tmp/polite-bench}
mkdir -p "$out"

{
	go version
	echo "nproc: $(nproc)"
	grep -m1 'model name' /proc/cpuinfo
	uptime
} | tee "$out/machine.txt"

# Ten rounds of every transport, one after the other, rather than ten runs of each in a row: on a noisy
# machine, whatever slows it down for a while then falls on all of them alike.
go test -c -o "$out/bench.test" .
: >"$out/bench.txt"
for round in $(seq 10); do
	echo "# round $round" >&2
	"$out/bench.test" -test.bench 'Overhead' -test.benchmem -test.count 1 -test.run '^$' | tee -a "$out/bench.txt"
done
go test -bench 'Scale|ParkedWaiters' -benchmem -count 6 -run '^$' | tee -a "$out/bench.txt"
# Where polite's cost goes, layer by layer, and what a learned bucket costs (in the root package).
(cd .. && go test -bench 'Layers|BucketBytes' -benchmem -count 6 -run '^$' .) | tee "$out/layers.txt"
go run ./cmd/quota | tee "$out/quota.md"
go run ./cmd/quota -outage | tee "$out/outage.md"
go run ./cmd/quota -routes | tee "$out/routes.md"
go run ./cmd/quota -routes -q 40 -d 20s | tee "$out/routes-small.md"
go run ./cmd/limiters | tee "$out/limiters.md"

PATH=$PATH:$(go env GOPATH)/bin
if ! command -v benchstat >/dev/null; then
	(cd / && go install golang.org/x/perf/cmd/benchstat@latest)
fi
# One file per transport, with the transport's name replaced by "x", so that benchstat sets each against bare.
for t in bare polite retryablehttp failsafehttp; do
	grep -E "^BenchmarkOverhead/[a-z-]+/[a-z]+/$t-|^(goos|goarch|pkg|cpu):" "$out/bench.txt" |
		sed -E "s#^(BenchmarkOverhead/[a-z-]+/[a-z]+)/$t-#\1/x-#" >"$out/$t.txt"
done
(cd "$out" && benchstat bare.txt polite.txt retryablehttp.txt failsafehttp.txt) | tee "$out/benchstat.txt"
benchstat -filter '.name:(Scale OR ParkedWaiters)' "$out/bench.txt" | tee -a "$out/benchstat.txt"
./paired.sh "$out/bench.txt" | tee -a "$out/benchstat.txt"
# Each variant of the stack against the bare base, and the ID-varying requests against the base over them.
for v in bare stack stack-named stack-delta bare-ids stack-named-ids; do
	grep -E "^BenchmarkLayers/$v-[0-9]+ |^(goos|goarch|pkg|cpu):" "$out/layers.txt" |
		sed -E "s#^BenchmarkLayers/$v-#BenchmarkLayers/x-#" >"$out/layers-$v.txt"
done
(cd "$out" && benchstat layers-bare.txt layers-stack.txt layers-stack-named.txt layers-stack-delta.txt &&
	benchstat layers-bare-ids.txt layers-stack-named-ids.txt) | tee -a "$out/benchstat.txt"
