#!/usr/bin/env bash
# Two skyrocket instances behind HAProxy (Debian's 2.6). wrk loads HAProxy while one instance
# and then the other is restarted (SIGTERM: a graceful drain, then a fresh start on the same
# port). The check: wrk reports no failed request and no non-2xx answer.
#
# Usage: examples/haproxy-rolling.sh [SECONDS_PER_PHASE]   (default 4)
# Needs curl, wrk and haproxy (installed with apt-get if missing).
set -euo pipefail

cd "$(dirname "$0")/.."
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

# A free TCP port on 127.0.0.1 (the kernel's pick, released at once).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until $1 answers 200 on /hello.
await_up() {
    for _ in $(seq 100); do
        [ "$(curl -s -o /dev/null --max-time 1 -w '%{http_code}' "$1/hello")" = 200 ] && return 0
        sleep 0.1
    done
    echo "no answer from $1" >&2
    return 1
}

# Starts instance $1 (a name) on port $2, in the background; PIDS[$1] is its pid.
start_instance() {
    "$BIN" --bind "127.0.0.1:$2" --shutdown-timeout 5 2>>"$TMP/$1.log" &
    PIDS[$1]=$!
}

# Waits until instance $1 answers on port $2.
await_instance() {
    await_up "http://127.0.0.1:$2" || { cat "$TMP/$1.log" >&2; return 1; }
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
    server a 127.0.0.1:$PORT_A check inter 200ms fall 1 rise 1
    server b 127.0.0.1:$PORT_B check inter 200ms fall 1 rise 1
EOF
haproxy -f "$TMP/haproxy.cfg" -db >"$TMP/haproxy.log" 2>&1 &
HAPROXY_PID=$!
await_up "http://127.0.0.1:$PORT_LB"

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
