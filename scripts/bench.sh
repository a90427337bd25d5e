#!/usr/bin/env bash
# Runs every benchmark (`make bench`), prints its figures, and writes BENCH.md
# with each figure's target and verdict, the commit, the date and the
# machine (lab/cmd/benchreport; the targets are in lab/benchreport/specs.go).
# Privileged parts need root. A part that fails is named in BENCH.md and the
# script exits 1 after writing it. BENCH_OUT overrides the report's path.
set -uo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
raw=$(mktemp)
trap 'rm -f "$raw"' EXIT
load_before=$(cut -d' ' -f1 /proc/loadavg)
commit_before=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
	commit_before="$commit_before-dirty"
fi
failed=()

section() { printf '\n=== %s\n' "$*"; }
# bench NAME ARGS...: one go test -bench run; its lines go to the terminal and the raw file.
bench() {
	local name=$1
	shift
	local out
	out=$("$GO" test -run '^$' "$@" 2>&1)
	local status=$?
	printf '%s\n' "$out" | grep -E '^(Benchmark|PASS|FAIL|ok|---|\s+\S+\.go:)' | tee -a "$raw"
	if [ "$status" -ne 0 ]; then
		printf '%s\n' "$out" | tail -20
		failed+=("$name (exit status $status)")
	fi
}

section "health: checks/s per core, the scheduler keeping up, spread"
bench "health" -bench . -benchtime 2s ./health

section "announcer: plan() + ipvs.Diff for 10,000 services x 5 backends; a reload and a health change's pass at 1,000 x 10"
bench "announcer" -bench 'PlanAndDiff|ReloadOneWeight|HealthChangePass' -benchtime 10x ./announcer

section "config: parse and validate the side-by-side benchmark's file (100 and 1,000 services), what a reload does before the loop gets it"
bench "config" -bench 'ParseCompare' -benchtime 20x ./config

section "control: GetStatus with 1,000 VIPs x 10 backends over the Unix socket"
bench "control" -bench GetStatus -benchtime 50x ./control

section "metrics: one probe's counter and latency histogram"
bench "metrics" -bench OnProbe ./control/metrics

section "directord: RSS and CPU with 1,000 VIPs x 10 backends at 2 s (remote is the figure; loopback also counts the servers' kernel work)"
bench "daemon footprint" -bench DaemonFootprint -benchtime 1x ./cmd/directord

section "directord + FRR: health verdict to the router's FIB, also with slow and failing notifiers"
bench "verdict to FIB" -tags privileged -bench 'PrivilegedVerdictToFIB' -benchtime 20x ./lab/acceptance

section "bgp speaker: Set() to router FIB with FRR; 10,000 VIPs to the FIB"
bench "bgp set to FIB" -tags privileged -bench 'PrivilegedSetToFIB' -benchtime 20x ./routing/bgp
bench "bgp 10k VIPs" -tags privileged -bench 'PrivilegedAdvertise10k' -benchtime 1x ./routing/bgp

section "ipvs (in the VM): cold Apply 10,000 x 5 vs ipvsadm-restore, no-op Apply, one weight change"
if ! bash scripts/bench-ipvs.sh | tee -a "$raw"; then
	failed+=("ipvs in the VM")
fi

guest=$(ls "${VM_CACHE_DIR:-lab/.cache/vm}" 2>/dev/null | grep -E '^[0-9]+\.[0-9]+' | sort -V | tail -1)
joined=$(IFS=';'; echo "${failed[*]:-}")
section "report"
"$GO" run ./lab/cmd/benchreport -in "$raw" -out "${BENCH_OUT:-BENCH.md}" -failed "$joined" \
	-guest-kernel "$guest" -load-before "$load_before" -commit "$commit_before"
status=$?
echo "wrote ${BENCH_OUT:-BENCH.md}"
[ "$status" -eq 0 ] && [ ${#failed[@]} -eq 0 ]
