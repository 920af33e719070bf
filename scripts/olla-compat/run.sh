#!/usr/bin/env bash
# Olla's own integration scripts against Corral (issue 11, SPEC 12): Corral started with an
# Olla-format config on the real llama.cpp servers of ../shared/real-backends (and, since
# several scripts need Ollama, LM Studio and vLLM backends and this machine has none,
# `ollama_front.py` three times: a small front speaking those APIs whose every token comes
# from the real llama-server), then each of
# Olla's test/scripts that exercise SPEC 12's features, run unchanged from a copy of Olla's
# repository that you keep outside this repo. Prints one line per script, and keeps each
# script's whole output. Not part of CI. Nothing of Olla's is copied into this repository.
#
#     scripts/olla-compat/run.sh /path/to/olla            # a checkout of github.com/thushan/olla
#     OLLA_SCRIPTS="logic/test-provider-models.sh" scripts/olla-compat/run.sh /path/to/olla
#
# Needs: the rb servers up (`../shared/real-backends/rb start`: llama-py on 18081, llama-server
# on 18082), python3 with venv, curl, jq. Port 40114 must be free: several of Olla's scripts
# have it written in. Environment: CORRAL_BIN (default: cargo build --release), OLLA_SCRIPTS
# (space-separated subset), COMPAT_VENV (target/olla-compat-venv), SCRIPT_TIMEOUT (300 s each).
# Logs: target/olla-compat-logs/<UTC stamp>/<script>.log, corral-<phase>.log, config-*.yaml.
#
# Loopback only; bounded: each script gets SCRIPT_TIMEOUT seconds, and the Corral this starts
# is stopped on exit whatever happens.
set -euo pipefail
cd "$(dirname "$0")/../.."

OLLA=${1:-}
[[ -n $OLLA && -d $OLLA/test/scripts ]] || {
    echo "usage: $0 /path/to/olla-checkout   (its test/scripts/ is run, unchanged)" >&2
    exit 2
}
OLLA=$(cd "$OLLA" && pwd)
PORT=40114
URL=http://localhost:$PORT
LOGS=target/olla-compat-logs/$(date -u +%Y%m%dT%H%M%SZ)
VENV=${COMPAT_VENV:-target/olla-compat-venv}
TIMEOUT=${SCRIPT_TIMEOUT:-300}
mkdir -p "$LOGS"

say() { echo "olla-compat: $*" >&2; }
die() { say "$*"; exit 1; }

