#!/usr/bin/env bash
# IPVS benchmarks, measured inside the VM against Debian's kernel (the host
# kernel has no IPVS): BenchmarkVMScale in ipvs/dataplane/bench_vm_test.go, run once
# through the VM runner. Prints the benchmark line and the figures against
# their targets. Called by scripts/bench.sh; usable alone.
#
# IPVS_BENCH_SERVICES / IPVS_BENCH_DESTS shrink the state for a quick run
# (default 10,000 x 5); IPVS_BENCH_ROUNDS (default 3) is how often cold Apply
# and ipvsadm-restore are each measured, alternating, because the VM is
# emulated on a shared host. The default run takes about 5 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}

out=$(mktemp)
trap 'rm -f "$out"' EXIT
status=0
"$GO" run ./lab/vm/cmd/vmtest -tags vm -v -run '^$' -bench '^BenchmarkVMScale$' -benchtime 1x -timeout 40m ./ipvs/dataplane >"$out" 2>&1 || status=$?
line=$(grep -E '^BenchmarkVMScale' "$out" | grep 'ns/op' || true)
if [ "$status" -ne 0 ] || [ -z "$line" ]; then
	grep -vE '^time=' "$out" | tail -40
	echo "bench-ipvs: the VM benchmark failed (exit status $status)" >&2
	exit 1
fi
grep -E 'bench_vm_test.go:[0-9]+: ([0-9]+ services|cold Apply rounds|full-read no-op)' "$out" | sed 's/^ *//' || true
echo "$line"

# The line is "BenchmarkVMScale-N 1 NS ns/op V1 unit1 V2 unit2 ...".
echo "$line" | awk '
{
	for (i = 5; i < NF; i += 2) m[$(i + 1)] = $i
	printf "  %d services x %d destinations; cold Apply and ipvsadm-restore alternated over %d rounds, medians\n", m["services"], m["destinations"] / m["services"], m["rounds"]
	check("ratio cold Apply / ipvsadm-restore", m["ratio_cold/restore"], "<=", 1.0, "")
	check("no-op Apply with a full kernel read (median of 5), % of cold", m["noop_full_read_%cold"], "<=", 10, "%")
	check("single weight change, median of 101", m["weight_change_median_ms"], "<", 5, " ms")
	printf "  cold Apply %.1f s, ipvsadm-restore %.1f s, adopting the restored state %.1f s (%d reads, no writes)\n",
		m["cold_apply_ms"] / 1000, m["ipvsadm_restore_ms"] / 1000, m["adopt_restored_ms"] / 1000, m["adopt_read_requests"]
	printf "  no-op Apply trusting its record (median of 11) %.1f ms; weight change max %.1f ms, its netlink part (read + write) %.2f ms\n",
		m["noop_apply_median_ms"], m["weight_change_max_ms"], m["weight_change_netlink_median_ms"]
}
function check(name, v, op, target, unit) {
	ok = (op == "<=") ? (v <= target) : (v < target)
	printf "  %-60s %10.3f%s  target %s %s%s  %s\n", name, v, unit, op, target, unit, ok ? "met" : "MISSED"
}'
