#!/usr/bin/env bash
# Prints, for each base and mode of the Overhead benchmark, what each transport added to the bare base in
# each round of bench/run.sh (its ns/op less bare's, measured seconds apart in the same round), and the
# median of those differences: on a noisy machine, a figure less moved by whatever slowed a whole round.
# Usage: bench/paired.sh bench.txt
set -euo pipefail
awk '
/^BenchmarkOverhead\// {
	split($1, p, "/"); t = p[4]; sub(/-[0-9]+$/, "", t)
	k = p[2] "/" p[3]
	n[k "/" t]++
	v[k "/" t "/" n[k "/" t]] = $3
	if (!(k in seen)) { seen[k] = 1; keys[++nk] = k }
	if (!(t in tseen)) { tseen[t] = 1; ts[++nt] = t }
}
function median(a, m,   i, j, x) {
	for (i = 2; i <= m; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
	return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
}
END {
	for (i = 1; i <= nk; i++) {
		k = keys[i]; line = k
		for (j = 1; j <= nt; j++) {
			t = ts[j]; if (t == "bare") continue
			m = n[k "/" t]; if (m == 0 || n[k "/bare"] != m) continue
			delete d
			for (r = 1; r <= m; r++) d[r] = v[k "/" t "/" r] - v[k "/bare/" r]
			line = line sprintf("  %s %+.1f", t, median(d, m))
		}
		print line " (median per-round ns/op over bare)"
	}
}' "$1"
