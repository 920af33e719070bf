#!/usr/bin/env bash
# Proxy benchmark (SPEC 8): what Corral adds to a request on loopback, against a fast local
# backend (examples/bench_backend.rs), compared with going direct and, when installed, with
# HAProxy and nginx doing the same job.
#
#     scripts/bench.sh                              # builds, runs, prints Markdown tables
#     CARGO_BUILD_JOBS=1 BENCH_INSTALL_PEERS=1 scripts/bench.sh
#
# What it measures, for each path (direct, corral, haproxy, nginx):
#   - wrk, 1 thread, 32 connections, BENCH_DURATION (10s): POST /v1/chat/completions (a small
#     JSON chat, non-streaming) and a GET that is proxied (/health; through Corral
#     /olla/vllm/health). Requests/s, p50, p99, and the CPU the proxy and the backend spent
#     per request. At 32 connections the machine is saturated, so latency there is mostly
#     queueing (Little's law: 32 / throughput).
#   - wrk, 1 connection, BENCH_C1_DURATION (5s): the POST again, one request at a time. This is
#     the per-request latency a proxy adds without queueing: the "added p50/p99" rows.
#   - examples/stream_latency: BENCH_STREAMS (20) streaming chats of 20 SSE chunks 10ms apart;
#     for every chunk, arrival at the client minus the backend's send time (`sent_ns`). Once
#     with a new connection per stream, once with all streams on one kept-alive connection.
# The backend sets TCP_NODELAY (as uvicorn, vLLM's server, does), so every delay measured
# through a proxy is the proxy's own.
#
# CPU placement (BENCH_PIN=1, the default, on machines with 2+ cores): the backend runs on
# CPU 0, wrk and stream_latency on CPU 1, the proxy under test unpinned. Pinning keeps the
# direct runs repeatable (backend and load generator never migrate or share a core); the
# proxy cannot get a core of its own on a 2-core machine, so it competes with both — which
# is the honest picture there, and the same for HAProxy and nginx. BENCH_PIN=0 lets the
# scheduler place everything.
#
# Options (environment): BENCH_DURATION (10s), BENCH_C1_DURATION (5s), BENCH_STREAMS (20),
# BENCH_CONNECTIONS (32), BENCH_PIN (1), BENCH_INSTALL_PEERS (0; 1 = apt-get install haproxy
# and nginx if missing), BENCH_PEERS (1; 0 = skip HAProxy/nginx even if installed),
# BENCH_SKIP_BUILD (0), CARGO_BUILD_JOBS (cargo's own). wrk is installed with apt-get when
# missing. Every server listens on 127.0.0.1 only and is killed on exit; each lives at most
# 300s. The run takes about 3 minutes after the build.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${BENCH_DURATION:-10s}
C1_DURATION=${BENCH_C1_DURATION:-5s}
STREAMS=${BENCH_STREAMS:-20}
CONNS=${BENCH_CONNECTIONS:-32}
PIN=${BENCH_PIN:-1}
LIFETIME=300
COMMAND="$(for v in BENCH_DURATION BENCH_C1_DURATION BENCH_STREAMS BENCH_CONNECTIONS BENCH_PIN BENCH_INSTALL_PEERS BENCH_PEERS; do
    if [[ -n ${!v:-} ]]; then printf '%s=%s ' "$v" "${!v}"; fi; done)scripts/bench.sh"

say() { echo "bench: $*" >&2; }
die() { say "$*"; exit 1; }

# --- tools ------------------------------------------------------------------------------
apt_updated=0
apt_install() {
    command -v apt-get >/dev/null || die "$* missing and apt-get is not available; install it by hand"
    if [[ $apt_updated == 0 ]]; then
        apt-get update -qq >&2 || true
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}
if ! command -v wrk >/dev/null; then
    say "wrk is not installed; installing it: apt-get install -y wrk"
    apt_install wrk
