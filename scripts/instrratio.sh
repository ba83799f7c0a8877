#!/usr/bin/env bash
# instrratio.sh: issue 13's ratio (emulated frame path against the bare
# pipeline with the same hand-offs, timing off) counted in instructions
# rather than in time, so that it does not move with the machine's load.
# On the project's VM the same benchmark binary measures up to 1.8x apart
# from one run to the next; instruction counts repeat within about 2 %.
# Needs valgrind (apt-get install valgrind); about a minute.
#
#   scripts/instrratio.sh              # 64 and 1514 B
#   SIZES=64 scripts/instrratio.sh
#
# Each benchmark runs under cachegrind (no cache simulation) with
# GOMAXPROCS=1 for N1 and N2 frames; instructions per frame are the
# difference over N2-N1, so start-up and tear-down cancel. Printed per
# size: the emulated path and the baseline (integration's OneWay), their
# ratio (baseline/emulated, as BenchmarkOneWayPaired's throughput ratio:
# the pipelines run one goroutine at a time, so time per frame follows
# instructions per frame), and the same for the per-frame work alone
# without hand-offs (chip's FrameWork, integration's BaseWork). Clock
# reads are system calls under valgrind: their cost shows in time, not
# here.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "instrratio.sh: needs valgrind (apt-get install valgrind)" >&2; exit 1; }
SIZES=${SIZES:-64 1514}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
go test -c -o "$TMP/integration.test" ./integration
go test -c -o "$TMP/chip.test" ./chip

# instr BIN BENCH N: instructions of one run of BENCH with N frames.
instr() {
	GOMAXPROCS=1 GODEBUG=asyncpreemptoff=1 valgrind --tool=cachegrind --cache-sim=no \
		--cachegrind-out-file=/dev/null "$1" -test.run '^$' -test.bench "$2" -test.benchtime "${3}x" 2>&1 |
		awk '/I *refs:/ {gsub(",", "", $NF); print $NF}'
}

# perframe BIN BENCH N1 N2: instructions per frame.
perframe() {
	local a b
	a=$(instr "$1" "$2" "$3")
	b=$(instr "$1" "$2" "$4")
	[ -n "$a" ] && [ -n "$b" ] || { echo "instrratio.sh: no count for $2" >&2; exit 1; }
	echo $(((b - a) / ($4 - $3)))
}

for s in $SIZES; do
	n1=10000 n2=30000
	emu=$(perframe "$TMP/integration.test" "OneWay/emulated/$s\$" $n1 $n2)
	base=$(perframe "$TMP/integration.test" "OneWay/baseline/$s\$" $n1 $n2)
	fw=$(perframe "$TMP/chip.test" "FrameWork/$s\$" $n1 $n2)
	bw=$(perframe "$TMP/integration.test" "BaseWork/$s\$" $n1 $n2)
	awk -v s="$s" -v e="$emu" -v b="$base" -v f="$fw" -v w="$bw" 'BEGIN {
		printf "%5d B  path: emulated %6d, baseline %6d instructions/frame, ratio %.3f\n", s, e, b, b / e
		printf "         work alone: FrameWork %6d, BaseWork %6d; hand-offs and machinery: emulated %6d, baseline %6d\n", f, w, e - f, b - w
	}'
done
