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

make_work

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
start_roost "a wss listener" "$wss"
CHROMIUM=$chromium node .ci/mqttjs/browser.mjs "wss://localhost:$wss/mqtt" "$work/certs/server.pem"
