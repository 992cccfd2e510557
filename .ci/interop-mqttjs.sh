#!/usr/bin/env bash
# MQTT.js (npm `mqtt`, pinned in .ci/mqttjs/package.json) against a release `roost` with a ws://
# and a wss:// listener (certificates from `roost certs`). Installs the npm package itself.
set -uo pipefail
cd "$(dirname "$0")/.."

source .ci/lib.sh
require node npm python3
build_release
(cd .ci/mqttjs && npm install --no-audit --no-fund --silent) || { echo "$0: npm install failed" >&2; exit 2; }

make_work

target/release/roost certs --out "$work/certs" >/dev/null
ws=$(free_port)
wss=$(free_port)
cat >"$work/roost.toml" <<TOML
[[listeners]]
bind = "127.0.0.1:$ws"
protocol = "ws"

[[listeners]]
bind = "127.0.0.1:$wss"
protocol = "ws"
[listeners.tls]
cert = "$work/certs/server.pem"
key = "$work/certs/server.key"
TOML
start_roost "ws and wss listeners" "$ws" "$wss"
node .ci/mqttjs/interop.mjs "ws://127.0.0.1:$ws/mqtt" "wss://localhost:$wss/mqtt" "$work/certs/ca.pem"
