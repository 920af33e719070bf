#!/usr/bin/env bash
# Corral in front of two real LLM servers (llama-cpp-python and llama.cpp's llama-server, from
# /work/shared/real-backends/rb), under streaming load, through three failure scenarios:
# freeze (SIGSTOP 7 s), kill (+ restart) and loading (restart: 503 "Loading model").
# Not part of CI. See scripts/real/README.md for what each printed figure means.
#
#     scripts/real/run.sh                         # build (if needed), run, print the table
#     CORRAL_BIN=/path/to/corral scripts/real/run.sh
#     REAL_SCENARIOS=kill REAL_CLIENTS=6 scripts/real/run.sh
#
# Environment: CORRAL_BIN (default: cargo build --release, binary in $CARGO_TARGET_DIR or
# target), RB (/work/shared/real-backends/rb), REAL_SCENARIOS (freeze,kill,loading),
# REAL_CLIENTS (4; half use the openai SDK, half raw httpx), REAL_VENV (target/real-venv),
# PYTHON (python3). Logs: target/real-logs/<UTC stamp>/ (Corral's stdout per scenario, its
# config, every request, the status-API samples, rb's output).
#
# Loopback only. Bounded: the driver gets REAL_TIMEOUT (280) seconds in all; whatever happens,
# the exit trap thaws both servers, restarts one that is down and waits until it answers, and
# stops the Corral the driver started. The rb servers are left running.
set -euo pipefail
cd "$(dirname "$0")/../.."

RB=${RB:-/work/shared/real-backends/rb}
VENV=${REAL_VENV:-target/real-venv}
REQS=scripts/real/requirements.txt
TIMEOUT=${REAL_TIMEOUT:-280}
LOGS=target/real-logs/$(date -u +%Y%m%dT%H%M%SZ)
NAMES=(llama-py llama-cpp)

say() { echo "real: $*" >&2; }
die() {
    say "$*"
    exit 1
}
ready_url() { case $1 in llama-py) echo http://127.0.0.1:18081/v1/models ;; llama-cpp) echo http://127.0.0.1:18082/health ;; esac; }

[[ -x $RB ]] || die "no rb at $RB (set RB)"

# --- Corral -------------------------------------------------------------------------------
if [[ -n ${CORRAL_BIN:-} ]]; then
    CORRAL=$CORRAL_BIN
else
    say "cargo build --release --bin corral (a no-op when up to date)"
    cargo build --release --bin corral
    CORRAL=${CARGO_TARGET_DIR:-target}/release/corral
fi
[[ -x $CORRAL ]] || die "$CORRAL is not an executable"
CORRAL=$(realpath "$CORRAL")

# --- the clients ----------------------------------------------------------------------------
if [[ ! -x $VENV/bin/python ]]; then
    say "creating $VENV"
    "${PYTHON:-python3}" -m venv "$VENV"
fi
if ! cmp -s "$REQS" "$VENV/.requirements.txt"; then
    say "installing $(grep -v '^#' "$REQS" | xargs) into $VENV"
    timeout 300 "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQS"
    cp "$REQS" "$VENV/.requirements.txt"
fi

# --- the servers, and putting them back whatever happens -------------------------------------
mkdir -p "$LOGS"
restore() {
    local pid name i st
    # The driver's Corral, if the driver could not stop it (it writes the pid, we check it is ours).
    if [[ -s $LOGS/corral.pid ]]; then
        while read -r pid; do
            if [[ $(readlink "/proc/$pid/exe" 2>/dev/null) == "$CORRAL" ]]; then kill "$pid" 2>/dev/null || true; fi
        done <"$LOGS/corral.pid"
    fi
    for name in "${NAMES[@]}"; do
        # (status read into a variable first: `rb status | grep -q` under pipefail fails when
        # grep exits before rb has written everything)
        st=$("$RB" status 2>/dev/null || true)
        if grep -q "^ *$name .*frozen" <<<"$st"; then "$RB" thaw "$name" >/dev/null 2>&1 || true; fi
        if ! grep -q "^ *$name " <<<"$st"; then
            say "$name is down: rb restart $name"
            "$RB" restart "$name" >/dev/null 2>&1 || true
        fi
    done
    for name in "${NAMES[@]}"; do
        for ((i = 0; i < 600; i++)); do
            curl -sf -o /dev/null --max-time 2 "$(ready_url "$name")" && break
            sleep 0.2
        done
    done
}
trap restore EXIT

if [[ -z $("$RB" status) ]]; then
    say "rb start (both servers)"
    "$RB" start || die "rb start failed (first time on this machine? rb setup takes ~15 min)"
fi

# --- run --------------------------------------------------------------------------------------
say "logs in $LOGS"
set +e
timeout --signal=TERM --kill-after=20 "$TIMEOUT" "$VENV/bin/python" scripts/real/drive.py \
    --corral "$CORRAL" --rb "$RB" --logs "$LOGS" \
    --scenarios "${REAL_SCENARIOS:-freeze,kill,loading}" --clients "${REAL_CLIENTS:-4}" |
    tee "$LOGS/summary.txt"
rc=${PIPESTATUS[0]}
set -e
((rc == 124)) && say "the driver ran out of its ${TIMEOUT}s"
exit "$rc"
