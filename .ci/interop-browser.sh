#!/usr/bin/env bash
# A real browser against Roost: Debian's headless Chromium, driven by puppeteer-core (npm,
# pinned in .ci/mqttjs/package.json), runs MQTT.js's browser build over wss:// to a release
# `roost` with development certificates from `roost certs`. The browser trusts the server's
# key alone (--ignore-certificate-errors-spki-list). Installs the npm packages itself.
set -uo pipefail
cd "$(dirname "$0")/.."

source .ci/lib.sh
require node npm python3
chromium=${CHROMIUM:-/usr/bin/chromium}
[[ -x $chromium ]] || { echo "$0: $chromium is missing" >&2; exit 2; }
build_release
(cd .ci/mqttjs && npm install --no-audit --no-fund --silent) || { echo "$0: npm install failed" >&2; exit 2; }

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

target/release/roost certs --out "$work/certs" >/dev/null
wss=$(free_port)
cat >"$work/roost.toml" <<TOML
[[listeners]]
bind = "127.0.0.1:$wss"
protocol = "ws"
[listeners.tls]
cert = "$work/certs/server.pem"
key = "$work/certs/server.key"
TOML
target/release/roost --config "$work/roost.toml" >"$work/roost.log" 2>&1 &
pids+=($!)
if ! wait_port "$wss" "${pids[-1]}"; then
    echo "FAIL roost starts with a wss listener: $(tail -n 3 "$work/roost.log")"
    exit 1
fi
CHROMIUM=$chromium node .ci/mqttjs/browser.mjs "wss://localhost:$wss/mqtt" "$work/certs/server.pem"
