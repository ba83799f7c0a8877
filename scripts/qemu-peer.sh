#!/usr/bin/env bash
# qemu-peer.sh: check the recipe of docs/cable-sockets.md ("A QEMU guest NIC
# as the far end") with a real QEMU guest.
#
#   scripts/qemu-peer.sh build    build tsnsim, a guest kernel and initramfs into $WORK
#   scripts/qemu-peer.sh check    build, then run every scenario below (default)
#   scripts/qemu-peer.sh SCENARIO build, then run one: doc-order reverse-order
#                                 chip-restart qemu-restart tap tcp dgram listen-7.2
#                                 second-qemu options-7.2
#
# Needs root (apt-get, and the tap scenario's namespace), Debian 12's apt
# sources, Go, and about 300 MB in $WORK. It installs qemu-system-x86, kmod
# and cpio with apt-get, downloads the kernel package linux-image-amd64
# depends on (apt-get download), extracts it with dpkg-deb, and builds an
# initramfs whose /init is scripts/qemu-peer/init.go (static Go): it loads
# virtio-net, takes 10.0.0.2/24, serves TCP echo/discard/chargen, pings and
# moves 1 MiB each way with the emulated node at 10.0.0.1 and prints
# PASS/FAIL lines on the serial console (kept in $WORK/*.console).
# The guest runs one at a time, -smp 1, under TCG (software) unless ACCEL=kvm.
#
# Environment: WORK (default /tmp/qemu-peer), ACCEL (tcg, the default, or kvm).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-/tmp/qemu-peer}
QSOCK=/tmp/tsn-qemu.sock # the paths the doc's recipe uses
SDIR=/tmp/tsn
MAC=52:54:00:12:34:56

say() { printf '\n== %s\n' "$*"; }
run() { printf '+ %s\n' "$*"; "$@"; }
die() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run me as root (apt-get, modules, the tap scenario's namespace)"

build() {
	mkdir -p "$WORK"
	say "packages: qemu-system-x86 (QEMU), kmod (modinfo), cpio"
	local need=()
	command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
	command -v modinfo >/dev/null || need+=(kmod)
	command -v cpio >/dev/null || need+=(cpio)
	if [ ${#need[@]} -gt 0 ]; then
		run apt-get update -qq
		run apt-get install -y -qq "${need[@]}"
	fi
	echo "+ qemu-system-x86_64 --version"
	qemu-system-x86_64 --version | head -1

	say "kernel: the package linux-image-amd64 depends on"
	local pkg
	pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
	[ -n "$pkg" ] || die "apt-cache depends linux-image-amd64 names no linux-image-VERSION package"
	if [ ! -d "$WORK/k/boot" ] || [ "$(cat "$WORK/k.pkg" 2>/dev/null)" != "$pkg" ]; then
		rm -rf "$WORK/k" "$WORK"/linux-image-*.deb
		(cd "$WORK" && run apt-get download "$pkg") 2>&1 | grep -v 'unsandboxed' || true
		run dpkg-deb -x "$WORK"/linux-image-*.deb "$WORK/k"
		echo "$pkg" >"$WORK/k.pkg"
	fi
	KVER=$(ls "$WORK/k/lib/modules")
	cp "$WORK/k/boot/vmlinuz-$KVER" "$WORK/vmlinuz"
	echo "kernel $KVER: $WORK/vmlinuz"

	say "initramfs: /init (scripts/qemu-peer/init.go) and virtio_net with its dependencies"
	local root="$WORK/initramfs" mods="$WORK/k/lib/modules/$KVER"
	rm -rf "$root"
	mkdir -p "$root/lib/modules" "$root/dev" "$root/proc" "$root/sys"
	local order=() seen=" "
	# add_mod NAME: its dependencies (modinfo -F depends) first, then NAME
	add_mod() {
		case "$seen" in *" $1 "*) return ;; esac
		seen="$seen$1 "
		local f dep
		f=$(find "$mods" -name "$1.ko" -o -name "$1.ko.xz" -o -name "$1.ko.zst" | head -1)
		[ -n "$f" ] || die "module $1 not found under $mods"
		for dep in $(modinfo -F depends "$f" | tr ',' ' '); do add_mod "$dep"; done
		case "$f" in
		*.xz) xz -dc "$f" >"$root/lib/modules/$1.ko" ;;
		*.zst) zstd -qdc "$f" >"$root/lib/modules/$1.ko" ;;
		*) cp "$f" "$root/lib/modules/$1.ko" ;;
		esac
		order+=("$1.ko")
	}
	# virtio_pci is what finds the virtio-net-pci device; virtio_net drives it
	add_mod virtio_pci
	add_mod virtio_net
	printf '%s\n' "${order[@]}" >"$root/lib/modules/order"
	echo "modules, in load order: ${order[*]}"
	(cd "$REPO" && run env CGO_ENABLED=0 go build -trimpath -ldflags=-s -o "$root/init" ./scripts/qemu-peer/init.go)
	(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1 >"$WORK/initramfs.gz")
	echo "initramfs: $WORK/initramfs.gz ($(du -h "$WORK/initramfs.gz" | cut -f1))"

	say "tsnsim"
	(cd "$REPO" && run go build -o "$WORK/tsnsim" ./cmd/tsnsim)
	# TCG by default: on the machine this was written on /dev/kvm opened but a
	# KVM guest hung after "Booting from ROM"; ACCEL=kvm where KVM works
	ACCEL=${ACCEL:-tcg}
	echo "accelerator: $ACCEL (ACCEL=kvm to use KVM; /dev/kvm $( (exec 3<>/dev/kvm) 2>/dev/null && echo opens || echo "does not open"))"
}

