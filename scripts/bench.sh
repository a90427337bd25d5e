#!/usr/bin/env bash
# Runs every benchmark and prints its figures (`make bench`). Targets are in
# README.md; the benchmarks report, tests assert. Privileged parts need root.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
section() { printf '\n=== %s\n' "$*"; }
bench() { "$GO" test -run '^$' "$@" 2>&1 | grep -E '^(Benchmark|PASS|FAIL|ok|---|\s+\S+\.go:)' ; }

section "health: checks/s per core (targets: tcp >= 10,000, http >= 5,000) and spread (target <= 1.2)"
bench -bench . -benchtime 2s ./health

section "announcer: plan() + ipvs.Diff for 10,000 services x 5 backends (target < 50 ms)"
bench -bench PlanAndDiff -benchtime 10x ./announcer

section "control: GetStatus with 1,000 VIPs x 10 backends over the Unix socket (target < 20 ms)"
bench -bench GetStatus -benchtime 50x ./control

section "directord: RSS and CPU with 1,000 VIPs x 10 backends at 2 s (targets < 100 MB, < 15 % of a core; remote is the figure, loopback also counts the servers' kernel work)"
bench -bench DaemonFootprint -benchtime 1x ./cmd/directord

section "directord + FRR: health verdict to the router's FIB (target median < 100 ms), also with slow and failing notifiers (must match)"
bench -tags privileged -bench 'PrivilegedVerdictToFIB' -benchtime 20x ./lab/acceptance

section "bgp speaker: Set() to router FIB with FRR; 10,000 VIPs to the FIB"
bench -tags privileged -bench 'PrivilegedSetToFIB' -benchtime 20x ./routing/bgp
bench -tags privileged -bench 'PrivilegedAdvertise10k' -benchtime 1x ./routing/bgp

section "ipvs (in the VM): cold Apply 10,000 x 5 vs ipvsadm-restore, no-op Apply, one weight change"
bash scripts/bench-ipvs.sh
