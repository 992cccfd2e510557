#!/usr/bin/env bash
# ACL files as Mosquitto users bring them: one file in Mosquitto's format, read unchanged by a
# release `roost` and by Mosquitto itself, and the same cases against both with
# mosquitto_pub/_sub. Each case publishes a retained message as one user and subscribes as
# another, so no subscriber has to be ready first: what arrives depends on the publisher's
# write permission and the subscriber's read permission. Roost must deliver exactly what
# Mosquitto delivers. (Roost tells a subscriber that may read nothing with SUBACK 0x87 where
# Mosquitto grants it and sends nothing; what arrives is the same.) Then v5 PUBACK codes.
# One PASS/FAIL line per check; exits 1 on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."

source .ci/lib.sh
require mosquitto_pub mosquitto_sub mosquitto python3 timeout
build_release

make_work
chmod 755 "$work" # Mosquitto drops to its own user and must read the file

cat >"$work/acl" <<'ACL'
# Clients without a user name may read public/#.
topic read public/#

user root
topic readwrite #
user alice
topic readwrite demo/#
topic deny demo/secret
user ops
topic read $SYS/#

pattern readwrite users/%u/#
pattern write devices/%c/out
ACL
chmod 644 "$work/acl"

rport=$(free_port)
printf '[[listeners]]\nbind = "127.0.0.1:%s"\n[auth]\nacl_file = "%s"\n' "$rport" "$work/acl" >"$work/roost.toml"
start_roost "the ACL file" "$rport"

mport=$(free_port)
printf 'listener %s 127.0.0.1\nallow_anonymous true\nacl_file %s\n' "$mport" "$work/acl" >"$work/mosquitto.conf"
mosquitto -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 &
pids+=($!)
wait_port "$mport" "${pids[-1]}" || { fail "mosquitto starts with the ACL file" "$(tail -n 3 "$work/mosquitto.log")"; summary; exit 1; }

# as <user|-> : mosquitto client arguments for that user name (- for none).
as() { [[ $1 == - ]] || printf -- '-u\n%s\n' "$1"; }

# delivered <port> <pub user> <pub client id> <topic> <sub user> <filter>: yes or no.
delivered() {
    local port=$1 pub_user=$2 pub_id=$3 topic=$4 sub_user=$5 filter=$6
    mapfile -t pu < <(as "$pub_user")
    mapfile -t su < <(as "$sub_user")
    timeout 10 mosquitto_pub -p "$port" "${pu[@]}" -i "$pub_id" -t "$topic" -m x -r -q 1 >/dev/null 2>&1
    if timeout 10 mosquitto_sub -p "$port" "${su[@]}" -t "$filter" -C 1 -W 1 2>/dev/null | grep -q .; then
        echo yes
    else
        echo no
    fi
    # Cleared, so that a later case's wide filter sees only its own message.
    timeout 10 mosquitto_pub -p "$port" -u root -i clear -t "$topic" -r -n -q 1 >/dev/null 2>&1
}

# case <want> <pub user> <pub id> <topic> <sub user> <filter>: both brokers deliver as `want`.
case_() {
    local want=$1
    shift
    local name="$1 ($2) publishes $3, $4 subscribes $5"
    local r m
    r=$(delivered "$rport" "$@")
    m=$(delivered "$mport" "$@")
    if [[ $r == "$m" && $r == "$want" ]]; then
        pass "$name: delivered $r by both"
    else
        fail "$name" "roost: $r, mosquitto: $m, expected $want"
    fi
}

case_ yes alice a1 demo/a alice 'demo/#'
case_ no alice a2 demo/secret root demo/secret          # deny wins over demo/#
case_ yes root r1 demo/secret2 alice 'demo/secret2/#'   # only demo/secret is denied
case_ yes root r2 demo/b alice '#'                      # a wide filter, filtered
case_ no root r3 demo/secret alice '#'
case_ no root r4 other/c alice '#'
case_ yes root r5 public/d - 'public/#'                 # lines before any user
case_ no - n1 public/e root 'public/#'                  # read only
case_ yes alice a3 users/alice/f alice 'users/alice/#'  # %u
case_ no root r6 users/bob/g alice 'users/#'
case_ yes alice dev1 devices/dev1/out root 'devices/#'  # %c
case_ no alice dev1 devices/dev2/out root 'devices/#'
case_ no root r7 '$SYS/acl-test' ops '$SYS/acl-test'    # nobody writes $SYS
case_ yes bob b1 users/bob/h bob users/bob/h            # a user with no section: patterns

# v5 PUBACK codes: 0x87 where the ACL refuses, on both.
for port in "$rport" "$mport"; do
    broker=roost; [[ $port == "$mport" ]] && broker=mosquitto
    out=$(timeout 10 mosquitto_pub -p "$port" -u alice -t other/x -m x -q 1 -V 5 -d 2>&1)
    if grep -q 'PUBACK.*RC:135' <<<"$out"; then
        pass "$broker: PUBACK 0x87 for a PUBLISH the ACL refuses"
    else
        fail "$broker: PUBACK 0x87 for a PUBLISH the ACL refuses" "$(grep -i puback <<<"$out")"
    fi
done

summary
((failed == 0))
