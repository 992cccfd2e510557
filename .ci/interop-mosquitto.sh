#!/usr/bin/env bash
# Interoperability with Mosquitto's command-line clients: starts a real `roost` (release build)
# on a free port and checks, with mosquitto_sub and mosquitto_pub, for MQTT 3.1.1 and 5.0:
# QoS 0, 1 and 2 messages, a retained message for a later subscriber, and the `+` and `#`
# wildcards. One PASS/FAIL line per check, then "N passed, M failed"; exits 1 on any failure.
# Every client runs under a timeout and the broker is always stopped.
set -uo pipefail
cd "$(dirname "$0")/.."

source .ci/lib.sh
require mosquitto_pub mosquitto_sub python3 timeout stdbuf
build_release

work=$(mktemp -d)
broker_pid=""
sub_pid=""
cleanup() {
    [[ -n $sub_pid ]] && kill "$sub_pid" 2>/dev/null
    if [[ -n $broker_pid ]]; then
        kill "$broker_pid" 2>/dev/null
        wait "$broker_pid" 2>/dev/null
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Compares an expected and an actual list of "topic qos retain payload" lines.
check() {
    if [[ $3 == "$2" ]]; then
        pass "$1"
    else
        fail "$1" "expected [${2//$'\n'/ | }], got [${3//$'\n'/ | }]"
    fi
}

port=$(free_port)
target/release/roost --config config/roost.toml --port "$port" --data-dir "$work/data" \
    >"$work/broker.log" 2>&1 &
broker_pid=$!
if ! wait_port "$port" "$broker_pid"; then
    fail "broker accepts connections on port $port" "not within 10 s"
    tail -n 20 "$work/broker.log"
    summary
    exit 1
fi
pass "broker accepts connections on port $port"

common=(-h 127.0.0.1 -p "$port")

# pub VERSION QOS TOPIC ARGS...: publishes one message (ARGS: -m text, -r, -n ...).
pub() {
    local v=$1 qos=$2 topic=$3
    shift 3
    timeout 10 mosquitto_pub "${common[@]}" -V "$v" -q "$qos" -t "$topic" "$@"
}

# sub_start NAME VERSION QOS COUNT FILTER: a subscriber in the background that exits after
# COUNT messages or 5 s; returns once its SUBACK has arrived, so nothing published after it is
# missed.
sub_start() {
    local name=$1 v=$2 qos=$3 count=$4 filter=$5
    : >"$work/$name.out"
    # Line-buffered, so the SUBACK line shows while the subscriber still runs.
    timeout 15 stdbuf -oL mosquitto_sub "${common[@]}" -d -V "$v" -i "sub-$name" -q "$qos" \
        -t "$filter" -C "$count" -W 5 -F 'MSG %t %q %r %p' >"$work/$name.out" 2>&1 &
    sub_pid=$!
    for _ in $(seq 50); do
        grep -q 'received SUBACK' "$work/$name.out" && return 0
        kill -0 "$sub_pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# sub_result NAME: waits for the subscriber and prints what it received, one message a line.
sub_result() {
    wait "$sub_pid" 2>/dev/null
    sub_pid=""
    grep '^MSG ' "$work/$1.out" | cut -c5-
}

for v in mqttv311 mqttv5; do
    base="interop/$v"

    for q in 0 1 2; do
        name="$v-qos$q"
        if sub_start "$name" "$v" "$q" 1 "$base/qos$q"; then
            pub "$v" "$q" "$base/qos$q" -m "hello-$q"
            check "$v QoS $q message exchanged" "$base/qos$q $q 0 hello-$q" "$(sub_result "$name")"
        else
            fail "$v QoS $q message exchanged" "subscriber got no SUBACK"
        fi
    done

    # Retained: published first, received by a subscriber that comes later, with RETAIN 1.
    pub "$v" 1 "$base/retained" -r -m "kept"
    got=$(timeout 15 mosquitto_sub "${common[@]}" -V "$v" -q 1 -t "$base/retained" -C 1 -W 5 \
        -F '%t %q %r %p' 2>&1)
    check "$v retained message received by a later subscriber" "$base/retained 1 1 kept" "$got"
    pub "$v" 1 "$base/retained" -r -n # clear it

    # `+` matches exactly one level; the non-matching topics go first, so a wrong match would
    # take one of the two places.
    name="$v-plus"
    if sub_start "$name" "$v" 1 2 "$base/plus/+/temp"; then
        pub "$v" 1 "$base/plus/a/b/temp" -m "no"
        pub "$v" 1 "$base/plus/temp" -m "no"
        pub "$v" 1 "$base/plus/a/temp" -m "a"
        pub "$v" 1 "$base/plus/b/temp" -m "b"
        check "$v wildcard + subscription" \
            "$base/plus/a/temp 1 0 a"$'\n'"$base/plus/b/temp 1 0 b" "$(sub_result "$name")"
    else
        fail "$v wildcard + subscription" "subscriber got no SUBACK"
    fi

    # `#` matches the parent level and any number below it.
    name="$v-hash"
    if sub_start "$name" "$v" 1 3 "$base/hash/#"; then
        pub "$v" 1 "$base/hashes/a" -m "no"
        pub "$v" 1 "$base/hash" -m "parent"
        pub "$v" 1 "$base/hash/a" -m "one"
        pub "$v" 1 "$base/hash/a/b/c" -m "three"
        check "$v wildcard # subscription" \
            "$base/hash 1 0 parent"$'\n'"$base/hash/a 1 0 one"$'\n'"$base/hash/a/b/c 1 0 three" \
            "$(sub_result "$name")"
    else
        fail "$v wildcard # subscription" "subscriber got no SUBACK"
    fi
done

# Across versions: a 3.1.1 publisher, a 5.0 subscriber.
if sub_start "mixed" mqttv5 2 1 "interop/mixed"; then
    pub mqttv311 2 "interop/mixed" -m "across"
    check "mqttv311 publisher to mqttv5 subscriber" "interop/mixed 2 0 across" "$(sub_result mixed)"
else
    fail "mqttv311 publisher to mqttv5 subscriber" "subscriber got no SUBACK"
fi

if ((failed > 0)); then
    echo "--- broker log (last 20 lines)"
    tail -n 20 "$work/broker.log"
fi
summary
((failed == 0))
