#!/usr/bin/env bash
# Static files: skyrocket's `--method fs` beside nginx, same files, same run.
#
# Serves one directory holding a 1 KiB and a 10 MiB file with each server in turn, pinned to
# CPU 0 (nginx: one worker process, sendfile on, access log off), and loads each with
# `wrk -t1 -c64` pinned to CPU 1. Prints requests per second for the small file, bytes per
# second for the large one, and the server's CPU time per request.
#
# Usage: examples/bench_fs.sh            (needs wrk, nginx and taskset; installs wrk and nginx
#        DURATION=10s REPEAT=3 examples/bench_fs.sh          from Debian's packages if missing)
set -euo pipefail

DURATION=${DURATION:-10s}
REPEAT=${REPEAT:-3}
CONNS=${CONNS:-64}

cd "$(dirname "$0")/.."
for tool in wrk nginx; do
    command -v "$tool" >/dev/null || apt-get install -y "$tool" >/dev/null
done
cargo build --release --quiet --bin skyrocket
SKYROCKET=$PWD/target/release/skyrocket

TMP=$(mktemp -d)
SERVER_PID=
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT

ROOT=$TMP/www
mkdir -p "$ROOT"
head -c 1024 /dev/urandom >"$ROOT/small.bin"
head -c $((10 * 1024 * 1024)) /dev/urandom >"$ROOT/large.bin"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13 + $14 + $15}'; }

nginx_conf() {
    cat <<EOF
worker_processes 1;
daemon off;
master_process off;
pid $TMP/nginx.pid;
error_log $TMP/nginx-error.log;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    types { application/octet-stream bin; }
    client_body_temp_path $TMP/body;
    proxy_temp_path $TMP/proxy;
    fastcgi_temp_path $TMP/fastcgi;
    uwsgi_temp_path $TMP/uwsgi;
    scgi_temp_path $TMP/scgi;
    server { listen 127.0.0.1:$1; root $ROOT; }
}
EOF
}

start_server() { # name port
    case $1 in
    nginx)
        nginx_conf "$2" >"$TMP/nginx.conf"
        taskset -c 0 nginx -c "$TMP/nginx.conf" &
        ;;
    skyrocket)
        taskset -c 0 "$SKYROCKET" --bind "127.0.0.1:$2" --method fs --document-root "$ROOT" \
            --no-signals 2>"$TMP/skyrocket.log" &
        ;;
    esac
    SERVER_PID=$!
    for _ in $(seq 100); do
        curl -sf -o /dev/null "http://127.0.0.1:$2/small.bin" && return
        sleep 0.1
    done
    echo "bench_fs: $1 did not start" >&2
    exit 1
}

# Prints "req/s µs/req": the best of REPEAT runs by req/s, with the server's CPU time per
# request in that run.
measure() { # port path
    local best_rps=0 best_us=- rps us t0 t1 out
    for _ in $(seq "$REPEAT"); do
        t0=$(cpu_ticks "$SERVER_PID")
        out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"$DURATION" "http://127.0.0.1:$1$2")
        t1=$(cpu_ticks "$SERVER_PID")
        if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then echo "bench_fs: $out" >&2; fi
        read -r rps us < <(awk -v t=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" '
            /requests in/ { n = $1 }
            /^Requests\/sec:/ { rps = $2 }
            END { printf "%s %.1f\n", rps, t / hz * 1e6 / n }' <<<"$out")
        if awk -v a="$rps" -v b="$best_rps" 'BEGIN {exit !(a > b)}'; then
            best_rps=$rps best_us=$us
        fi
    done
    echo "$best_rps $best_us"
}

declare -A RESULT
for server in nginx skyrocket; do
    port=$(free_port)
    start_server "$server" "$port"
    taskset -c 1 wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:$port/small.bin" >/dev/null
    RESULT[$server small]=$(measure "$port" /small.bin)
    RESULT[$server large]=$(measure "$port" /large.bin)
    kill "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
done

mib_s() { awk -v r="$1" 'BEGIN {printf "%.0f", r * 10}'; }
echo
echo "wrk -t1 -c$CONNS -d$DURATION, best of $REPEAT (server: cpu 0, wrk: cpu 1); $(date -u +%FT%RZ)"
echo
echo "| server | 1 KiB req/s | ÷ nginx | CPU µs/req (1 KiB) | 10 MiB MiB/s | ÷ nginx | CPU µs/req (10 MiB) |"
echo "|---|---:|---:|---:|---:|---:|---:|"
read -r n_small _ <<<"${RESULT[nginx small]}"
read -r n_large _ <<<"${RESULT[nginx large]}"
for server in nginx skyrocket; do
    read -r small small_us <<<"${RESULT[$server small]}"
    read -r large large_us <<<"${RESULT[$server large]}"
    printf '| %s | %.0f | %.2f | %s | %s | %.2f | %s |\n' "$server" "$small" \
        "$(awk -v a="$small" -v b="$n_small" 'BEGIN {print a / b}')" "$small_us" \
        "$(mib_s "$large")" "$(awk -v a="$large" -v b="$n_large" 'BEGIN {print a / b}')" "$large_us"
done
