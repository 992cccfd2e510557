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