fi
if [[ ${BENCH_INSTALL_PEERS:-0} == 1 ]]; then
    missing=()
    command -v haproxy >/dev/null || missing+=(haproxy)
    command -v nginx >/dev/null || missing+=(nginx)
    if ((${#missing[@]})); then
        say "installing ${missing[*]} for comparison: apt-get install -y ${missing[*]}"
        apt_install "${missing[@]}"
    fi
fi
peers=()
if [[ ${BENCH_PEERS:-1} == 1 ]]; then
    command -v haproxy >/dev/null && peers+=(haproxy)
    command -v nginx >/dev/null && peers+=(nginx)
fi
command -v curl >/dev/null || die "curl is needed"

if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
    say "building: cargo build --release --bin corral --example bench_backend --example stream_latency"
    cargo build --release --bin corral --example bench_backend --example stream_latency >&2
fi
CORRAL=target/release/corral
BACKEND=target/release/examples/bench_backend
STREAM=target/release/examples/stream_latency
for b in $CORRAL $BACKEND $STREAM; do [[ -x $b ]] || die "$b is missing; build it first"; done

ncpu=$(nproc)
if [[ $PIN == 1 && $ncpu -ge 2 ]]; then
    pin_backend=(taskset -c 0)
    pin_client=(taskset -c 1)
else
    pin_backend=()
    pin_client=()
    PIN=0
fi

# --- processes --------------------------------------------------------------------------
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free TCP port on 127.0.0.1 (bound and released at once; nothing else here grabs ports).
free_port() {
    if command -v python3 >/dev/null; then
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
    else
        local p
        while :; do
            p=$((20000 + RANDOM % 40000))
            ss -ltn "sport = :$p" | grep -q LISTEN || { echo "$p"; return; }
        done
    fi
}

# Waits up to 15s for URL to answer 200.
await_200() {
    for _ in $(seq 150); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$1" || true) == 200 ]] && return 0
        sleep 0.1
    done
    return 1
}

# utime + stime (clock ticks) of a process and all its descendants.
cpu_ticks() {
    local total=0 pid t
    for pid in $1 $(pgrep -P "$1" || true); do
        if [[ $pid != "$1" ]]; then
            t=$(cpu_ticks "$pid")
        else
            t=$(awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$pid/stat" 2>/dev/null || echo 0)
        fi
        total=$((total + t))
    done
    echo "$total"
}

# The pid of the program that `timeout` started.
child_of() {
    local c
    for _ in $(seq 50); do
        c=$(pgrep -P "$1" | head -1 || true)
        [[ -n $c ]] && { echo "$c"; return; }
        sleep 0.1
    done
    die "cannot find the child of $1"
}

# The backend: one actix worker on CPU 0.
"${pin_backend[@]}" "$BACKEND" --port 0 --workers 1 --max-seconds "$LIFETIME" >"$work/backend.log" 2>&1 &
pids+=($!)
backend_pid=$!
for _ in $(seq 100); do grep -q listening "$work/backend.log" && break; sleep 0.1; done
backend_port=$(grep -o 'listening http://127.0.0.1:[0-9]*' "$work/backend.log" | grep -o '[0-9]*$' || true)
[[ -n $backend_port ]] || { cat "$work/backend.log" >&2; die "the backend did not start"; }
backend="127.0.0.1:$backend_port"

# Corral: one vllm endpoint, the release binary, unpinned. Rate limits off: wrk sends from
# one address, and Olla's default limits (on, as in Olla) would answer it with 429s.
corral_port=$(free_port)
cat >"$work/corral.yaml" <<EOF
server:
  host: 127.0.0.1
  port: $corral_port
  rate_limits: { global_requests_per_minute: 0, per_ip_requests_per_minute: 0, health_requests_per_minute: 0 }
health: { check_interval: 1s, check_timeout: 500ms }
endpoints:
  - { url: "http://$backend", name: bench, type: vllm }
logging: { level: warn }
EOF
timeout "$LIFETIME" "$CORRAL" --config "$work/corral.yaml" >"$work/corral.log" 2>&1 &
pids+=($!)
corral_pid=$(child_of $!)
await_200 "http://127.0.0.1:$corral_port/internal/ready" || { cat "$work/corral.log" >&2; die "corral never became ready"; }

declare -A addr proxy_pid get_path
addr[direct]=$backend
get_path[direct]=/health
addr[corral]=127.0.0.1:$corral_port
proxy_pid[corral]=$corral_pid
get_path[corral]=/olla/vllm/health

for peer in "${peers[@]}"; do
    port=$(free_port)
    case $peer in
    haproxy)
        # http-no-delay: forward every chunk at once (else HAProxy batches small SSE writes).
        cat >"$work/haproxy.cfg" <<EOF
global
    nbthread 2
    maxconn 4096
defaults
    mode http
    option http-keep-alive
    option http-no-delay
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend bench
    bind 127.0.0.1:$port
    default_backend backend
backend backend
    server b1 $backend
EOF
        timeout "$LIFETIME" haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
        ;;
    nginx)
        mkdir -p "$work/nginx"
        cat >"$work/nginx/nginx.conf" <<EOF
daemon off;
master_process on;
user root;
worker_processes 2;
error_log $work/nginx/error.log warn;
pid $work/nginx/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    upstream backend { server $backend; keepalive 64; }
    server {
        listen 127.0.0.1:$port;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    }
}
EOF
        timeout "$LIFETIME" nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" >"$work/nginx.log" 2>&1 &
        ;;
    esac
    pids+=($!)
    proxy_pid[$peer]=$(child_of $!)
    addr[$peer]=127.0.0.1:$port
    get_path[$peer]=/health
    await_200 "http://127.0.0.1:$port/health" || { cat "$work/$peer.log" >&2; die "$peer did not start"; }
done
targets=(direct corral "${peers[@]}")

# --- wrk --------------------------------------------------------------------------------
report_lua='
function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format("BENCH_WRK rps=%.1f p50_us=%d p99_us=%d requests=%d non2xx=%d sockerr=%d\n",
        summary.requests / (summary.duration / 1e6), latency:percentile(50), latency:percentile(99),
        summary.requests, e.status, e.connect + e.read + e.write + e.timeout))
