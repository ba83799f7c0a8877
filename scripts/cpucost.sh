#!/usr/bin/env bash
# cpucost.sh: what tsnsim costs in CPU when it runs in real time next to
# real tools (issue 13, item 3), against the same traffic over a veth pair
# in the same run. Needs root, iproute2, ping and iperf3.
#
#   sudo scripts/cpucost.sh            # 10 s per phase, names cc-*
#   sudo DUR=20 PREFIX=xy scripts/cpucost.sh
#
# Phases, each measured over DUR seconds of wall time:
#   idle   two nodes (TAP backend, --netns), no traffic
#   flood  ping -f both ways at once (56-byte payload)
#   iperf  iperf3 TCP a->b, unlimited over TAP (the model sets the rate),
#          then over veth at the rate TAP reached (same traffic)
# For each it prints CPU seconds per wall second: of the emulator process
# (utime+stime from /proc/PID/stat over the phase) and of the traffic
# tools (from /usr/bin/time), and what moved. The SPI model is on
# (15 MHz) unless TSNSIM_FLAGS says otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DUR:-10}
P=${PREFIX:-cc}
FLAGS=${TSNSIM_FLAGS:-}
TMP=$(mktemp -d)
BIN=$TMP/tsnsim
HZ=$(getconf CLK_TCK)
SIM=""

cleanup() {
	[ -n "$SIM" ] && kill "$SIM" 2>/dev/null && wait "$SIM" 2>/dev/null
	ip netns del "$P-va" 2>/dev/null || true
	ip netns del "$P-vb" 2>/dev/null || true
	rm -rf "$TMP"
}
trap cleanup EXIT

go build -o "$BIN" ./cmd/tsnsim

# ticks PID: utime+stime of PID so far, in clock ticks.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# rate TICKS: CPU seconds per wall second over DUR.
rate() { awk -v t="$1" -v hz="$HZ" -v d="$DUR" 'BEGIN {printf "%.4f", t / hz / d}'; }
# toolcpu FILE...: sum of user+sys seconds in /usr/bin/time outputs, per DUR.
toolcpu() { cat "$@" | awk -v d="$DUR" '{s += $1 + $2} END {printf "%.4f", s / d}'; }

start_sim() {
	"$BIN" run --backend tap --netns --tap-prefix "$P" $FLAGS >"$TMP/sim.log" 2>&1 &
	SIM=$!
	for _ in $(seq 100); do
		if ip netns exec "$P-b" ip -4 addr show "$P-b" 2>/dev/null | grep -q 10.0.0.2; then
			sleep 1 # let both links come up
			return
		fi
		sleep 0.1
	done
	echo "tsnsim did not come up:" >&2
	cat "$TMP/sim.log" >&2
	exit 1
}

stop_sim() {
	kill -INT "$SIM"
	wait "$SIM" || true
	SIM=""
}

# flood NSA NSB ADDRA ADDRB TAG [INTERVAL]: ping both ways at once for
# DUR seconds, -f (as fast as replies come) or every INTERVAL seconds.
flood() {
	local how=(-f)
	[ -n "${6:-}" ] && how=(-i "$6")
	/usr/bin/time -f "%U %S" -o "$TMP/$5-a.time" ip netns exec "$1" ping -q "${how[@]}" -w "$DUR" "$4" >"$TMP/$5-a.ping" 2>&1 &
	local pa=$!
	/usr/bin/time -f "%U %S" -o "$TMP/$5-b.time" ip netns exec "$2" ping -q "${how[@]}" -w "$DUR" "$3" >"$TMP/$5-b.ping" 2>&1 &
	local pb=$!
	wait "$pa" "$pb" || true
}
# pings TAG: "sent/received" both ways from the ping summaries.
pings() { grep -h "packets transmitted" "$TMP/$1-a.ping" "$TMP/$1-b.ping" | awk '{printf "%s/%s ", $1, $4}'; }

# iperf NSC NSS ADDR TAG [RATE]: iperf3 TCP from NSC to NSS for DUR seconds.
iperf() {
	ip netns exec "$2" iperf3 -s -1 >/dev/null 2>&1 &
	local srv=$!
	sleep 0.5
	local b=()
	[ -n "${5:-}" ] && b=(-b "$5")
	/usr/bin/time -f "%U %S" -o "$TMP/$4-c.time" ip netns exec "$1" iperf3 -J -c "$3" -t "$DUR" "${b[@]}" >"$TMP/$4.json"
	wait "$srv" || true
}
# mbps TAG: receiver-side Mbit/s of an iperf3 JSON result.
mbps() { python3 -c 'import json,sys; print("%.2f" % (json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"]/1e6))' "$TMP/$1.json"; }

printf '%-22s %14s %14s  %s\n' "phase" "emulator cpu/s" "tools cpu/s" "moved"

# idle
start_sim
t0=$(ticks "$SIM"); sleep "$DUR"; t1=$(ticks "$SIM")
printf '%-22s %14s %14s  %s\n' "idle (tap)" "$(rate $((t1 - t0)))" "-" "-"

# ping flood over TAP
t0=$(ticks "$SIM"); flood "$P-a" "$P-b" 10.0.0.1 10.0.0.2 tap; t1=$(ticks "$SIM")
printf '%-22s %14s %14s  %s\n' "ping -f both (tap)" "$(rate $((t1 - t0)))" "$(toolcpu "$TMP"/tap-?.time)" "$(pings tap)"

# iperf3 over TAP, unlimited: the model sets the rate
t0=$(ticks "$SIM"); iperf "$P-a" "$P-b" 10.0.0.2 tapi; t1=$(ticks "$SIM")
TAPRATE=$(mbps tapi)
printf '%-22s %14s %14s  %s\n' "iperf3 a->b (tap)" "$(rate $((t1 - t0)))" "$(toolcpu "$TMP"/tapi-c.time)" "$TAPRATE Mbit/s"
stop_sim

# the same traffic over a veth pair
ip netns add "$P-va"
ip netns add "$P-vb"
ip link add "$P-va" netns "$P-va" type veth peer name "$P-vb" netns "$P-vb"
ip -n "$P-va" addr add 10.9.0.1/24 dev "$P-va"
ip -n "$P-vb" addr add 10.9.0.2/24 dev "$P-vb"
for n in va vb; do
	ip -n "$P-$n" link set lo up
	ip -n "$P-$n" link set "$P-$n" up
done
sleep 1
flood "$P-va" "$P-vb" 10.9.0.1 10.9.0.2 veth
printf '%-22s %14s %14s  %s\n' "ping -f both (veth)" "-" "$(toolcpu "$TMP"/veth-?.time)" "$(pings veth)"
# the flood's rate over TAP, over veth: the same traffic
IVAL=$(grep -h "packets transmitted" "$TMP/tap-a.ping" | awk -v d="$DUR" '{printf "%.6f", d / ($1 > 0 ? $1 : 1)}')
flood "$P-va" "$P-vb" 10.9.0.1 10.9.0.2 vethr "$IVAL"
printf '%-22s %14s %14s  %s\n' "ping tap's rate (veth)" "-" "$(toolcpu "$TMP"/vethr-?.time)" "$(pings vethr) (-i $IVAL)"
iperf "$P-va" "$P-vb" 10.9.0.2 vethi "${TAPRATE}M"
printf '%-22s %14s %14s  %s\n' "iperf3 a->b (veth)" "-" "$(toolcpu "$TMP"/vethi-c.time)" "$(mbps vethi) Mbit/s"
