#!/usr/bin/env bash
# What idle keep-alive connections cost the server.
#
# Starts the release testbed pinned to CPU 0 and, for each count in
# IDLE_COUNTS, parks that many served-once idle keep-alive connections on it
# (examples/idle_clients.rs, also on CPU 0; it sleeps), then measures
# keep-alive throughput with `wrk -t1 -c64` on CPU 1 against /hello.
# Goal: under 16 KiB of server memory per idle connection and no
# measurable throughput loss.
#
# Usage (from anywhere; needs wrk, taskset and at least 2 CPUs):
#   examples/bench_idle.sh
#   IDLE_COUNTS="0 1000 5000" DURATION=10s REPEAT=3 examples/bench_idle.sh
#
# Env: IDLE_COUNTS (default "0 5000"), DURATION (wrk -d, default 10s),
#      REPEAT (wrk runs per count, best kept, default 3),
#      NOFILE (ulimit -n wanted, default 65536, capped at the hard limit).
#
# Columns: req/s is the best of REPEAT runs; server CPU µs/req is the
# server's utime+stime (/proc/PID/stat, all threads) over that run divided
# by its requests; RSS is VmRSS after parking the idle connections; RSS per
# idle connection is (RSS after - RSS before parking) / count; kernel slab is
# the change in /proc/meminfo "Slab" over parking (sockets, epoll items, file
# objects), both socket ends included (client and server are on this host, so
# the server's share is about half); threads is
# /proc/PID/status Threads while the connections are parked.
set -euo pipefail

IDLE_COUNTS=${IDLE_COUNTS:-"0 5000"}
DURATION=${DURATION:-10s}
REPEAT=${REPEAT:-3}
NOFILE=${NOFILE:-65536}

cd "$(dirname "$0")/.."

command -v wrk >/dev/null || { sudo=; [ "$(id -u)" = 0 ] || sudo=sudo; $sudo apt-get install -y wrk; }
command -v taskset >/dev/null || { echo "bench_idle: taskset (util-linux) is needed" >&2; exit 1; }

hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$NOFILE" ]; then NOFILE=$hard; fi
ulimit -n "$NOFILE"

cargo build --release --quiet --example testbed --example idle_clients
TESTBED=target/release/examples/testbed
IDLE_BIN=target/release/examples/idle_clients

TMP=$(mktemp -d)
SERVER_PID=
CLIENTS_PID=
cleanup() {
    [ -n "$CLIENTS_PID" ] && kill "$CLIENTS_PID" 2>/dev/null || true
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
    [ -n "$SERVER_PID" ] && wait "$SERVER_PID" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Port 0 picks a free port; the testbed announces the real one on stderr.
taskset -c 0 "$TESTBED" --bind 127.0.0.1:0 --no-signals --timeout 3600 2>"$TMP/server.log" &
SERVER_PID=$!
for _ in $(seq 100); do
    ADDR=$(sed -n 's/^Listening on sockets: \([^,]*\).*/\1/p' "$TMP/server.log")
    [ -n "$ADDR" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$TMP/server.log" >&2; exit 1; }
    sleep 0.1
done
[ -n "$ADDR" ] || { echo "bench_idle: the testbed did not start" >&2; exit 1; }

TICK=$(getconf CLK_TCK)
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$SERVER_PID/status"; }
threads() { awk '/^Threads:/ {print $2}' "/proc/$SERVER_PID/status"; }
cpu_ticks() { sed 's/.*) //' "/proc/$SERVER_PID/stat" | awk '{print $12 + $13}'; }
slab_kib() { awk '/^Slab:/ {print $2}' /proc/meminfo; }
open_fds() { find "/proc/$SERVER_PID/fd" -mindepth 1 -maxdepth 1 | wc -l; }

# One warm-up run so allocator pools and the worker threads exist before any baseline.
taskset -c 1 wrk -t1 -c64 -d2s "http://$ADDR/hello" >/dev/null

rows=()
for idle in $IDLE_COUNTS; do
    rss0=$(rss_kib)
    fds0=$(open_fds)
    mem0=$(slab_kib)
    if [ "$idle" -gt 0 ]; then
        coproc IDLE { exec taskset -c 0 "$IDLE_BIN" "$ADDR" "$idle"; }
        CLIENTS_PID=$IDLE_PID CLIENTS_OUT=${IDLE[0]} CLIENTS_IN=${IDLE[1]}
        read -r -t 120 ready <&"$CLIENTS_OUT" || { echo "bench_idle: idle_clients did not get ready" >&2; exit 1; }
        [ "$ready" = "ready $idle" ] || { echo "bench_idle: idle_clients said: $ready" >&2; exit 1; }
        sleep 1 # let the server finish with the last wave
        if [ $(($(open_fds) - fds0)) -lt "$idle" ]; then
            echo "bench_idle: the server holds $(($(open_fds) - fds0)) new descriptors, not $idle" >&2
            exit 1
        fi
    fi
    rss1=$(rss_kib)
    mem1=$(slab_kib)
    nthreads=$(threads)

    best_rps=0 best_us=-
    for _ in $(seq "$REPEAT"); do
        t0=$(cpu_ticks)
        out=$(taskset -c 1 wrk -t1 -c64 -d"$DURATION" "http://$ADDR/hello")
        t1=$(cpu_ticks)
        reqs=$(awk '/requests in/ {print $1}' <<<"$out")
        rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
        if grep -q 'Non-2xx' <<<"$out" || [ -z "$reqs" ]; then
            printf 'bench_idle: wrk with %s idle:\n%s\n' "$idle" "$out" >&2
            exit 1
        fi
        grep 'Socket errors' <<<"$out" | sed "s/^ */bench_idle: $idle idle: /" >&2 || true
        if awk -v a="$rps" -v b="$best_rps" 'BEGIN {exit !(a > b)}'; then
            best_rps=$rps
            best_us=$(awk -v t=$((t1 - t0)) -v hz="$TICK" -v n="$reqs" 'BEGIN {printf "%.2f", t / hz * 1e6 / n}')
        fi
    done
    nthreads_after=$(threads)
    [ "$nthreads_after" = "$nthreads" ] || nthreads="$nthreads→$nthreads_after"

    if [ "$idle" -gt 0 ]; then
        per_conn=$(awk -v d=$((rss1 - rss0)) -v n="$idle" 'BEGIN {printf "%.1f", d / n}')
        kmem=$(awk -v d=$((mem1 - mem0)) -v n="$idle" 'BEGIN {printf "%.1f", d / n}')
        # Close our end of its stdin: idle_clients lets go of its connections and exits.
        exec {CLIENTS_IN}>&- {CLIENTS_OUT}<&-
        wait "$CLIENTS_PID" || true
        CLIENTS_PID=
        sleep 1 # let the server notice the closes before the next baseline
    else
        per_conn=- kmem=-
    fi
    rows+=("| $idle | $best_rps | $best_us | $(awk -v k="$rss1" 'BEGIN {printf "%.1f", k / 1024}') | $per_conn | $kmem | $nthreads |")
done

echo
echo "testbed on CPU 0, wrk -t1 -c64 -d$DURATION on CPU 1, best of $REPEAT"
echo
echo "| idle connections | req/s | server CPU µs/req | server RSS (MiB) | RSS per idle connection (KiB) | kernel slab per idle connection (KiB, both ends) | threads |"
echo "|---:|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