end'
cat >"$work/post.lua" <<EOF
wrk.method = "POST"
wrk.body = '{"model":"bench","messages":[{"role":"user","content":"Say hello."}],"max_tokens":8}'
wrk.headers["Content-Type"] = "application/json"
$report_lua
EOF
cat >"$work/get.lua" <<EOF
$report_lua
EOF

declare -A res
# run_wrk TEST TARGET CONNECTIONS DURATION LUA PATH
run_wrk() {
    local test=$1 target=$2 conns=$3 dur=$4 lua=$5 path=$6 out p0 b0 p1 b1
    p0=$(cpu_ticks "${proxy_pid[$target]:-$backend_pid}")
    b0=$(cpu_ticks "$backend_pid")
    out=$(timeout 120 "${pin_client[@]}" wrk -t1 -c"$conns" -d"$dur" --latency -s "$work/$lua" \
        "http://${addr[$target]}$path" 2>&1) || { echo "$out" >&2; die "wrk failed ($test, $target)"; }
    p1=$(cpu_ticks "${proxy_pid[$target]:-$backend_pid}")
    b1=$(cpu_ticks "$backend_pid")
    local line
    line=$(grep '^BENCH_WRK' <<<"$out") || { echo "$out" >&2; die "no result from wrk ($test, $target)"; }
    eval "$(sed 's/^BENCH_WRK //; s/\([a-z0-9_]*\)=/local w_\1=/g' <<<"$line")"
    [[ $w_non2xx == 0 && $w_sockerr == 0 ]] ||
        say "warning: $test via $target: $w_non2xx non-2xx answers, $w_sockerr socket errors"
    res[$test,$target,rps]=$w_rps
    res[$test,$target,p50]=$w_p50_us
    res[$test,$target,p99]=$w_p99_us
    res[$test,$target,errors]=$((w_non2xx + w_sockerr))
    # CPU per request, microseconds (clock ticks are 10ms).
    local hz
    hz=$(getconf CLK_TCK)
    if [[ $target == direct ]]; then
        res[$test,$target,pcpu]=-
    else
        res[$test,$target,pcpu]=$(awk -v t=$((p1 - p0)) -v n="$w_requests" -v hz="$hz" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }')
    fi
    res[$test,$target,bcpu]=$(awk -v t=$((b1 - b0)) -v n="$w_requests" -v hz="$hz" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }')
    say "$test via $target: $w_rps req/s, p50 ${w_p50_us}us, p99 ${w_p99_us}us"
}

