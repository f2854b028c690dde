#!/usr/bin/env bash
# Two skyrocket instances behind HAProxy (Debian's 2.6), which speaks the PROXY protocol v2 to
# them (`send-proxy-v2`, health checks too). First check: a client on 127.0.0.2 is who the
# application sees (REMOTE_ADDR). Then wrk loads HAProxy while one instance and then the other
# is restarted (SIGTERM: a graceful drain, then a fresh start on the same port). The check: wrk
# reports no failed request and no non-2xx answer.
#
# Usage: examples/haproxy-rolling.sh [SECONDS_PER_PHASE]   (default 4)
# Needs curl, wrk and haproxy (installed with apt-get if missing).
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=examples/lib.sh
source examples/lib.sh
PHASE=${1:-4}
for tool in haproxy wrk curl; do
    command -v "$tool" >/dev/null || apt-get install -y "$tool" >/dev/null
done
cargo build --quiet --release --example testbed
BIN=$PWD/target/release/examples/testbed

TMP=$(mktemp -d)
declare -A PIDS=()
HAPROXY_PID=
cleanup() {
    for pid in "${PIDS[@]}" $HAPROXY_PID; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

# Starts instance $1 (a name) on port $2, in the background; PIDS[$1] is its pid.
start_instance() {
    "$BIN" --bind "127.0.0.1:$2" --shutdown-timeout 5 \
        --proxy-protocol auto --proxy-allow-from 127.0.0.1 2>>"$TMP/$1.log" &
    PIDS[$1]=$!
}

# Waits until instance $1 answers on port $2 (asked with a PROXY v1 header, as it wants one).
await_instance() {
    await_up "http://127.0.0.1:$2" --haproxy-protocol || { cat "$TMP/$1.log" >&2; return 1; }
}

# Restarts instance $1 on port $2: a graceful stop (SIGTERM), then a new process.
restart_instance() {
    kill -TERM "${PIDS[$1]}"
    wait "${PIDS[$1]}" || true
    start_instance "$1" "$2"
    await_instance "$1" "$2"
}

PORT_A=$(free_port)
PORT_B=$(free_port)
PORT_LB=$(free_port)
start_instance a "$PORT_A"
start_instance b "$PORT_B"
await_instance a "$PORT_A"
await_instance b "$PORT_B"

cat >"$TMP/haproxy.cfg" <<EOF
global
    maxconn 4096
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    retries 3
    option redispatch 1
    retry-on all-retryable-errors
    option http-server-close
frontend web
    bind 127.0.0.1:$PORT_LB
    default_backend skyrocket
backend skyrocket
    balance roundrobin
    option httpchk GET /hello
    http-check send hdr Host localhost
    default-server send-proxy-v2 check-send-proxy check inter 200ms fall 1 rise 1
    server a 127.0.0.1:$PORT_A
    server b 127.0.0.1:$PORT_B
EOF
haproxy -f "$TMP/haproxy.cfg" -db >"$TMP/haproxy.log" 2>&1 &
HAPROXY_PID=$!
await_up "http://127.0.0.1:$PORT_LB"

# Both instances see the client's own address (127.0.0.2), not HAProxy's.
for _ in 1 2; do
    seen=$(curl -s --max-time 2 --interface 127.0.0.2 "http://127.0.0.1:$PORT_LB/environ" |
        grep '^REMOTE_ADDR=' || true)
    if [ "$seen" != "REMOTE_ADDR=127.0.0.2" ]; then
        echo "FAILED: the application saw ${seen:-no REMOTE_ADDR}, not 127.0.0.2" >&2
        exit 1
    fi
done
echo "OK: the application sees the client's address through HAProxy's PROXY v2 header"

wrk -t1 -c32 -d"$((3 * PHASE))s" "http://127.0.0.1:$PORT_LB/hello" >"$TMP/wrk.txt" &
WRK_PID=$!
sleep "$PHASE"
restart_instance a "$PORT_A"
echo "instance a restarted"
sleep "$PHASE"
restart_instance b "$PORT_B"
echo "instance b restarted"
wait "$WRK_PID"
cat "$TMP/wrk.txt"

if grep -Eq 'Socket errors|Non-2xx' "$TMP/wrk.txt"; then
    echo "FAILED: wrk saw failed requests during the rolling restart" >&2
    exit 1
fi
echo "OK: no failed request while both instances were restarted in turn"
