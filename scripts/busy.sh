#!/bin/sh
# busy.sh: run the test suite on a busy machine (issue 9, item 8).
#
# Usage: scripts/busy.sh [-n LOOPS] [-r RUNS] [-- COMMAND...]
#
# Starts LOOPS busy loops (default 4) that compete for the CPUs, then runs
# COMMAND (default: go test -race -count=1 ./...) RUNS times in a row
# (default 5), printing the wall time of each run. It stops at the first
# failing run and exits with its status; the busy loops are always killed.
set -u
loops=4
runs=5
while [ $# -gt 0 ]; do
	case "$1" in
	-n) loops=$2; shift 2 ;;
	-r) runs=$2; shift 2 ;;
	--) shift; break ;;
	-h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "busy.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
done
[ $# -eq 0 ] && set -- go test -race -count=1 ./...

pids=""
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
i=0
while [ "$i" -lt "$loops" ]; do
	sh -c 'while :; do :; done' &
	pids="$pids $!"
	i=$((i + 1))
done
echo "busy.sh: $loops busy loops (pids$pids); running $runs times: $*"
run=1
while [ "$run" -le "$runs" ]; do
	start=$(date +%s)
	"$@"
	status=$?
	end=$(date +%s)
	echo "busy.sh: run $run of $runs: exit $status after $((end - start))s"
	if [ "$status" -ne 0 ]; then
		exit "$status"
	fi
	run=$((run + 1))
done
echo "busy.sh: all $runs runs passed"