# CPU ticks: the machine's busy time (steal excluded), and ours (servers started here, plus
# this script's children: wrk, stream_latency, curl). The difference is other work on the
# machine during the measurement, which skews every number here.
busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }
our_ticks() {
    local total p
    total=$(awk '{ sub(/.*\) /, ""); print $12 + $13 + $14 + $15 }' /proc/$$/stat)
    for p in "$backend_pid" "${proxy_pid[@]}"; do total=$((total + $(cpu_ticks "$p"))); done
    echo "$total"
}
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
ours_start=$(our_ticks)
busy_start=$(busy_ticks)
started=$SECONDS
say "warming up (2s per path)"
for t in "${targets[@]}"; do
    timeout 30 "${pin_client[@]}" wrk -t1 -c"$CONNS" -d2s -s "$work/post.lua" \
        "http://${addr[$t]}/v1/chat/completions" >/dev/null 2>&1 || true
done
for t in "${targets[@]}"; do run_wrk post "$t" "$CONNS" "$DURATION" post.lua /v1/chat/completions; done
for t in "${targets[@]}"; do run_wrk get "$t" "$CONNS" "$DURATION" get.lua "${get_path[$t]}"; done
for t in "${targets[@]}"; do run_wrk c1 "$t" 1 "$C1_DURATION" post.lua /v1/chat/completions; done

