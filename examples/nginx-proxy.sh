#!/usr/bin/env bash
# skyrocket behind nginx (Debian's), both ways nginx can say who the client is:
#
# - nginx's stream module with `proxy_protocol on` (a PROXY v1 header on each connection) in
#   front of an instance started with `--proxy-protocol v1 --proxy-allow-from 127.0.0.1`, and
#   the same passing TLS through to a `--tls-bind` instance (the header precedes the
#   handshake);
# - nginx's http proxy with X-Forwarded-For/-Proto/-Host in front of an instance started with
#   `--forwarded-allow-ips 127.0.0.1`.
#
# The checks: a client on 127.0.0.2 is who the application sees (REMOTE_ADDR) through both; an
# X-Forwarded-For the client forges does not change it, through nginx or sent straight to the
# instance (from a peer not trusted, the header is stripped).
#
# Usage: examples/nginx-proxy.sh
# Needs curl, openssl, nginx and its stream module (installed with apt-get if missing).
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=examples/lib.sh
source examples/lib.sh
command -v curl >/dev/null || apt-get install -y curl >/dev/null
command -v openssl >/dev/null || apt-get install -y openssl >/dev/null
STREAM_MODULE=/usr/lib/nginx/modules/ngx_stream_module.so
if ! command -v nginx >/dev/null || [ ! -e "$STREAM_MODULE" ]; then
    apt-get install -y nginx libnginx-mod-stream >/dev/null
fi
cargo build --quiet --release --example testbed
BIN=$PWD/target/release/examples/testbed

TMP=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

# The REMOTE_ADDR the application sees for a request from 127.0.0.2 to $1 (curl's further
# arguments after it).
remote_addr() {
    local url=$1
    shift
    curl -s --max-time 2 --interface 127.0.0.2 "$@" "$url/environ" | sed -n 's/^REMOTE_ADDR=//p'
}

# Fails unless $1 (what was seen) is $2 (what should be), saying $3.
expect() {
    if [ "$1" != "$2" ]; then
        echo "FAILED: $3: the application saw REMOTE_ADDR=${1:-nothing}, not $2" >&2
        exit 1
    fi
    echo "OK: $3: REMOTE_ADDR=$1"
}

APP_PP=$(free_port)
APP_TLS=$(free_port)
APP_XFF=$(free_port)
NGINX_STREAM=$(free_port)
NGINX_TLS=$(free_port)
NGINX_HTTP=$(free_port)
"$BIN" --bind "127.0.0.1:$APP_PP" --proxy-protocol v1 --proxy-allow-from 127.0.0.1 \
    2>"$TMP/pp.log" &
PIDS+=($!)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>/dev/null
"$BIN" --tls-bind "127.0.0.1:$APP_TLS" --certfile "$TMP/cert.pem" --keyfile "$TMP/key.pem" \
    --proxy-protocol v1 --proxy-allow-from 127.0.0.1 2>"$TMP/tls.log" &
PIDS+=($!)
"$BIN" --bind "127.0.0.1:$APP_XFF" --forwarded-allow-ips 127.0.0.1 2>"$TMP/xff.log" &
PIDS+=($!)

mkdir -p "$TMP/nginx"
cat >"$TMP/nginx.conf" <<EOF
load_module $STREAM_MODULE;
daemon off;
pid $TMP/nginx.pid;
error_log $TMP/nginx-error.log warn;
events {}
stream {
    server {
        listen 127.0.0.1:$NGINX_STREAM;
        proxy_pass 127.0.0.1:$APP_PP;
        proxy_protocol on;
    }
    server {
        listen 127.0.0.1:$NGINX_TLS;
        proxy_pass 127.0.0.1:$APP_TLS;
        proxy_protocol on;
    }
}
http {
    access_log off;
    client_body_temp_path $TMP/nginx;
    proxy_temp_path $TMP/nginx;
    server {
        listen 127.0.0.1:$NGINX_HTTP;
        location / {
            proxy_pass http://127.0.0.1:$APP_XFF;
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Host \$host;
        }
    }
}
EOF
nginx -p "$TMP/nginx" -c "$TMP/nginx.conf" &
PIDS+=($!)
await_up "http://127.0.0.1:$NGINX_STREAM" || { cat "$TMP/nginx-error.log" "$TMP/pp.log" >&2; exit 1; }
await_up "http://127.0.0.1:$NGINX_HTTP" || { cat "$TMP/nginx-error.log" "$TMP/xff.log" >&2; exit 1; }
await_up "https://127.0.0.1:$NGINX_TLS" -k || { cat "$TMP/nginx-error.log" "$TMP/tls.log" >&2; exit 1; }

FORGED=(-H "X-Forwarded-For: 6.6.6.6")
expect "$(remote_addr "http://127.0.0.1:$NGINX_STREAM")" 127.0.0.2 \
    "nginx stream, proxy_protocol on"
expect "$(remote_addr "http://127.0.0.1:$NGINX_STREAM" "${FORGED[@]}")" 127.0.0.2 \
    "nginx stream, a forged X-Forwarded-For"
expect "$(remote_addr "https://127.0.0.1:$NGINX_TLS" -k)" 127.0.0.2 \
    "nginx stream passing TLS through, proxy_protocol on"
SCHEME=$(curl -s -k --max-time 2 "https://127.0.0.1:$NGINX_TLS/environ" | sed -n 's/^wsgi.url_scheme=//p')
if [ "$SCHEME" != https ]; then
    echo "FAILED: through nginx's TLS passthrough the scheme is ${SCHEME:-nothing}, not https" >&2
    exit 1
fi
echo "OK: nginx stream passing TLS through: wsgi.url_scheme=https"
expect "$(remote_addr "http://127.0.0.1:$NGINX_HTTP")" 127.0.0.2 \
    "nginx http, X-Forwarded-For"
expect "$(remote_addr "http://127.0.0.1:$NGINX_HTTP" "${FORGED[@]}")" 127.0.0.2 \
    "nginx http, a forged X-Forwarded-For before nginx's"
expect "$(remote_addr "http://127.0.0.1:$APP_XFF" "${FORGED[@]}")" 127.0.0.2 \
    "straight to the instance, a forged X-Forwarded-For from a peer not trusted"
if [ -n "$(curl -s --max-time 2 "http://127.0.0.1:$APP_PP/hello" || true)" ]; then
    echo "FAILED: a connection without a PROXY header was answered" >&2
    exit 1
fi
echo "OK: a connection without a PROXY header is closed unanswered"
