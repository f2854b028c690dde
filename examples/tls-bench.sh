#!/usr/bin/env bash
# HTTPS beside nginx (issue 12), in one run: keep-alive requests per second over TLS, new TLS
# connections per second (a request each, `Connection: close`), and the bytes per second of
# a 10 MiB file. Both servers serve the same files with the same certificate (ECDSA P-256),
# one worker each, pinned to CPU 0; wrk runs on CPU 1.
#
#   cargo build --release && examples/tls-bench.sh [DURATION]   (default 5s; BIN=... another build)
#
# Needs nginx, wrk and openssl (Debian: nginx wrk openssl). Prints a markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
. examples/lib.sh

DURATION=${1:-5s}
BIN=${BIN:-target/release/skyrocket}
WORK=$(mktemp -d /tmp/skyrocket-tls-bench.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
mkdir "$WORK/root"
printf 'Hello, World!' >"$WORK/root/hello"
head -c $((10 << 20)) /dev/urandom >"$WORK/root/10m.bin"
# nginx's worker runs as an unprivileged user: the files must be readable by all.
chmod -R a+rX "$WORK"

NGINX_PORT=$(free_port)
cat >"$WORK/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    keepalive_requests 1000000;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:10m;
    ssl_session_tickets on;
    server {
        listen 127.0.0.1:$NGINX_PORT ssl;
        ssl_certificate $WORK/cert.pem;
        ssl_certificate_key $WORK/key.pem;
        root $WORK/root;
    }
}
CONF
taskset -c 0 nginx -c "$WORK/nginx.conf" -p "$WORK" &
PIDS+=($!)

SKY_PORT=$(free_port)
taskset -c 0 "$BIN" --method fs --document-root "$WORK/root" --no-signals \
    --tls-bind "127.0.0.1:$SKY_PORT" --certfile "$WORK/cert.pem" --keyfile "$WORK/key.pem" \
    2>"$WORK/skyrocket.log" &
PIDS+=($!)

up() {
    for _ in $(seq 100); do
        [ "$(curl -sk -o /dev/null --max-time 1 -w '%{http_code}' "$1/hello")" = 200 ] && return 0
        sleep 0.1
    done
    echo "no answer from $1" >&2
    return 1
}
up "https://127.0.0.1:$NGINX_PORT"
up "https://127.0.0.1:$SKY_PORT"

# wrk's figure: requests per second, or transfer per second (MiB/s) with "bytes".
measure() {
    local url=$1 what=$2
    shift 2
    local out
    out=$(taskset -c 1 wrk -t1 -d"$DURATION" "$@" "$url" 2>&1)
    case "$what" in
        bytes) echo "$out" | awk '/^Transfer\/sec:/ {
                   v = $2; u = substr(v, length(v) - 1); v = v + 0
                   if (u == "GB") v *= 1024; if (u == "KB") v /= 1024; printf "%.0f MiB/s", v }' ;;
        *) echo "$out" | awk '/^Requests\/sec:/ {printf "%.0f", $2}' ;;
    esac
}

row() {
    local base=$1
    taskset -c 1 wrk -t1 -c16 -d1s "$base/hello" >/dev/null 2>&1 # warm-up
    local ka close file
    ka=$(measure "$base/hello" rps -c64)
    close=$(measure "$base/hello" rps -c64 -H "Connection: close")
    file=$(measure "$base/10m.bin" bytes -c8)
    echo "$ka | $close | $file"
}

NGINX_ROW=$(row "https://127.0.0.1:$NGINX_PORT")
SKY_ROW=$(row "https://127.0.0.1:$SKY_PORT")
echo "| server | keep-alive req/s | new TLS connections/s | 10 MiB file |"
echo "|---|---:|---:|---:|"
echo "| nginx $(nginx -v 2>&1 | sed 's/.*nginx\///') | $NGINX_ROW |"
echo "| skyrocket | $SKY_ROW |"
