#!/usr/bin/env python3
"""Admission control against a real llama.cpp server (issue 10, SPEC 10.3).

N concurrent streaming clients, twice: straight at llama-server, then through Corral with
`max_concurrency: auto`. While they run, llama-server's own /slots and /metrics and Corral's
/internal/status are sampled every 50 ms. Printed per run: time to first token and to the last
byte (p50/p95), the most slots llama.cpp showed processing at once, the most requests it
deferred (queued inside itself), and the most requests waiting in Corral's queue.

Needs llama-server from ../shared/real-backends/rb started with two slots:

    RB_SLOTS=2 /work/shared/real-backends/rb start
    python3 scripts/real/queue.py                      # uses target/release/corral
    python3 scripts/real/queue.py --corral BIN --clients 8 --tokens 48

Standard library only. Loopback only; bounded (every request has a timeout; Corral is stopped
at the end whatever happens). Not part of CI.
"""

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

LLAMA = ("127.0.0.1", 18082)
REQUEST_TIMEOUT = 120


def get_json(host, port, path, timeout=2.0):
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, body
    finally:
        conn.close()


def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


class Sampler(threading.Thread):
    """Polls llama.cpp (and Corral, when given) until stopped; keeps the maxima."""

    def __init__(self, corral_port=None):
        super().__init__(daemon=True)
        self.corral_port = corral_port
        self.stop = threading.Event()
        self.max_processing = 0
        self.max_deferred = 0
        self.max_queued = 0
        self.slot_count = None
        self.samples = 0

    def run(self):
        while not self.stop.is_set():
            try:
                status, body = get_json(*LLAMA, "/slots")
                if status == 200:
                    slots = json.loads(body)
                    self.slot_count = len(slots)
                    busy = sum(1 for s in slots if s.get("is_processing"))
                    self.max_processing = max(self.max_processing, busy)
                status, body = get_json(*LLAMA, "/metrics")
                if status == 200:
                    deferred = metric(body.decode(), "llamacpp:requests_deferred") or 0
                    self.max_deferred = max(self.max_deferred, int(deferred))
                if self.corral_port:
                    status, body = get_json("127.0.0.1", self.corral_port, "/internal/status")
                    if status == 200:
                        waiting = json.loads(body)["queue"]["waiting"]
                        self.max_queued = max(self.max_queued, waiting)
                self.samples += 1
            except (OSError, ValueError, KeyError):
                pass
            self.stop.wait(0.05)


def stream_once(host, port, tokens, i, out):
    body = json.dumps({
        "model": "smollm2",
        "stream": True,
        "max_tokens": tokens,
        "temperature": 0,
        "messages": [{"role": "user", "content": f"Count slowly from {i} to {i + 40}."}],
    })
    start = time.monotonic()
    first = None
    status = None
    try:
        conn = http.client.HTTPConnection(host, port, timeout=REQUEST_TIMEOUT)
        conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        status = resp.status
        while True:
            line = resp.readline()
            if not line:
                break
            if first is None and line.startswith(b"data: {") and b'"content"' in line:
                first = time.monotonic() - start
        conn.close()
    except OSError as e:
        status = f"error: {e}"
    out[i] = {"status": status, "ttft": first, "total": time.monotonic() - start}


def run_clients(host, port, clients, tokens, sampler):
    out = {}
    sampler.start()
    threads = [threading.Thread(target=stream_once, args=(host, port, tokens, i, out))
               for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(REQUEST_TIMEOUT + 10)
    time.sleep(0.1)
    sampler.stop.set()
    sampler.join(5)
    return [out[i] for i in sorted(out)]


def pct(values, p):
    values = sorted(v for v in values if v is not None)
    if not values:
        return float("nan")
    k = max(0, min(len(values) - 1, round(p / 100 * (len(values) - 1))))
    return values[k]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_corral(binary, port, workdir):
    config = os.path.join(workdir, "corral.yaml")
    with open(config, "w") as f:
        # Rate limits off: every client is on 127.0.0.1, and the queue is what is measured.
        f.write(f"""server:
  host: 127.0.0.1
  port: {port}
  rate_limits: {{ global_requests_per_minute: 0, per_ip_requests_per_minute: 0, health_requests_per_minute: 0 }}
proxy:
  queue: {{ size: 64, max_wait: 120s }}
health:
  check_interval: 2s
  check_timeout: 1500ms
  load_interval: 500ms
endpoints:
  - url: http://{LLAMA[0]}:{LLAMA[1]}
    name: llama-cpp
    type: llamacpp
    max_concurrency: auto
""")
    log = open(os.path.join(workdir, "corral.log"), "w")
    proc = subprocess.Popen([binary, "--config", config], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            status, body = get_json("127.0.0.1", port, "/internal/status/endpoints")
            if status == 200:
                e = json.loads(body)["endpoints"][0]
                if e["status"] == "healthy" and e.get("max_concurrency"):
                    return proc, e["max_concurrency"]
        except (OSError, ValueError, KeyError, IndexError):
            pass
        time.sleep(0.1)
    proc.kill()
    sys.exit("corral did not become ready with a known slot count (is llama-server up?)")


def report(name, results, sampler):
    ok = sum(1 for r in results if r["status"] == 200)
    ttft = [r["ttft"] for r in results]
    total = [r["total"] for r in results]
    return (f"| {name} | {ok}/{len(results)} | {pct(ttft, 50):.2f} / {pct(ttft, 95):.2f} | "
            f"{pct(total, 50):.2f} / {pct(total, 95):.2f} | {sampler.max_processing} | "
            f"{sampler.max_deferred} | {sampler.max_queued if sampler.corral_port else '-'} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corral", default=os.path.join(
        os.environ.get("CARGO_TARGET_DIR", "target"), "release", "corral"))
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=48)
    args = ap.parse_args()

    try:
        status, body = get_json(*LLAMA, "/slots")
        slots = len(json.loads(body))
    except (OSError, ValueError):
        sys.exit("llama-server is not answering /slots on 127.0.0.1:18082 (RB_SLOTS=2 rb start)")
    print(f"llama-server: {slots} slots; {args.clients} streaming clients, {args.tokens} tokens each")

    direct = Sampler()
    direct_results = run_clients(*LLAMA, args.clients, args.tokens, direct)

    with tempfile.TemporaryDirectory() as workdir:
        port = free_port()
        proc, limit = start_corral(args.corral, port, workdir)
        try:
            print(f"corral: max_concurrency auto read {limit}")
            through = Sampler(corral_port=port)
            corral_results = run_clients("127.0.0.1", port, args.clients, args.tokens, through)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()

    print()
    print("| path | 200s | TTFT p50 / p95 (s) | total p50 / p95 (s) | max slots processing | "
          "max deferred in llama.cpp | max waiting in Corral |")
    print("|---|---|---|---|---|---|---|")
    print(report("straight at llama-server", direct_results, direct))
    print(report("through Corral (max_concurrency: auto)", corral_results, through))
    bad = through.max_processing > slots or through.max_deferred > 0 or limit != slots
    if bad:
        print("\nFAIL: through Corral, llama.cpp queued requests itself or ran more than its slots")
        sys.exit(1)


if __name__ == "__main__":
    main()