# --- processes: every one started here is killed by pid at exit ---
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	sleep 0.5
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	rm -f "$QSOCK"
}
trap cleanup EXIT

# qemu MODE LOG [NETDEV [APPEND]]: start the guest in the background; by default
# with the recipe's step 1 (QEMU listens on $QSOCK)
qemu() {
	local mode=$1 log=$2 netdev=${3:-stream,id=n0,server=on,addr.type=unix,addr.path=$QSOCK} extra=${4:-}
	# a stale socket file of an earlier QEMU (KEEP_SOCK=1: leave it)
	[ -n "${KEEP_SOCK:-}" ] || case "$netdev" in *server=on*) rm -f "$QSOCK" ;; esac
	echo "+ qemu-system-x86_64 ... -netdev $netdev -device virtio-net-pci,netdev=n0,mac=$MAC (peer.mode=$mode $extra) > $log"
	qemu-system-x86_64 -machine q35,accel="$ACCEL" -cpu max -smp 1 -m 256 \
		-nographic -no-reboot -nodefaults -serial stdio \
		-kernel "$WORK/vmlinuz" -initrd "$WORK/initramfs.gz" \
		-append "console=ttyS0 quiet panic=-1 peer.mode=$mode $extra" \
		-netdev "$netdev" \
		-device virtio-net-pci,netdev=n0,mac=$MAC \
		</dev/null >"$log" 2>&1 &
	QPID=$!
	PIDS+=("$QPID")
}

# chip LOG [CABLE-END]: the recipe's step 2
chip() {
	local end=${2:-stream-connect:unix:$QSOCK}
	echo "+ tsnsim chip serve --node a --socket-dir $SDIR --cable-end $end > $1"
	"$WORK/tsnsim" chip serve --node a --socket-dir $SDIR --cable-end "$end" >"$1" 2>&1 &
	CPID=$!
	PIDS+=("$CPID")
}

