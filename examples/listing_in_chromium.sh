#!/usr/bin/env bash
# The directory listing in a real browser: headless Chromium (driven by playwright-core)
# opens the listing served by `skyrocket --method fs --display-index`, checks that the
# names render as text, clicks the link to a file named `a b<&>.txt`, checks that the
# file's content arrives, and saves a screenshot of the listing.
#
# Usage: examples/listing_in_chromium.sh [SCREENSHOT.png]
# Needs Debian's chromium (/usr/bin/chromium) and Node.js with npm (playwright-core is
# installed into a temporary directory).
set -euo pipefail

SHOT=${1:-$PWD/listing.png}
cd "$(dirname "$0")/.."
command -v chromium >/dev/null || apt-get install -y chromium >/dev/null
cargo build --release --quiet --bin skyrocket

TMP=$(mktemp -d)
SERVER_PID=
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

mkdir -p "$TMP/www/dir/sub" "$TMP/node"
printf 'odd file\n' >"$TMP/www/dir/a b<&>.txt"
printf 'plain\n' >"$TMP/www/dir/plain.txt"

target/release/skyrocket --bind 127.0.0.1:0 --method fs --document-root "$TMP/www" \
    --display-index --no-signals 2>"$TMP/server.log" &
SERVER_PID=$!
for _ in $(seq 100); do
    ADDR=$(sed -n 's/^Listening on sockets: \([^,]*\).*/\1/p' "$TMP/server.log")
    [ -n "$ADDR" ] && break
    sleep 0.1
done
[ -n "$ADDR" ] || { cat "$TMP/server.log" >&2; exit 1; }

(cd "$TMP/node" && npm install --silent --no-audit --no-fund playwright-core >/dev/null)
cat >"$TMP/node/check.mjs" <<'EOF'
import { chromium } from 'playwright-core';
const [url, shot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const page = await browser.newPage();
const listing = await page.goto(url);
if (listing.status() !== 200) throw new Error(`listing: ${listing.status()}`);
const names = await page.locator('a').allTextContents();
console.log('links shown:', JSON.stringify(names));
for (const name of ['../', 'a b<&>.txt', 'plain.txt', 'sub/']) {
  if (!names.includes(name)) throw new Error(`missing link text ${name}`);
}
await page.screenshot({ path: shot });
await Promise.all([page.waitForNavigation(), page.getByText('a b<&>.txt').click()]);
const body = await page.locator('body').innerText();
console.log('clicked through to', page.url(), '->', JSON.stringify(body));
if (body.trim() !== 'odd file') throw new Error('the file did not arrive');
await browser.close();
console.log('OK');
EOF
node "$TMP/node/check.mjs" "http://$ADDR/dir/" "$SHOT"
echo "screenshot: $SHOT"
