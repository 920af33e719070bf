#!/usr/bin/env bash
# Idle memory of the corral binary with 10 endpoints (SPEC 8 target: RSS < 20 MB).
#
# Starts one mock backend (python3's http.server answering GET /health and GET /v1/models)
# and corral with 10 endpoints pointing at it, checking every 1s; lets them run for
# IDLE_SECONDS (15), then prints corral's VmRSS from /proc. Loopback only (127.0.0.1, ports
# picked by the OS); every process it starts is killed on exit and lives at most 120s anyway.
#
#     cargo build --release && scripts/idle-rss.sh
#
# CORRAL_BIN overrides the binary (default target/release/corral).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${CORRAL_BIN:-target/release/corral}
IDLE_SECONDS=${IDLE_SECONDS:-15}
ENDPOINTS=10
LIFETIME=120 # hard cap on every process started here, in seconds

if [[ ! -x $BIN ]]; then
    echo "idle-rss: $BIN not found; build it first: cargo build --release" >&2
    exit 1
fi
command -v python3 >/dev/null || { echo "idle-rss: python3 is needed for the mock backend" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits (up to 10s) until the file $1 is non-empty.
await_file() {
    for _ in $(seq 100); do
        [[ -s $1 ]] && return 0
        sleep 0.1
    done
    echo "idle-rss: timed out waiting for $2" >&2
    exit 1
}

# --- the mock backend -------------------------------------------------------------------
cat >"$work/mock.py" <<'EOF'
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODELS = json.dumps({"object": "list", "data": [{"id": "llama3"}]}).encode()

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body, code = {"/health": (b"{}", 200), "/v1/models": (MODELS, 200)}.get(
            self.path, (b"{}", 404))
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(sys.argv[1], "w") as f:
    f.write(str(server.server_address[1]))
server.serve_forever()
EOF
timeout "$LIFETIME" python3 "$work/mock.py" "$work/mock.port" &
pids+=($!)
await_file "$work/mock.port" "the mock backend"
mock_port=$(cat "$work/mock.port")

# --- corral -----------------------------------------------------------------------------
{
    echo "server: { host: 127.0.0.1, port: 0 }"
    echo "health: { check_interval: 1s, check_timeout: 500ms }"
    echo "endpoints:"
    for i in $(seq "$ENDPOINTS"); do
        echo "  - { url: \"http://127.0.0.1:$mock_port\", name: ep-$i, type: vllm }"
    done
} >"$work/corral.yaml"

timeout "$LIFETIME" "$BIN" --config "$work/corral.yaml" >"$work/corral.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
    grep -q 'listening on http://' "$work/corral.log" && break
    sleep 0.1
done
addr=$(grep -o 'listening on http://[0-9.:]*' "$work/corral.log" | head -1 | sed 's|.*http://||')
if [[ -z $addr ]]; then
    echo "idle-rss: corral did not start:" >&2
    cat "$work/corral.log" >&2
    exit 1
fi
corral_pid=$(pgrep -P "${pids[1]}" | head -1 || true)
[[ -n $corral_pid ]] || { echo "idle-rss: cannot find corral's process" >&2; exit 1; }

echo "corral (pid $corral_pid) on $addr, $ENDPOINTS endpoints -> mock on 127.0.0.1:$mock_port; idling ${IDLE_SECONDS}s"
sleep "$IDLE_SECONDS"

health=$(python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' \
    "http://$addr/internal/health")
echo "/internal/health: $health"
rss_kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$corral_pid/status")
hwm_kb=$(awk '/^VmHWM:/ {print $2}' "/proc/$corral_pid/status")
awk -v rss="$rss_kb" -v hwm="$hwm_kb" -v n="$ENDPOINTS" 'BEGIN {
    printf "idle RSS with %d endpoints: %.1f MiB (VmRSS %d kB; peak VmHWM %d kB); target < 20 MB: %s\n",
        n, rss / 1024, rss, hwm, (rss * 1024 < 20000000 ? "met" : "NOT met")
}'
