#!/usr/bin/env bash
# TLS as Mosquitto's clients use it: development certificates from `roost certs`, a release
# `roost` with a TLS listener and a mutual-TLS listener, and mosquitto_pub/_sub with --cafile
# (and --cert/--key) for MQTT 3.1.1 and 5.0. One PASS/FAIL line per check; exits 1 on any
# failure.
set -uo pipefail
cd "$(dirname "$0")/.."

source .ci/lib.sh
require mosquitto_pub mosquitto_sub python3 timeout
build_release

make_work

target/release/roost certs --out "$work/certs" --client-name device-1 >/dev/null
c=$work/certs
tls=$(free_port)
mtls=$(free_port)
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
TOML
start_roost "two TLS listeners" "$tls" "$mtls"

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

summary
((failed == 0))
