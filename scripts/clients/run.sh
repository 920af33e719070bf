#!/usr/bin/env bash
# Client compatibility check: the official `openai` and `ollama` Python clients against Corral
# in front of the end-to-end tests' mock backends (Ollama, vLLM, LM Studio).
#
#     scripts/clients/run.sh [check_clients.py options]
#
# Builds corral and the mock_backend example (release), installs the pinned clients into a
# venv at target/clients-venv (needs PyPI the first time and whenever requirements.txt
# changes), starts the mocks and corral on 127.0.0.1, waits until every endpoint is healthy
# with its models discovered, and runs check_clients.py. Exit status is check_clients.py's.
# Not part of CI.
#
# Loopback only. Bounded: waits are capped, and every process started here is killed on exit
# and lives at most LIFETIME seconds anyway.
#
# Environment: CARGO_BUILD_JOBS (cargo's own) to limit the build; SKIP_BUILD=1 to use the
# binaries already in target/release; PYTHON (python3) to create the venv; CLIENTS_VENV
# (target/clients-venv) to use another venv, e.g. one holding older client versions.
set -euo pipefail
cd "$(dirname "$0")/../.."

LIFETIME=120 # hard cap on every process started here, in seconds
READY_SECONDS=20
VENV=${CLIENTS_VENV:-target/clients-venv}
REQS=scripts/clients/requirements.txt
CORRAL=target/release/corral
MOCK=target/release/examples/mock_backend
PERSONAS=(ollama vllm lmstudio)

say() { echo "clients: $*" >&2; }
die() {
    say "$*"
    exit 1
}

command -v "${PYTHON:-python3}" >/dev/null || die "python3 is needed (set PYTHON to another interpreter)"

# --- build --------------------------------------------------------------------------------
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    say "building corral and the mock_backend example (release)"
    cargo build --release --bin corral --example mock_backend
fi
[[ -x $CORRAL && -x $MOCK ]] || die "$CORRAL or $MOCK missing; build them, or drop SKIP_BUILD"

# --- the clients --------------------------------------------------------------------------
if [[ ! -x $VENV/bin/python ]]; then
    say "creating $VENV"
    "${PYTHON:-python3}" -m venv "$VENV"
fi
# Install only when the requirements changed since the last successful install.
if ! cmp -s "$REQS" "$VENV/.requirements.txt"; then
    say "installing $(grep -v '^#' "$REQS" | xargs) into $VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQS"
    cp "$REQS" "$VENV/.requirements.txt"
fi
PY=$VENV/bin/python

# --- cleanup: every process started below is in pids ---------------------------------------
work=$(mktemp -d)
pids=()
status=1
cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    exec 3>&-
    if [[ $status != 0 && -s $work/corral.log ]]; then
        say "corral's log (last 40 lines):"
        tail -n 40 "$work/corral.log" >&2
    fi
    if [[ $status != 0 && -s $work/mock.err ]]; then
        say "mock_backend's stderr:"
        cat "$work/mock.err" >&2
    fi
    rm -rf "$work"
}
trap 'status=$?; cleanup' EXIT
trap 'exit 130' INT TERM

# --- the mock backends ----------------------------------------------------------------------
# The mocks run until their stdin closes: this shell holds the only writer of the FIFO on fd 3,
# so they stop when it goes, even if it is killed before the trap can run.
mkfifo "$work/mock.stdin"
exec 3<>"$work/mock.stdin"
: >"$work/mock.out" # exists before the poll below reads it
timeout "$LIFETIME" "$MOCK" --max-seconds "$LIFETIME" "${PERSONAS[@]}" \
    <"$work/mock.stdin" >"$work/mock.out" 2>"$work/mock.err" 3>&- &
pids+=($!)
for _ in $(seq 100); do
    [[ $(wc -l <"$work/mock.out") -ge ${#PERSONAS[@]} ]] && break
    sleep 0.1
done
[[ $(wc -l <"$work/mock.out") -ge ${#PERSONAS[@]} ]] || die "the mock backends did not start in 10s"
declare -A url
while read -r persona address; do
    url[$persona]=$address
done <"$work/mock.out"
say "mocks: $(tr '\n' ' ' <"$work/mock.out")"

# --- corral ---------------------------------------------------------------------------------
port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$work/corral.yaml" <<EOF
server: { host: 127.0.0.1, port: $port, shutdown_timeout: 2s }
health: { check_interval: 1s, check_timeout: 500ms }
logging: { level: info, format: text }
endpoints:
  - { name: mock-ollama, url: "${url[ollama]}", type: ollama }
  - { name: mock-vllm, url: "${url[vllm]}", type: vllm }
  - { name: mock-lmstudio, url: "${url[lmstudio]}", type: lm-studio }
EOF
timeout "$LIFETIME" "$CORRAL" --config "$work/corral.yaml" >"$work/corral.log" 2>&1 3>&- </dev/null &
pids+=($!)
base=http://127.0.0.1:$port

# Ready = /internal/ready says 200 and every endpoint is healthy with its models discovered,
# so the listings the clients check are complete.
"$PY" - "$base" "$READY_SECONDS" "${#PERSONAS[@]}" 3>&- <<'EOF' || die "corral was not ready within ${READY_SECONDS}s"
import json, sys, time, urllib.request
base, limit, want = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
deadline, last = time.monotonic() + limit, "no answer"
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(base + "/internal/ready", timeout=2) as r:
            ready = r.status == 200
        with urllib.request.urlopen(base + "/internal/status/endpoints", timeout=2) as r:
            eps = json.load(r)["endpoints"]
        last = ", ".join(f"{e['name']}={e['status']}/{e.get('models', 0)} models" for e in eps)
        if ready and len(eps) == want and all(
            e["status"] == "healthy" and e.get("models", 0) >= 1 for e in eps
        ):
            print(f"clients: corral ready on {base}: {last}", file=sys.stderr)
            sys.exit(0)
    except Exception as e:  # not listening yet, or 503 while starting
        last = str(e)
    time.sleep(0.1)
print(f"clients: last seen: {last}", file=sys.stderr)
sys.exit(1)
EOF

# --- the check ------------------------------------------------------------------------------
set +e
timeout 90 "$PY" scripts/clients/check_clients.py "$base" "$@" 3>&-
status=$?
set -e
exit "$status"
