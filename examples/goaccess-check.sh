#!/usr/bin/env bash
# The access log read by a real analyzer: the testbed writes Combined Log Format to a file
# (`--access-log FILE --access-log-format combined`), curl and raw sockets send it ordinary
# and refused requests (a Basic user, a Referer, quotes in a target, garbage, HTTP/2.0, a body
# too large, too many headers), the file is rotated as logrotate does (moved, then SIGUSR1),
# and goaccess (`--log-format=COMBINED`) must read every line of both files, none invalid.
#
# Usage: examples/goaccess-check.sh
# Needs curl and Debian's goaccess (installed with apt-get if missing).
set -euo pipefail

cd "$(dirname "$0")/.."
command -v goaccess >/dev/null || apt-get install -y goaccess >/dev/null
cargo build --quiet --example testbed

TMP=$(mktemp -d)
SERVER_PID=
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT
LOG=$TMP/access.log

target/debug/examples/testbed --bind 127.0.0.1:0 --access-log "$LOG" \
    --access-log-format combined --max-body 100 --max-headers 5 2>"$TMP/server.log" &
SERVER_PID=$!
for _ in $(seq 100); do
    ADDR=$(sed -n 's/^Listening on sockets: \([^,]*\).*/\1/p' "$TMP/server.log")
    [ -n "$ADDR" ] && break
    sleep 0.1
done
[ -n "$ADDR" ] || { cat "$TMP/server.log" >&2; exit 1; }
URL=http://$ADDR

# Sends raw bytes on a new connection and prints the status line of the answer.
raw() {
    exec 3<>"/dev/tcp/${ADDR%:*}/${ADDR##*:}"
    printf "$1" >&3
    head -n1 <&3 | tr -d '\r'
    exec 3<&-
}

requests() {
    curl -s -o /dev/null "$URL/hello"
    curl -s -o /dev/null -A 'Mozilla/5.0 (X11; Linux x86_64) check/1.0' -e "$URL/from?page=1" "$URL/hello?q=1"
    curl -s -o /dev/null -u alice:secret "$URL/environ"
    curl -s -o /dev/null -I "$URL/stream?n=3"
    curl -s -o /dev/null -d 'some body' "$URL/echo"
    curl -s -o /dev/null "$URL/missing"
    curl -s -o /dev/null --path-as-is "$URL/a%22b/\"quoted\""
    curl -s -o /dev/null -d "$(printf 'x%.0s' $(seq 200))" "$URL/echo"
    curl -s -o /dev/null -H 'A: 1' -H 'B: 2' -H 'C: 3' -H 'D: 4' "$URL/hello"
    raw '\x16\x03\x01\x00\x05hello\r\n\r\n'
    raw 'GET /two HTTP/2.0\r\nHost: t\r\n\r\n'
    raw 'GET /bad HTTP/1.1\r\nBad header\r\n\r\n'
}

echo "== requests, then the log moved away and SIGUSR1"
requests
until [ "$(wc -l <"$LOG")" -ge 12 ]; do sleep 0.1; done
mv "$LOG" "$LOG.1"
kill -USR1 "$SERVER_PID"
until grep -q restarted "$TMP/server.log"; do sleep 0.1; done
echo "== requests after the rotation"
requests
until [ -f "$LOG" ] && [ "$(wc -l <"$LOG")" -ge 12 ]; do sleep 0.1; done

echo "== $LOG.1 (before the rotation)"
cat "$LOG.1"
LINES=$(cat "$LOG.1" "$LOG" | wc -l)
echo "== goaccess --log-format=COMBINED on both files ($LINES lines)"
goaccess "$LOG.1" "$LOG" --log-format=COMBINED --no-global-config -o "$TMP/report.json" \
    2>"$TMP/goaccess.err" || { cat "$TMP/goaccess.err" >&2; exit 1; }
python3 - "$TMP/report.json" "$LINES" <<'EOF'
import json, sys
general = json.load(open(sys.argv[1]))["general"]
lines = int(sys.argv[2])
total, valid, failed = (general[k] for k in ("total_requests", "valid_requests", "failed_requests"))
print(f"goaccess: total_requests={total} valid_requests={valid} failed_requests={failed}")
if (total, valid, failed) != (lines, lines, 0):
    sys.exit(f"goaccess read {valid} valid and {failed} invalid lines of {lines}")
print("every line parsed, none invalid")
EOF
