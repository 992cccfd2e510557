#!/usr/bin/env bash
# TLS as Mosquitto's clients use it: development certificates from `roost certs`, a release
# `roost` with a TLS listener and a mutual-TLS listener, and mosquitto_pub/_sub with --cafile
# (and --cert/--key) for MQTT 3.1.1 and 5.0; then roost-bench's TLS client (the benchmarks'
# path) against an ECDSA and an RSA-2048 listener. One PASS/FAIL line per check; exits 1 on any
# failure.
set -uo pipefail
cd "$(dirname "$0")/.."

source .ci/lib.sh
require mosquitto_pub mosquitto_sub python3 timeout
build_release

make_work

target/release/roost certs --out "$work/certs" --client-name device-1 >/dev/null
target/release/roost certs --out "$work/rsa" --key-type rsa >/dev/null
c=$work/certs
tls=$(free_port)
mtls=$(free_port)
rsa=$(free_port)
cat >"$work/roost.toml" <<TOML
[[listeners]]
bind = "127.0.0.1:$tls"
[listeners.tls]
cert = "$c/server.pem"
key = "$c/server.key"

[[listeners]]
bind = "127.0.0.1:$mtls"
[listeners.tls]
cert = "$c/server.pem"
key = "$c/server.key"
client_ca = "$c/ca.pem"
require_client_cert = true

[[listeners]]
bind = "127.0.0.1:$rsa"
[listeners.tls]
cert = "$work/rsa/server.pem"
key = "$work/rsa/server.key"
TOML
start_roost "three TLS listeners" "$tls" "$mtls" "$rsa"

# check <name> <0|refused> <mosquitto_pub args...>: whether a QoS 1 PUBLISH goes through.
check() {
    local name=$1 want=$2 got
    shift 2
    if timeout 10 mosquitto_pub -h localhost "$@" -t interop/tls -m x -q 1 >"$work/pub.out" 2>&1; then
        got=0
    else
        got=refused
    fi
    if [[ $got == "$want" ]]; then pass "$name"; else fail "$name" "$(tail -n 1 "$work/pub.out")"; fi
}

for v in mqttv311 mqttv5; do
    check "$v: TLS with --cafile" 0 -p "$tls" -V $v --cafile "$c/ca.pem"
    check "$v: mutual TLS with --cert/--key" 0 -p "$mtls" -V $v --cafile "$c/ca.pem" --cert "$c/client.pem" --key "$c/client.key"
    check "$v: mutual TLS without a certificate refused" refused -p "$mtls" -V $v --cafile "$c/ca.pem"
    check "$v: plaintext to the TLS port refused" refused -p "$tls" -V $v
done

# A message across: subscriber over mTLS, publisher over TLS.
timeout 10 mosquitto_sub -h localhost -p "$mtls" --cafile "$c/ca.pem" --cert "$c/client.pem" --key "$c/client.key" \
    -t interop/tls/across -C 1 -W 5 >"$work/sub.out" 2>&1 &
sub=$!
# Until the subscription is in place, a retained message would arrive anyway: publish retained.
timeout 10 mosquitto_pub -h localhost -p "$tls" --cafile "$c/ca.pem" -t interop/tls/across -m across -r -q 1
wait "$sub"
if [[ $(cat "$work/sub.out") == across ]]; then
    pass "a message from a TLS client reaches an mTLS subscriber"
else
    fail "a message from a TLS client reaches an mTLS subscriber" "$(cat "$work/sub.out")"
fi

# bench <name> <figure> <roost-bench args...>: the scenario runs and its JSON figure is > 0
# with no handshake failed.
bench() {
    local name=$1 figure=$2
    shift 2
    if timeout 60 target/release/roost-bench "$@" --duration 1 --json >"$work/bench.json" 2>"$work/bench.err" &&
        python3 - "$work/bench.json" "$figure" <<'PY'; then
import json, sys
f = json.load(open(sys.argv[1]))["figures"]
sys.exit(0 if f.get(sys.argv[2], 0) > 0 and f.get("failed", 0) == 0 and f.get("failed_total", 0) == 0 else 1)
PY
        pass "$name"
    else
        fail "$name" "$(tail -n 1 "$work/bench.err") $(cat "$work/bench.json" 2>/dev/null)"
    fi
}
bench "roost-bench: handshakes over TLS, certificate checked (ECDSA)" handshakes_total \
    handshakes --port "$tls" --tls-ca "$c/ca.pem" --concurrency 4
bench "roost-bench: handshakes over TLS, unchecked (RSA-2048)" handshakes_total \
    handshakes --port "$rsa" --tls-insecure --concurrency 4
# The RSA listener's certificate comes from another CA than $c/ca.pem: checked, it is refused.
if timeout 60 target/release/roost-bench handshakes --port "$rsa" --tls-ca "$c/ca.pem" \
    --concurrency 1 --duration 1 >/dev/null 2>"$work/bench.err"; then
    fail "roost-bench: a certificate from another CA is refused" "the run succeeded"
elif grep -q "invalid peer certificate" "$work/bench.err"; then
    pass "roost-bench: a certificate from another CA is refused"
else
    fail "roost-bench: a certificate from another CA is refused" "$(tail -n 1 "$work/bench.err")"
fi
bench "roost-bench: idle TLS connections" connected \
    conns --port "$tls" --tls-ca "$c/ca.pem" --connections 200 --source-ips 2
bench "roost-bench: fan-out over TLS" delivered_total \
    fanout --port "$tls" --tls-ca "$c/ca.pem" --subscribers 20

summary
((failed == 0))
