#!/usr/bin/env bash
# Password files as Mosquitto users bring them: a file written by the real `mosquitto_passwd`
# (and a user added by `roost passwd`), a release `roost` with allow_anonymous = false reading
# it, and `mosquitto_pub -u/-P` for MQTT 3.1.1 and 5.0: the right password gets in, a wrong
# one, an unknown user and no user at all do not. Then the other way round: Mosquitto itself
# reads the line `roost passwd` wrote. One PASS/FAIL line per check; exits 1 on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."

source .ci/lib.sh
require mosquitto_passwd mosquitto_pub mosquitto python3 timeout
build_release

make_work
chmod 755 "$work" # Mosquitto drops to its own user and must read the file

# expect <name> <0|refused> <mosquitto_pub args...>: whether the CONNECT is accepted.
expect() {
    local name=$1 want=$2
    shift 2
    if timeout 10 mosquitto_pub "$@" -t interop/pw -m x -q 1 >"$work/pub.out" 2>&1; then
        got=0
    else
        got=refused
    fi
    if [[ $got == "$want" ]]; then pass "$name"; else fail "$name" "$(tail -n 1 "$work/pub.out")"; fi
}

mosquitto_passwd -c -b "$work/passwd" alice secret
mosquitto_passwd -H sha512 -b "$work/passwd" carol hunter2
echo 'wonderland' | target/release/roost passwd "$work/passwd" bob
chmod 644 "$work/passwd"

port=$(free_port)
cat >"$work/roost.toml" <<TOML
[[listeners]]
bind = "127.0.0.1:$port"
[auth]
allow_anonymous = false
password_file = "$work/passwd"
TOML
start_roost "the password file" "$port"
for v in mqttv311 mqttv5; do
    expect "$v: mosquitto_passwd's \$7\$ line, right password" 0 -p "$port" -V $v -u alice -P secret
    expect "$v: mosquitto_passwd's \$6\$ line, right password" 0 -p "$port" -V $v -u carol -P hunter2
    expect "$v: roost passwd's line, right password" 0 -p "$port" -V $v -u bob -P wonderland
    expect "$v: wrong password refused" refused -p "$port" -V $v -u alice -P definitely-wrong
    expect "$v: unknown user refused" refused -p "$port" -V $v -u mallory -P secret
    expect "$v: no user name refused" refused -p "$port" -V $v
done
if grep -q 'refused CONNECT.*user=alice\|refused CONNECT.*alice' "$work/roost.log"; then
    pass "the refusal's log line names the user"
else
    fail "the refusal's log line names the user" "$(grep 'refused' "$work/roost.log" | head -n 1)"
fi

# Mosquitto reads what roost passwd wrote.
mport=$(free_port)
printf 'listener %s 127.0.0.1\nallow_anonymous false\npassword_file %s\n' "$mport" "$work/passwd" >"$work/mosquitto.conf"
mosquitto -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 &
pids+=($!)
if wait_port "$mport"; then
    expect "mosquitto accepts roost passwd's line" 0 -p "$mport" -u bob -P wonderland
    expect "mosquitto refuses a wrong password for it" refused -p "$mport" -u bob -P nope
else
    fail "mosquitto starts" "$(tail -n 3 "$work/mosquitto.log")"
fi

summary
((failed == 0))
