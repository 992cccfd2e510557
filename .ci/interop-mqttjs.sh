#!/usr/bin/env bash
# MQTT.js (npm `mqtt`, pinned in .ci/mqttjs/package.json) against a release `roost` with a ws://
# and a wss:// listener (certificates from `roost certs`). Installs the npm package itself.
set -uo pipefail
cd "$(dirname "$0")/.."

source .ci/lib.sh
require node npm python3
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
target/release/roost --config "$work/roost.toml" >"$work/roost.log" 2>&1 &
pids+=($!)
if ! wait_port "$ws" "${pids[-1]}" || ! wait_port "$wss" "${pids[-1]}"; then
    echo "FAIL roost starts with ws and wss listeners: $(tail -n 3 "$work/roost.log")"
    exit 1
fi
node .ci/mqttjs/interop.mjs "ws://127.0.0.1:$ws/mqtt" "wss://localhost:$wss/mqtt" "$work/certs/ca.pem"