for port in 18081 18082; do
    (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null || die "nothing on 127.0.0.1:$port: start ../shared/real-backends/rb"
done
if (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null; then die "port $PORT is taken (Olla's scripts expect it)"; fi
command -v jq >/dev/null || die "jq is needed by Olla's shell scripts (apt-get install jq)"

if [[ -n ${CORRAL_BIN:-} ]]; then
    BIN=$CORRAL_BIN
else
    cargo build --release -q
    BIN=${CARGO_TARGET_DIR:-target}/release/corral
fi

if [[ ! -x $VENV/bin/python ]]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q -r "$OLLA/test/scripts/requirements.txt"
fi
VENV_BIN=$(cd "$VENV/bin" && pwd)
PY=$VENV_BIN/python
LOGS=$(cd "$LOGS" && pwd)

# The Olla config every phase starts from: the two real servers, as an Olla user would write
# them. `phase` adds what one script needs on top (rate limits low for the rate-limit script).
write_config() {
    local file=$1 extra_server=${2:-} body=${3:-52428800} head=${4:-524288}
    cat >"$file" <<EOF
server:
  host: "localhost"
  port: $PORT
  request_logging: true
  request_limits:
    max_body_size: $body
    max_header_size: $head
$extra_server
proxy:
  engine: "sherpa"
  load_balancer: "priority"
  connection_timeout: 30s
  response_timeout: 600s
  sticky_sessions:
    enabled: true
    idle_ttl_seconds: 600
    max_sessions: 10000
    key_sources: ["session_header", "prefix_hash", "auth_header"]
model_aliases:
  smol:
    - smollm2
  # The model Olla's security scripts ask for, served by the Ollama front's one model.
  phi4:latest:
    - smollm2:latest
  nonexistent-alias-target:
    - no-such-model-anywhere
discovery:
  type: "static"
  refresh_interval: 30s
  model_discovery:
    enabled: true
    interval: 5m
    timeout: 30s
  static:
    endpoints:
      - url: "http://127.0.0.1:18082"
        name: "llama-server"
        type: "llamacpp"
        priority: 100
        check_interval: 2s
        check_timeout: 1s
      - url: "http://127.0.0.1:$FRONT_PORT"
        name: "ollama-front"
        type: "ollama"
        priority: 75
        check_interval: 2s
        check_timeout: 1s
      - url: "http://127.0.0.1:$LMS_PORT"
        name: "lmstudio-front"
        type: "lm-studio"
        priority: 60
        check_interval: 2s
        check_timeout: 1s
      - url: "http://127.0.0.1:$VLLM_PORT"
        name: "vllm-front"
        type: "vllm"
        priority: 55
        check_interval: 2s
        check_timeout: 1s
      - url: "http://127.0.0.1:18081"
        name: "llama-cpp-python"
        type: "openai-compatible"
        priority: 50
        model_url: "/v1/models"
        health_check_url: "/v1/models"
        check_interval: 2s
        check_timeout: 1s
model_registry:
  type: "memory"
  enable_unifier: true
  routing_strategy:
    type: "strict"
logging:
  level: "info"
  format: "json"
  output: "stdout"
EOF
}

# The Ollama-API front over llama-server (see ollama_front.py), for the scripts that need an
# Ollama backend.
FRONT_PORT=18083
"$PY" scripts/olla-compat/ollama_front.py $FRONT_PORT http://127.0.0.1:18082 >"$LOGS/ollama-front.log" 2>&1 &
FRONT_PID=$!
# ... and the same front again as an LM Studio endpoint (its /api/v0/models and /v1/*).
LMS_PORT=18084
"$PY" scripts/olla-compat/ollama_front.py $LMS_PORT http://127.0.0.1:18082 >"$LOGS/lmstudio-front.log" 2>&1 &
LMS_PID=$!
# ... and as a vLLM endpoint (its /health and /v1/*), for the provider-routing matrix.
VLLM_PORT=18085
"$PY" scripts/olla-compat/ollama_front.py $VLLM_PORT http://127.0.0.1:18082 >"$LOGS/vllm-front.log" 2>&1 &
VLLM_PID=$!
for port in $FRONT_PORT $LMS_PORT $VLLM_PORT; do
    for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done

CORRAL_PID=
stop_corral() {
    if [[ -n $CORRAL_PID ]] && kill -0 "$CORRAL_PID" 2>/dev/null; then
        kill "$CORRAL_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$CORRAL_PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$CORRAL_PID" 2>/dev/null || true
    fi
    CORRAL_PID=
}
trap 'stop_corral; kill $FRONT_PID $LMS_PID $VLLM_PID 2>/dev/null || true' EXIT

start_corral() {
    local phase=$1 config=$2
    "$BIN" --config "$config" >"$LOGS/corral-$phase.log" 2>&1 &
    CORRAL_PID=$!
    for _ in $(seq 100); do
        if curl -fs "$URL/internal/health" 2>/dev/null | grep -q '"healthy"'; then return; fi
        sleep 0.2
    done
    die "Corral did not become healthy (see $LOGS/corral-$phase.log)"
}

# script | how to run it | what it needs beyond the base config
SCRIPTS=(
    "integration/test-integration.py"
    "logic/test-provider-models.sh"
    "logic/test-model-routing.sh"
    "logic/test-provider-routing.sh"
    "logic/test-model-routing-provider.py"
    "logic/test-model-routing-strategy.sh"
    "streaming/test-streaming-responses.py"
    "streaming/test-streaming-detection.py"
    "streaming/test-streaming-latency.py"
    "sticky/test-sticky-sessions.py"
    "security/test-request-size-limits.sh"
    "security/test-request-rate-limits.sh"
)
[[ -n ${OLLA_SCRIPTS:-} ]] && read -r -a SCRIPTS <<<"$OLLA_SCRIPTS"

run_one() {
    local script=$1 log=$LOGS/$(echo "$1" | tr / _).log
    local path=$OLLA/test/scripts/$script args=()
    case $script in
        *.py) args=("$PY" "$path") ;;
        *.sh) args=(bash "$path") ;;
    esac
    case $script in
        integration/* | sticky/* | streaming/*) args+=(--url "$URL") ;;
    esac
    case $script in
        streaming/test-streaming-detection.py | streaming/test-streaming-latency.py) args+=(--model smollm2) ;;
        streaming/test-streaming-responses.py) args+=(--models smollm2) ;;
    esac
    local start=$SECONDS rc=0
    (cd "$(dirname "$path")" &&
        TARGET_URL=$URL OLLA_URL=$URL MODEL=smollm2 \
        PATH="$VENV_BIN:$PATH" \
        timeout "$TIMEOUT" "${args[@]}") </dev/null >"$log" 2>&1 || rc=$?
    local took=$((SECONDS - start))
    # The scripts' own last words: their summary line, colours stripped.
    local summary
    summary=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -iE 'passed|failed|success rate|all tests|summary' | tail -1 | cut -c1-100 || true)
    printf '%-42s %-4s %4ss  %s\n' "$script" "$([[ $rc == 0 ]] && echo PASS || echo "rc=$rc")" "$took" "$summary"
}

echo "Olla scripts from $OLLA ($(git -C "$OLLA" rev-parse --short HEAD 2>/dev/null || echo '?')) against Corral at $URL"
echo "logs: $LOGS"
echo
for script in "${SCRIPTS[@]}"; do
    config=$LOGS/config-$(basename "$script" | cut -d. -f1).yaml
    if [[ $script == security/test-request-rate-limits.sh ]]; then
        # What the script asks Olla users to export before `make run`, as config keys; and,
        # since it tells clients apart by X-Forwarded-For from one machine, loopback as a
        # trusted proxy (off by default, in Olla as in Corral).
        write_config "$config" "  rate_limits:
    global_requests_per_minute: 0
    per_ip_requests_per_minute: 20
    burst_size: 3
    health_requests_per_minute: 60
    trust_proxy_headers: true
    trusted_proxy_cidrs: [\"127.0.0.0/8\", \"::1/128\"]"
    elif [[ $script == security/test-request-size-limits.sh ]]; then
        # The script expects a ~50 KB head and a ~2 MB body to be refused: limits below them.
        write_config "$config" "" 1048576 32768
    else
        write_config "$config"
    fi
    start_corral "$(basename "$script" | cut -d. -f1)" "$config"
    run_one "$script"
    stop_corral
done
