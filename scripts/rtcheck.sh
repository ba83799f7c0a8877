#!/usr/bin/env bash
# rtcheck.sh: issue 10's real-time figures on the machine it runs on, the
# check to run on a machine with faster wake-ups than the project's VM.
# Needs root, iproute2 and ping.
#
#   sudo scripts/rtcheck.sh               # 300 pings a run, names rc-*
#   sudo COUNT=1000 PREFIX=xy scripts/rtcheck.sh
#
# It runs two nodes over TAP in namespaces (run --backend tap --netns)
# three times, each with ping -c COUNT -i 0.02 from a to b:
#   plain   nothing traced: the round trip against the model's 412 µs and
#           the goal of +150 µs
#   spi     with --spi-trace: each kind's call p50/p99 (the SPI calls as
#           the host saw them) against the bar of 10 % + 50 µs over the
#           kind's time on the bus, and the calls shorter than that time
#   go      with --go-trace: why the SPI waits that ended late were late
#           (tsnsim trace of the Go execution trace)
# The lines that check a bar end in "ok" or "OVER". Extra flags for every
# run go in TSNSIM_FLAGS.
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${COUNT:-300}
P=${PREFIX:-rc}
FLAGS=${TSNSIM_FLAGS:-}
TMP=$(mktemp -d)
BIN=$TMP/tsnsim
SIM=""
MODEL_RTT_US=412 # a ping's modelled round trip (README, "Real time versus virtual time")

cleanup() {
	[ -n "$SIM" ] && kill "$SIM" 2>/dev/null && wait "$SIM" 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT

go build -o "$BIN" ./cmd/tsnsim

# run NAME FLAGS...: a TAP run with ping -c COUNT -i 0.02 a->b; writes the
# round trip's min and p50 in µs to $TMP/NAME.rtt; the run's report is
# $TMP/NAME.log. It stops the script if the run does not come up, no echo
# comes back, or the run does not end CLEAN.
run() {
	local name=$1
	shift
	# shellcheck disable=SC2086 # FLAGS is a list of flags
	"$BIN" run --backend tap --netns --tap-prefix "$P" $FLAGS "$@" >"$TMP/$name.log" 2>&1 &
	SIM=$!
	for _ in $(seq 400); do
		grep -q '^ready:' "$TMP/$name.log" && break
		kill -0 "$SIM" 2>/dev/null || break
		sleep 0.05
	done
	if ! grep -q '^ready:' "$TMP/$name.log"; then
		echo "run $name did not come up:"
		tail -5 "$TMP/$name.log"
		exit 1
	fi
	sleep 1
	ip netns exec "$P-a" ping -c "$COUNT" -i 0.02 10.0.0.2 >"$TMP/$name.ping" || true
	kill -INT "$SIM"
	wait "$SIM" || true
	SIM=""
	if ! tail -1 "$TMP/$name.log" | grep -q '^CLEAN'; then
		echo "run $name did not end CLEAN:"
		tail -5 "$TMP/$name.log"
		exit 1
	fi
	grep -o 'time=[0-9.]*' "$TMP/$name.ping" | cut -d= -f2 | sort -n |
		awk '{a[NR]=$1} END {if (NR == 0) exit 1; printf "%.0f %.0f\n", a[1]*1000, a[int((NR+1)/2)]*1000}' >"$TMP/$name.rtt" ||
		{ echo "run $name: no echo came back"; exit 1; }
}

run plain
read -r min p50 <"$TMP/plain.rtt"
echo "TAP ping a->b, $COUNT pings: min ${min} µs, p50 ${p50} µs; model ${MODEL_RTT_US} µs, goal p50 <= $((MODEL_RTT_US + 150)) µs: $([ "$p50" -le $((MODEL_RTT_US + 150)) ] && echo ok || echo OVER)"

run spi --spi-trace "$TMP/spi.jsonl"
read -r min p50 <"$TMP/spi.rtt"
echo "with --spi-trace: min ${min} µs, p50 ${p50} µs (tracing costs the run some; compare traced with traced)"
# tsnsim trace prints, per node and kind: kind count bytes errors p50 p90
# p99 max late-p50 late-p99 call-p50 call-p99 short; the time on the bus
# (p50..max) is the model's.
"$BIN" trace "$TMP/spi.jsonl" | awk '
	function us(s) {
		if (s ~ /ms$/) return substr(s, 1, length(s)-2) * 1000
		if (s ~ /µs$/) return substr(s, 1, length(s)-3) + 0
		if (s ~ /ns$/) return substr(s, 1, length(s)-2) / 1000
		if (s ~ /s$/) return substr(s, 1, length(s)-1) * 1e6
		return s + 0
	}
	/^node / { node = $2 }
	$1 == "reg_read" || $1 == "rx_meta" || $1 == "rx_frame" || $1 == "tx_frame" {
		model = us($5); bar = model * 1.1 + 50; p50 = us($11); p99 = us($12)
		printf "  node %s %-9s model %6.1f µs, bar %6.1f: call p50 %6.1f %s, p99 %6.1f %s; %d of %d shorter than the model %s\n",
			node, $1, model, bar, p50, (p50 <= bar ? "ok" : "OVER"), p99, (p99 <= bar ? "ok" : "OVER"),
			$13, $2, ($13 == 0 ? "ok" : "OVER")
	}'

run go --go-trace "$TMP/go.trace"
read -r min p50 <"$TMP/go.rtt"
echo "with --go-trace: min ${min} µs, p50 ${p50} µs"
"$BIN" trace "$TMP/go.trace"