# --- streaming --------------------------------------------------------------------------
# "new": a fresh connection per stream; "kept": all streams on one kept-alive connection, as
# SDK clients with a connection pool do (this is where Nagle's algorithm on the proxy's
# client socket shows: chunks wait for the client's delayed ACK).
declare -A st
for mode in new kept; do
    flag=$([[ $mode == kept ]] && echo --keep-alive || true)
    for t in "${targets[@]}"; do
        out=$(timeout 120 "${pin_client[@]}" "$STREAM" "http://${addr[$t]}/v1/chat/completions" --requests "$STREAMS" $flag 2>&1) ||
            { echo "$out" >&2; die "stream_latency failed via $t"; }
        line=$(grep '^BENCH_STREAM' <<<"$out")
        for kv in ${line#BENCH_STREAM }; do st[$mode,$t,${kv%%=*}]=${kv#*=}; done
        say "stream ($mode connection) via $t: ${out%%$'\n'*}"
    done
done
ours_end=$(our_ticks)
busy_end=$(busy_ticks)
elapsed=$((SECONDS - started))
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# --- report -----------------------------------------------------------------------------
ms() { awk -v u="$1" 'BEGIN { printf "%.3f", u / 1000 }'; }
added() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.3f", (a - b) / 1000 }'; }
share() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f%%", 100 * a / b }'; }
cpu_model=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
version() { "$@" 2>&1 | head -1 | grep -o '[0-9][0-9.]*[0-9]' | head -1; }

echo
echo "### Proxy benchmark — $(date -u +%Y-%m-%dT%H:%MZ)"
echo
echo "Command: \`$COMMAND\` (corral $(git describe --always --dirty 2>/dev/null || echo '?'))."
echo "Machine: $ncpu CPUs ($cpu_model), Linux $(uname -r); load average before $load_before, after $load_after."
echo -n "Placement: "
if [[ $PIN == 1 ]]; then
    echo "backend (1 actix worker) pinned to CPU 0, wrk/stream_latency to CPU 1, proxies unpinned (Corral: $(ls /proc/"$corral_pid"/task | wc -l) threads)."
else
    echo "nothing pinned."
fi
echo -n "Tools: wrk $(version wrk -v)"
for p in "${peers[@]}"; do echo -n ", $p $(version "$p" -v)"; done
echo "; HAProxy: http mode, \`option http-no-delay\`, keep-alive, 2 threads; nginx: 2 workers, \`proxy_http_version 1.1\`, \`proxy_buffering off\`, upstream keepalive 64."
echo
echo "wrk -t1, $CONNS connections, $DURATION each (saturated: latency here is mostly queueing). CPU/req = CPU time of the proxy / of the backend per request."
echo
echo "| path | test | req/s | vs direct | p50 ms | p99 ms | proxy CPU/req | backend CPU/req |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
for test in post get; do
    label=$([[ $test == post ]] && echo "POST chat" || echo "GET /health")
    for t in "${targets[@]}"; do
        pc=${res[$test,$t,pcpu]}
        [[ $pc != - ]] && pc="$pc µs"
        echo "| $t | $label | ${res[$test,$t,rps]%.*} | $(share "${res[$test,$t,rps]}" "${res[$test,direct,rps]}") | $(ms "${res[$test,$t,p50]}") | $(ms "${res[$test,$t,p99]}") | $pc | ${res[$test,$t,bcpu]} µs |"
    done
done
echo
echo "wrk -t1, 1 connection, $C1_DURATION, POST chat (one request at a time: what the proxy adds without queueing)."
echo
echo "| path | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms |"
echo "|---|---:|---:|---:|---:|---:|"
for t in "${targets[@]}"; do
    if [[ $t == direct ]]; then a50=—; a99=—; else
        a50=$(added "${res[c1,$t,p50]}" "${res[c1,direct,p50]}")
        a99=$(added "${res[c1,$t,p99]}" "${res[c1,direct,p99]}")
    fi
    echo "| $t | ${res[c1,$t,rps]%.*} | $(ms "${res[c1,$t,p50]}") | $(ms "${res[c1,$t,p99]}") | $a50 | $a99 |"
done
echo
echo "Streaming: $STREAMS streams × 20 SSE chunks 10ms apart; delay = arrival at the client − the backend's send time (\`sent_ns\`), all chunks; first chunk = the one sent with the response headers. Connection: new = one per stream; kept = all streams on one kept-alive connection."
echo
echo "| path | connection | chunks | delay p50 ms | p99 ms | max ms | added p50 ms | added p99 ms | first chunk p50 ms | first chunk max ms |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for mode in new kept; do
    for t in "${targets[@]}"; do
        if [[ $t == direct ]]; then a50=—; a99=—; else
            a50=$(added "${st[$mode,$t,p50_us]}" "${st[$mode,direct,p50_us]}")
            a99=$(added "${st[$mode,$t,p99_us]}" "${st[$mode,direct,p99_us]}")
        fi
        echo "| $t | $mode | ${st[$mode,$t,events]} | $(ms "${st[$mode,$t,p50_us]}") | $(ms "${st[$mode,$t,p99_us]}") | $(ms "${st[$mode,$t,max_us]}") | $a50 | $a99 | $(ms "${st[$mode,$t,first_p50_us]}") | $(ms "${st[$mode,$t,first_max_us]}") |"
    done
done
echo
hz=$(getconf CLK_TCK)
awk -v e="$elapsed" -v n="$ncpu" -v hz="$hz" -v busy=$((busy_end - busy_start)) -v ours=$((ours_end - ours_start)) 'BEGIN {
    other = busy - ours; if (other < 0) other = 0
    printf "Measured in %ds. CPU busy during the measurement: %.0f%% of %d cores, of which other processes (not started by this script): %.0f%% of the machine.\n",
        e, 100 * busy / (e * n * hz), n, 100 * other / (e * n * hz)
}'
