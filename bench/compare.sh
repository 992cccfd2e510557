#!/usr/bin/env bash
# Runs one roost-bench scenario against Roost and Mosquitto in turn (A B A B A B), each broker
# freshly started and pinned to CPU 0, the bench pinned to CPU 1, and prints the medians and the
# Roost/Mosquitto ratio of the scenario's main figures.
#
#   bench/compare.sh <scenario> [roost-bench options...]
#   bench/compare.sh fanin --qos 1 --duration 10
#   RUNS=5 METRICS="delivered_per_sec dropped_pct" bench/compare.sh fanout --subscribers 1000
#
# Environment: RUNS (per broker, default 3), METRICS (figure keys to compare; default depends
# on the scenario), SKIP_BUILD=1 (use the binaries as they are), BROKER_CPU / BENCH_CPU (the
# CPUs to pin to, default 0 and 1). Each run's JSON and the brokers' logs go to
# target/bench/<scenario>-<time>/. The open-file limit is raised to the hard limit for both
# brokers and the bench (needed by `conns`; this machine allows 20,000).
# BASELINE=path/to/an/older/roost adds it as a third broker, run in the same rotation (A B C A
# B C), with its own column and the Roost/baseline ratio: a before/after in one sitting.
# TLS=ecdsa or TLS=rsa: both brokers listen with TLS, on the same certificates (a fresh CA and
# an ECDSA P-256 or RSA-2048 server key, from `roost certs`), and the bench connects over TLS.
# PERSIST=always|periodic: both brokers persist, each run on an empty directory: Roost with
# [persistence] sync = PERSIST, Mosquitto with `persistence true` (it saves on its autosave
# interval and at exit; it has no per-message sync). Add --persistent so the subscribers keep
# their sessions, or nothing they are sent is kept.
set -euo pipefail

cd "$(dirname "$0")/.."

if [[ $# -lt 1 ]]; then
    sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
scenario=$1
shift
runs=${RUNS:-3}
broker_cpu=${BROKER_CPU:-0}
bench_cpu=${BENCH_CPU:-1}
roost_port=21884     # bench/roost-bench.toml
mosquitto_port=21883 # bench/mosquitto.conf

case $scenario in
    fanin | fanout | shared) default_metrics="delivered_per_sec accepted_per_sec dropped_pct" ;;
    latency) default_metrics="p50_us p99_us p999_us max_us" ;;
    conns) default_metrics="connect_secs rss_per_conn_kib tcp_mean_us connack_mean_us connack_p99_us" ;;
    retained) default_metrics="received_total missing_total receive_secs rss_stored_kib rss_peak_kib" ;;
    handshakes) default_metrics="handshakes_per_sec connect_p50_us connect_p99_us broker_us_per_handshake" ;;
    offline) default_metrics="rss_queued_kib bytes_per_queued bytes_per_session publish_secs sessions_secs" ;;
    *)
        echo "unknown scenario '$scenario' (fanin, fanout, latency, conns, handshakes, shared, retained, offline)" >&2
        exit 2
        ;;
esac
metrics="${METRICS:-$default_metrics} bench_cpu_pct broker_cpu_pct"

command -v mosquitto >/dev/null || {
    echo "mosquitto not found: apt-get install -y mosquitto mosquitto-clients" >&2
    exit 1
}
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    # The broker (root package) and the bench (roost-bench/, a workspace member); both land in
    # the workspace's target/release.
    cargo build --release --quiet -p roost -p roost-bench
fi
ulimit -n "$(ulimit -Hn)"

out=target/bench/$scenario-$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"
echo "scenario: $scenario $*; $runs runs per broker; brokers on CPU $broker_cpu, bench on CPU $bench_cpu"
echo "results: $out"

roost_conf=bench/roost-bench.toml
mosquitto_conf=bench/mosquitto.conf
tls_args=()
case ${TLS:-} in
    "") ;;
    ecdsa | rsa)
        # One set of certificates for both brokers, made for this sitting.
        target/release/roost certs --key-type "$TLS" --out "$out/certs" >/dev/null
        roost_conf=$out/roost.toml
        mosquitto_conf=$out/mosquitto.conf
        # [listeners.tls] belongs to the last (here the only) [[listeners]] entry.
        { cat bench/roost-bench.toml; printf '\n[listeners.tls]\ncert = "%s"\nkey = "%s"\n' \
            "$out/certs/server.pem" "$out/certs/server.key"; } >"$roost_conf"
        # certfile/keyfile belong to the last `listener` line. set_tcp_nodelay as Roost does:
        # with Nagle on (Mosquitto's default) each TLS handshake waits out a 40 ms delayed ACK,
        # which caps Mosquitto at ~350 handshakes/s with its CPU mostly idle.
        { cat bench/mosquitto.conf; printf 'set_tcp_nodelay true\ncertfile %s\nkeyfile %s\n' \
            "$PWD/$out/certs/server.pem" "$PWD/$out/certs/server.key"; } >"$mosquitto_conf"
        tls_args=(--tls-ca "$out/certs/ca.pem")
        if [[ $scenario == handshakes ]]; then
            # Verifying an ECDSA signature costs more than making one: checked, the bench would
            # saturate its core before either broker.
            tls_args=(--tls-insecure)
        fi
        # Mosquitto started by root reads its key after switching to the `mosquitto` user.
        chmod a+r "$out/certs/server.key"
        echo "TLS: $TLS server key, certificates in $out/certs"
        ;;
    *)
        echo "TLS must be ecdsa or rsa, not '$TLS'" >&2
        exit 2
        ;;
esac