# node LOG [ARGS]: the recipe's step 3a (or 3b with --backend tap --netns)
node() {
	local log=$1
	shift
	local args=("$@")
	[ ${#args[@]} -gt 0 ] || args=(--serve)
	echo "+ tsnsim run --attach unix:$SDIR/a.sock --node a ${args[*]} > $log"
	"$WORK/tsnsim" run --attach unix:$SDIR/a.sock --node a "${args[@]}" >"$log" 2>&1 &
	NPID=$!
	PIDS+=("$NPID")
}

# waitfor FILE PATTERN SECONDS [COUNT]: until FILE has COUNT lines matching PATTERN
waitfor() {
	local f=$1 pat=$2 secs=$3 count=${4:-1} t0=$SECONDS n
	while n=$(grep -c -E -- "$pat" "$f" 2>/dev/null || true); [ "${n:-0}" -lt "$count" ]; do
		if [ $((SECONDS - t0)) -ge "$secs" ]; then
			echo "  timeout after ${secs}s waiting for '$pat' (x$count) in $f"
			return 1
		fi
		sleep 0.5
	done
	echo "  after $((SECONDS - t0))s: $(grep -E -- "$pat" "$f" | sed -n "${count}p")"
}

# stop PID: SIGINT (Ctrl-C), wait for it
stop() {
	kill -INT "$1" 2>/dev/null || return 0
	local i
	for i in $(seq 1 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
	echo "  pid $1 still running 10s after SIGINT; killing it"
	kill -9 "$1" 2>/dev/null || true
}

# waitexit PID SECONDS: for a guest that powers off
waitexit() {
	local i
	for i in $(seq 1 $(($2 * 10))); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
	echo "  pid $1 still running after $2s"
	return 1
}

RESULTS=()
verdict() { # NAME OK?
	RESULTS+=("$(printf '%-15s %s' "$1" "$2")")
	printf '  => %s %s\n' "$1" "$2"
}

show() { # LOG...: print the lines worth reading
	local f
	for f in "$@"; do
		echo "  --- $f"
		grep -E 'peer |PASS|FAIL|SUMMARY|ready|carrier|listening|connecting|connected|disconnected|refused|dial|CLEAN|LOSS|UNACCOUNTED|served|service |arp:|ping |error|warn' "$f" |
			grep -v 'cmdline:' | sed 's/^/    /' | head -60 || true
	done
}

guest_ok() { # CONSOLE: the guest's tests all passed, once per COUNT
	grep -q 'SUMMARY [0-9]* passed, 0 failed' "$1"
}

fresh() { # scenario start: nothing of ours running, no stale sockets
	rm -rf "$SDIR" "$QSOCK"
	L="$WORK/$1"
	mkdir -p "$L"
	rm -f "$L"/*
	say "scenario $1"
}

# 1. the doc's order: QEMU, chip serve, run --serve
doc_order() {
	fresh doc-order
	local t0=$SECONDS
	qemu test "$L/guest.console"
	sleep 2
	chip "$L/chip.log"
	waitfor "$L/chip.log" 'ready' 20
	node "$L/node.log"
	waitfor "$L/node.log" '^ready' 30
	local ok=PASS
	waitfor "$L/guest.console" 'SUMMARY' 300 || ok=FAIL
	waitexit "$QPID" 30 || ok=FAIL
	waitfor "$L/node.log" 'peer 10.0.0.2 is at' 5 || ok=FAIL
	stop "$NPID"
	stop "$CPID"
	guest_ok "$L/guest.console" || ok=FAIL
	grep -q '^CLEAN' "$L/node.log" || ok=FAIL
	show "$L/chip.log" "$L/node.log" "$L/guest.console"
	verdict doc-order "$ok ($((SECONDS - t0))s)"
}

# 2. the reverse: chip serve, run --serve, then QEMU
reverse_order() {
	fresh reverse-order
	local t0=$SECONDS ok=PASS
	chip "$L/chip.log"
	waitfor "$L/chip.log" 'ready' 20
	node "$L/node.log"
	waitfor "$L/node.log" '^ready' 30
	sleep 3 # the cable end dials a socket that is not there yet
	qemu test "$L/guest.console"
	waitfor "$L/guest.console" 'SUMMARY' 300 || ok=FAIL
	waitexit "$QPID" 30 || ok=FAIL
	waitfor "$L/chip.log" 'peer connected' 5 || ok=FAIL
	stop "$NPID"
	stop "$CPID"
	guest_ok "$L/guest.console" || ok=FAIL
	grep -q '^CLEAN' "$L/node.log" || ok=FAIL
	show "$L/chip.log" "$L/node.log" "$L/guest.console"
	verdict reverse-order "$ok ($((SECONDS - t0))s)"
}

# 3. chip serve (and its run --attach) restarted while QEMU runs
chip_restart() {
	fresh chip-restart
	local t0=$SECONDS ok=PASS
	qemu serve "$L/guest.console"
	chip "$L/chip1.log"
	waitfor "$L/chip1.log" 'ready' 20
	node "$L/node1.log"
	waitfor "$L/guest.console" 'SUMMARY' 300 || ok=FAIL
	say "stopping run and chip serve, QEMU stays up"
	stop "$NPID"
	stop "$CPID"
	grep -q '^CLEAN' "$L/node1.log" || ok=FAIL
	waitfor "$L/guest.console" 'stopped answering' 20 || ok=FAIL
	sleep 3
	say "chip serve and run --serve again"
	chip "$L/chip2.log"
	waitfor "$L/chip2.log" 'peer connected' 20 || ok=FAIL
	node "$L/node2.log"
	waitfor "$L/guest.console" 'answers ping again' 60 || ok=FAIL
	waitfor "$L/guest.console" 'SUMMARY' 300 2 || ok=FAIL
	[ "$(grep -c 'SUMMARY [0-9]* passed, 0 failed' "$L/guest.console")" = 2 ] || ok=FAIL
	waitfor "$L/node2.log" 'peer 10.0.0.2 is at' 5 || ok=FAIL
	stop "$NPID"
	say "run --attach without --serve: resolve and ping the guest"
	node "$L/node3.log" --ping-count 20
	waitexit "$NPID" 60 || ok=FAIL
	grep -q '^CLEAN' "$L/node3.log" || ok=FAIL
	stop "$CPID"
	stop "$QPID"
	show "$L/chip1.log" "$L/node1.log" "$L/chip2.log" "$L/node2.log" "$L/node3.log" "$L/guest.console"
	verdict chip-restart "$ok ($((SECONDS - t0))s)"
}

# 4. QEMU restarted (twice) while chip serve and run --serve stay up
qemu_restart() {
	fresh qemu-restart
	local t0=$SECONDS ok=PASS i
	chip "$L/chip.log"
	waitfor "$L/chip.log" 'ready' 20
	node "$L/node.log"
	waitfor "$L/node.log" '^ready' 30
	for i in 1 2 3; do
		say "guest $i"
		qemu test "$L/guest$i.console"
		waitfor "$L/guest$i.console" 'SUMMARY' 300 || ok=FAIL
		waitexit "$QPID" 30 || ok=FAIL
		guest_ok "$L/guest$i.console" || ok=FAIL
		waitfor "$L/chip.log" 'peer disconnected' 10 "$i" || ok=FAIL
	done
	[ "$(grep -c 'peer connected' "$L/chip.log")" = 3 ] || ok=FAIL
	stop "$NPID"
	stop "$CPID"
	grep -q '^CLEAN' "$L/node.log" || ok=FAIL
	show "$L/chip.log" "$L/node.log" "$L/guest1.console" "$L/guest3.console"
	verdict qemu-restart "$ok ($((SECONDS - t0))s)"
}

# 5. run --backend tap --netns: the host's Linux stack against the guest
tap_netns() {
	fresh tap
	local t0=$SECONDS ok=PASS ns="ip netns exec tsn-a"
	qemu idle "$L/guest.console"
	chip "$L/chip.log"
	waitfor "$L/chip.log" 'ready' 20
	node "$L/node.log" --backend tap --netns
	waitfor "$L/node.log" '^ready' 30 || ok=FAIL
	waitfor "$L/guest.console" 'serving on' 120 || ok=FAIL
	echo "+ $ns ping -c 5 10.0.0.2"
	$ns ping -c 5 -W 2 10.0.0.2 >"$L/ping.log" 2>&1 || { sleep 5; $ns ping -c 5 -W 2 10.0.0.2 >"$L/ping.log" 2>&1 || ok=FAIL; }
	sed 's/^/    /' "$L/ping.log"
	head -c 1048576 /dev/urandom >"$L/1M"
	echo "+ $ns bash: 1 MiB to 10.0.0.2:9 (discard) over /dev/tcp"
	local t=$SECONDS
	$ns timeout 120 bash -c "cat $L/1M >/dev/tcp/10.0.0.2/9" || ok=FAIL
	waitfor "$L/guest.console" 'served tcp discard .* 1048576 bytes in' 30 || ok=FAIL
	echo "+ $ns bash: 1 MiB from 10.0.0.2:19 (source) over /dev/tcp, compared with RFC 864"
	$ns timeout 120 bash -c "exec 3</dev/tcp/10.0.0.2/19; head -c 1048576 <&3 >$L/source; exec 3<&-" || true
	python3 -c '
import sys
p = b"".join(bytes(32 + (l + i) % 95 for i in range(72)) + b"\r\n" for l in range(95))
want = (p * (1048576 // len(p) + 1))[:1048576]
got = open(sys.argv[1], "rb").read()
print("  source: %d bytes, %s" % (len(got), "match RFC 864" if got == want else "DIFFER"))
sys.exit(got != want)' "$L/source" || ok=FAIL
	echo "  the two transfers took $((SECONDS - t))s"
	echo "+ $ns iperf3 -s / guest has no iperf3: skipped"
	stop "$NPID"
	stop "$CPID"
	stop "$QPID"
	grep -q '^CLEAN' "$L/node.log" || ok=FAIL
	show "$L/chip.log" "$L/node.log" "$L/guest.console"
	verdict tap "$ok ($((SECONDS - t0))s)"
}

# 6. the recipe over TCP: QEMU server=on on 127.0.0.1:5555, tsnsim stream-connect:tcp
tcp_recipe() {
	fresh tcp
	local t0=$SECONDS ok=PASS
	qemu test "$L/guest.console" stream,id=n0,server=on,addr.type=inet,addr.host=127.0.0.1,addr.port=5555
	sleep 1
	chip "$L/chip.log" stream-connect:tcp:127.0.0.1:5555
	waitfor "$L/chip.log" 'ready' 20
	node "$L/node.log"
	waitfor "$L/guest.console" 'SUMMARY' 300 || ok=FAIL
	waitexit "$QPID" 30 || ok=FAIL
	stop "$NPID"
	stop "$CPID"
	guest_ok "$L/guest.console" || ok=FAIL
	grep -q '^CLEAN' "$L/node.log" || ok=FAIL
	show "$L/chip.log" "$L/node.log" "$L/guest.console"
	verdict tcp "$ok ($((SECONDS - t0))s)"
}

# 7. the doc's UDP example: dgram on both sides
dgram_recipe() {
	fresh dgram
	local t0=$SECONDS ok=PASS
	chip "$L/chip.log" dgram:udp:127.0.0.1:5556:127.0.0.1:5555
	waitfor "$L/chip.log" 'ready' 20
	node "$L/node.log"
	waitfor "$L/node.log" '^ready' 30
	qemu test "$L/guest.console" dgram,id=n0,local.type=inet,local.host=127.0.0.1,local.port=5555,remote.type=inet,remote.host=127.0.0.1,remote.port=5556
	waitfor "$L/guest.console" 'SUMMARY' 300 || ok=FAIL
	waitexit "$QPID" 30 || ok=FAIL
	stop "$NPID"
	stop "$CPID"
	guest_ok "$L/guest.console" || ok=FAIL
	grep -q '^CLEAN' "$L/node.log" || ok=FAIL
	show "$L/chip.log" "$L/node.log" "$L/guest.console"
	verdict dgram "$ok ($((SECONDS - t0))s)"
}

# 8. the 7.2 row with tsnsim listening and QEMU dialling (server=off, no
# reconnect option on 7.2): QEMU first never connects; tsnsim first works, but
# a restarted chip serve is never redialled. Passes when that is what happens.
listen72() {
	fresh listen-7.2
	local t0=$SECONDS ok=PASS end=stream-listen:unix:$QSOCK nd=stream,id=n0,server=off,addr.type=unix,addr.path=$QSOCK
	rm -f "$QSOCK"
	echo "-- QEMU (server=off) first, nobody listening"
	qemu test "$L/guest-first.console" "$nd" peer.wait=40s
	sleep 3
	kill -0 "$QPID" 2>/dev/null && echo "  QEMU still running, stderr/console: $(grep -v '^peer\|^\[' "$L/guest-first.console" | tr -d '\033' | tail -n 2 | tr '\n' ' ')"
	chip "$L/chip1.log" "$end"
	waitfor "$L/chip1.log" 'ready' 20
	node "$L/node1.log"
	if waitfor "$L/chip1.log" 'peer connected' 45; then echo "  QEMU connected after all"; ok=FAIL; fi
	waitfor "$L/guest-first.console" 'SUMMARY' 120
	grep -q 'FAIL first-ping' "$L/guest-first.console" || ok=FAIL
	waitexit "$QPID" 30 || ok=FAIL
	stop "$NPID"
	stop "$CPID"
	echo "-- tsnsim listening first, then QEMU (server=off)"
	rm -rf "$SDIR"
	chip "$L/chip2.log" "$end"
	waitfor "$L/chip2.log" 'ready' 20
	node "$L/node2.log"
	qemu serve "$L/guest.console" "$nd"
	waitfor "$L/chip2.log" 'peer connected' 30 || ok=FAIL
	waitfor "$L/guest.console" 'SUMMARY' 300 || ok=FAIL
	guest_ok "$L/guest.console" || ok=FAIL
	echo "-- chip serve restarted; does QEMU 7.2 redial?"
	stop "$NPID"
	stop "$CPID"
	rm -rf "$SDIR"
	chip "$L/chip3.log" "$end"
	waitfor "$L/chip3.log" 'ready' 20
	node "$L/node3.log"
	if waitfor "$L/chip3.log" 'peer connected' 30; then echo "  QEMU redialled"; ok=FAIL; fi
	stop "$NPID"
	stop "$CPID"
	stop "$QPID"
	show "$L/chip1.log" "$L/guest-first.console" "$L/chip2.log" "$L/chip3.log" "$L/guest.console"
	verdict listen-7.2 "$ok ($((SECONDS - t0))s)"
}

# 9. a second QEMU on the recipe's socket path while the first is connected
second_qemu() {
	fresh second-qemu
	local t0=$SECONDS ok=PASS q1
	qemu serve "$L/guest1.console"
	q1=$QPID
	chip "$L/chip.log"
	waitfor "$L/chip.log" 'ready' 20
	node "$L/node.log"
	waitfor "$L/guest1.console" 'SUMMARY' 300 || ok=FAIL
	echo "-- a second QEMU with the same addr.path"
	KEEP_SOCK=1 qemu test "$L/guest2.console" stream,id=n0,server=on,addr.type=unix,addr.path=$QSOCK peer.wait=60s
	sleep 15
	kill -0 "$QPID" 2>/dev/null && echo "  the second QEMU is running" || echo "  the second QEMU exited: $(tr -d '\033' <"$L/guest2.console" | tail -n 2)"
	echo "-- the first QEMU stops"
	stop "$q1"
	waitfor "$L/chip.log" 'peer connected' 20 2 && echo "  tsnsim dialled the second QEMU"
	waitfor "$L/guest2.console" 'SUMMARY' 120 || true
	waitexit "$QPID" 30 || stop "$QPID"
	stop "$NPID"
	stop "$CPID"
	show "$L/chip.log" "$L/guest1.console" "$L/guest2.console"
	verdict second-qemu "observed ($((SECONDS - t0))s)"
}

# 10. QEMU 7.2 and the reconnect options
options72() {
	fresh options-7.2
	local o
	for o in reconnect=1 reconnect-ms=1000; do
		echo "+ qemu-system-x86_64 -netdev stream,id=n0,server=off,$o,addr.type=inet,addr.host=127.0.0.1,addr.port=5555"
		timeout 20 qemu-system-x86_64 -machine q35,accel=tcg -nographic -nodefaults \
			-netdev stream,id=n0,server=off,$o,addr.type=inet,addr.host=127.0.0.1,addr.port=5555 \
			-device virtio-net-pci,netdev=n0 </dev/null 2>&1 | head -n 3 | sed 's/^/    /' || true
	done
	verdict options-7.2 "observed"
}

cmd=${1:-check}
build
case "$cmd" in
build)
	echo "built into $WORK; boot the guest by hand with:"
	echo "  qemu-system-x86_64 -machine q35,accel=$ACCEL -cpu max -smp 1 -m 256 -nographic -no-reboot -nodefaults -serial stdio \\"
	echo "    -kernel $WORK/vmlinuz -initrd $WORK/initramfs.gz -append 'console=ttyS0 quiet panic=-1 peer.mode=test' \\"
	echo "    -netdev stream,id=n0,server=on,addr.type=unix,addr.path=$QSOCK -device virtio-net-pci,netdev=n0,mac=$MAC"
	exit 0
	;;
check) scenarios=(doc_order reverse_order chip_restart qemu_restart tap_netns tcp_recipe dgram_recipe listen72 second_qemu options72) ;;
doc-order | reverse-order | chip-restart | qemu-restart | second-qemu) scenarios=("${cmd//-/_}") ;;
tap) scenarios=(tap_netns) ;;
tcp | dgram) scenarios=("${cmd}_recipe") ;;
listen-7.2) scenarios=(listen72) ;;
options-7.2) scenarios=(options72) ;;
*) die "unknown command $cmd (build check doc-order reverse-order chip-restart qemu-restart tap tcp dgram listen-7.2 second-qemu options-7.2)" ;;
esac
for s in "${scenarios[@]}"; do "$s"; done
say "results (logs in $WORK)"
printf '%s\n' "${RESULTS[@]}"
case "${RESULTS[*]}" in *FAIL*) exit 1 ;; esac
