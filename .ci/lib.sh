# Shared by the .ci/interop-*.sh checks: tools, the release build, PASS/FAIL lines, ports.
# Source it after `cd` to the repository root.

# Stops with exit 2 unless every named tool is on PATH.
require() {
    for tool in "$@"; do
        command -v "$tool" >/dev/null || { echo "$0: $tool is missing" >&2; exit 2; }
    done
}

# Builds the release binaries (the checks run the real `roost`).
build_release() {
    cargo build --release --quiet || { echo "$0: release build failed" >&2; exit 2; }
}

passed=0
failed=0
pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1: $2"; failed=$((failed + 1)); }
summary() { echo "$passed passed, $failed failed"; }

# A free port: bind port 0, read the port the kernel chose, release it.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Waits until something listens on 127.0.0.1:$1 (10 s at most); fails early if process $2, when
# given, has exited.
wait_port() {
    for _ in $(seq 100); do
        (: <>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        [[ -n ${2:-} ]] && ! kill -0 "$2" 2>/dev/null && return 1
        sleep 0.1
    done
    return 1
}

# A temporary directory ($work) and the background processes started in it ($pids): the
# processes are stopped and the directory removed when the script exits.
make_work() {
    work=$(mktemp -d)
    pids=()
    trap cleanup EXIT
    trap 'exit 130' INT TERM
}
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
    rm -rf "$work"
}

# start_roost <what> <port...>: the release roost on $work/roost.toml in the background (log in
# $work/roost.log), waited for on each port. If it does not come up: one FAIL line naming
# <what>, the summary, and exit 1.
start_roost() {
    local what=$1
    shift
    # A store of its own (the default persists, in data/ of the working directory).
    target/release/roost --config "$work/roost.toml" --data-dir "$work/data" >"$work/roost.log" 2>&1 &
    pids+=($!)
    for port in "$@"; do
        if ! wait_port "$port" "${pids[-1]}"; then
            fail "roost starts with $what" "$(tail -n 3 "$work/roost.log")"
            summary
            exit 1
        fi
    done
}