case ${PERSIST:-} in
    "") ;;
    always | periodic)
        # A copy of each broker's configuration with persistence on; each run gets its own
        # empty directory (see run_one).
        # The `enabled = false` under [persistence] (the last table of roost-bench.toml).
        sed "/^\[persistence\]/,\$ s/^enabled = false\$/enabled = true\nsync = \"$PERSIST\"/" \
            "$roost_conf" >"$out/roost-persist.toml"
        if ! grep -q "^sync = \"$PERSIST\"" "$out/roost-persist.toml"; then
            echo "no 'enabled = false' under [persistence] in $roost_conf to turn on" >&2
            exit 2
        fi
        roost_conf=$out/roost-persist.toml
        { cat "$mosquitto_conf"; printf 'persistence true\n'; } >"$out/mosquitto-persist.conf"
        mosquitto_conf=$out/mosquitto-persist.conf
        echo "persistence: Roost sync = $PERSIST, Mosquitto persistence true"
        ;;
    *)
        echo "PERSIST must be always or periodic, not '$PERSIST'" >&2
        exit 2
        ;;
esac

# Waits until something listens on 127.0.0.1:$1 (at most 5 s).
wait_port() {
    for _ in $(seq 50); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# One run: start the broker, run the bench against it, stop the broker.
# Arguments: roost|mosquitto, the run number, then roost-bench's options.
run_one() {
    local broker=$1 i=$2 port cmd pid
    shift 2
    local data=$out/data-$broker-$i data_args=()
    if [[ -n ${PERSIST:-} ]]; then
        data_args=(--data-dir "$data")
    fi
    if [[ $broker == roost ]]; then
        port=$roost_port
        cmd=(target/release/roost -c "$roost_conf" "${data_args[@]}")
    elif [[ $broker == baseline ]]; then
        port=$roost_port
        cmd=("$BASELINE" -c "$roost_conf" "${data_args[@]}")
    else
        port=$mosquitto_port
        cmd=(mosquitto -c "$mosquitto_conf")
        if [[ -n ${PERSIST:-} ]]; then
            # Its own directory per run, given on a copy of the configuration.
            mkdir -p "$data"
            chmod a+rwx "$data"
            { cat "$mosquitto_conf"; printf 'persistence_location %s/\n' "$PWD/$data"; } \
                >"$out/mosquitto-$i.conf"
            cmd=(mosquitto -c "$out/mosquitto-$i.conf")
        fi
    fi
    taskset -c "$broker_cpu" "${cmd[@]}" >"$out/$broker-$i.log" 2>&1 &
    pid=$!
    if ! wait_port "$port"; then
        echo "$broker did not start listening on $port; see $out/$broker-$i.log" >&2
        kill "$pid" 2>/dev/null || true
        return 1
    fi
    sleep 0.5 # let the listener's own start-up settle before the RSS baseline
    if taskset -c "$bench_cpu" target/release/roost-bench "$scenario" --port "$port" \
        --broker-pid "$pid" --json "${tls_args[@]}" "$@" >"$out/$broker-$i.json" 2>"$out/$broker-$i.progress"; then
        echo "  $broker run $i: ok"
    else
        echo "  $broker run $i: failed: $(tail -n 1 "$out/$broker-$i.progress")"
        rm -f "$out/$broker-$i.json"
    fi
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    sleep 1 # sockets of the finished run close before the next broker starts
}

for i in $(seq "$runs"); do
    run_one roost "$i" "$@"
    if [[ -n ${BASELINE:-} ]]; then
        run_one baseline "$i" "$@"
    fi
    run_one mosquitto "$i" "$@"
done

# The value of figures.<key> in each of a broker's JSON files, one per line.
values() {
    local broker=$1 key=$2 f
    for f in "$out/$broker"-*.json; do
        [[ -e $f ]] || continue
        sed -n "s/.*\"$key\":\(-\{0,1\}[0-9][0-9.eE+-]*\).*/\1/p" "$f"
    done
}

# Median of numbers on stdin; empty if none.
median() {
    sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) exit
        if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2
    }'
}

# r / m to two places, or n/a.
ratio() {
    awk -v r="$1" -v m="$2" 'BEGIN {
        if (r == "" || m == "" || m + 0 == 0) print "n/a"; else printf "%.2f", r / m }'
}

echo
if [[ -n ${BASELINE:-} ]]; then
    printf '%-20s %14s %14s %14s %8s %8s   %s\n' figure roost baseline mosquitto r/mosq r/base \
        "runs (roost | baseline | mosquitto)"
else
    printf '%-20s %16s %16s %10s   %s\n' figure roost mosquitto ratio "runs (roost | mosquitto)"
fi
for key in $metrics; do
    r=$(values roost "$key" | median)
    m=$(values mosquitto "$key" | median)
    if [[ -n ${BASELINE:-} ]]; then
        b=$(values baseline "$key" | median)
        printf '%-20s %14s %14s %14s %8s %8s   %s | %s | %s\n' "$key" "${r:-n/a}" "${b:-n/a}" \
            "${m:-n/a}" "$(ratio "$r" "$m")" "$(ratio "$r" "$b")" \
            "$(values roost "$key" | tr '\n' ' ')" "$(values baseline "$key" | tr '\n' ' ')" \
            "$(values mosquitto "$key" | tr '\n' ' ')"
    else
        printf '%-20s %16s %16s %10s   %s | %s\n' "$key" "${r:-n/a}" "${m:-n/a}" \
            "$(ratio "$r" "$m")" \
            "$(values roost "$key" | tr '\n' ' ')" "$(values mosquitto "$key" | tr '\n' ' ')"
    fi
done
