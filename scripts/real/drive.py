#!/usr/bin/env python3
"""Corral in front of two real LLM servers (issue 8), under streaming load, through three
failure scenarios. Started by scripts/real/run.sh, which builds Corral, starts the `rb` servers
and makes the venv; run it directly only with those in place:

    drive.py --corral target/release/corral --rb /work/shared/real-backends/rb \
             --logs target/real-logs/STAMP [--scenarios freeze,kill,loading] [--clients 4]

For each scenario it starts a fresh Corral (check_interval 1s, check_timeout 500ms, llama-py as
`openai-compatible`, llama-cpp as `llamacpp`, same priority, default `priority` balancer), waits
until both endpoints are healthy, runs streaming chat clients against it (half of them the
official `openai` SDK, the others raw `httpx`), and while they run:

  freeze   rb freeze llama-cpp at +6 s, rb thaw at +13 s
  kill     rb kill llama-py at +6 s, rb restart llama-py at +11 s, wait until it answers
  loading  rb restart llama-cpp at +6 s: it answers /health 503 "Loading model" until ready

It polls GET /internal/status/endpoints every 100 ms, records every request, and prints the
figures per scenario and a Markdown table at the end (README.md beside this file explains each
figure). Everything it writes goes under --logs. Every client call has a timeout; every frozen
server is thawed and every killed one restarted in a `finally`, whatever happens.
"""

import argparse
import collections
import datetime as dt
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

try:
    import httpx
    import openai
except ImportError as e:  # environment problem
    print(f"drive.py: {e}; run scripts/real/run.sh (it makes the venv)", file=sys.stderr)
    sys.exit(2)

ROUTABLE = {"healthy", "degraded", "recovering"}
SERVERS = {
    # name: (port, Corral type, the server's own readiness URL, as rb checks it)
    "llama-py": (18081, "openai-compatible", "http://127.0.0.1:18081/v1/models"),
    "llama-cpp": (18082, "llamacpp", "http://127.0.0.1:18082/health"),
}
MODEL = "smollm2"
PROMPTS = [
    "Count from one to ten in words.",
    "Name five fruits and their colours.",
    "Write a short poem about the sea.",
    "Explain what a proxy server does in two sentences.",
    "List the days of the week.",
    "Describe a cat in three sentences.",
]

# Client timeouts: connect, per read (no byte for this long), and a total deadline per request.
CONNECT_S = 5.0
READ_S = 20.0
REQUEST_DEADLINE_S = 60.0
POLL_S = 0.1
ABORTING = threading.Event()  # set on SIGTERM/SIGINT: wind down fast, but still clean up


def now():
    return time.monotonic()


def log(msg):
    print(f"real: {msg}", file=sys.stderr, flush=True)


def http_get(url, timeout=1.0):
    """(status, body text) or (None, error text). Never raises."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read(65536).decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        try:
            body = e.read(65536).decode("utf-8", "replace")
        except Exception:
            body = ""
        return e.code, body
    except Exception as e:
        return None, f"{type(e).__name__}: {e}"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- rb ------------------------------------------------------------------------------------


class Rb:
    def __init__(self, path, out):
        self.path = path
        self.out = out  # file where rb's output goes

    def run(self, *args, check=False):
        """(exit code, when, wall-clock when). `when` is taken after rb returns (rb sends its
        signal last, so that is within milliseconds of it), except for `restart`, whose kill
        comes first and which then sleeps 0.3 s and launches: there it is taken before."""
        t, wall = now(), time.time()
        p = subprocess.run([self.path, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=60)
        self.out.write(f"{dt.datetime.now().isoformat()} rb {' '.join(args)} -> {p.returncode}\n{p.stdout}")
        self.out.flush()
        if check and p.returncode != 0:
            raise RuntimeError(f"rb {' '.join(args)} failed: {p.stdout.strip()}")
        if args[0] != "restart":
            t, wall = now(), time.time()
        return p.returncode, t, wall

    def state(self):
        """{name: 'running'|'frozen'} for the live servers."""
        p = subprocess.run([self.path, "status"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=30)
        out = {}
        for line in p.stdout.splitlines():
            f = line.split()
            if len(f) >= 6 and f[0] in SERVERS:
                out[f[0]] = f[-1]
        return out

    def ensure_up(self, deadline_s=120):
        """Thaws what is frozen, restarts what is dead, waits until both answer their health URL."""
        st = self.state()
        for name in SERVERS:
            if st.get(name) == "frozen":
                self.run("thaw", name)
            elif name not in st:
                log(f"{name} is not running: rb restart {name}")
                self.run("restart", name)
        end = now() + deadline_s
        for name, (_, _, url) in SERVERS.items():
            while http_get(url, timeout=2)[0] != 200:
                if now() > end:
                    raise RuntimeError(f"{name} not ready at {url} after {deadline_s}s")
                time.sleep(0.2)


# --- Corral --------------------------------------------------------------------------------


def corral_config(port):
    eps = "".join(
        f"      - name: {name}\n"
        f"        url: http://127.0.0.1:{p}\n"
        f"        type: {typ}\n"
        f"        priority: 100\n"
        for name, (p, typ, _) in SERVERS.items()
    )
    return (
        "# written by scripts/real/drive.py\n"
        f"server:\n  host: 127.0.0.1\n  port: {port}\n"
        # Every scenario's traffic comes from 127.0.0.1: Olla's default limits are not
        # what these scenarios are about.
        "  rate_limits: { global_requests_per_minute: 0, per_ip_requests_per_minute: 0, health_requests_per_minute: 0 }\n"
        "health:\n  check_interval: 1s\n  check_timeout: 500ms\n"
        f"discovery:\n  static:\n    endpoints:\n{eps}"
        "logging:\n  level: info\n"
    )


class Corral:
    def __init__(self, binary, logdir, scenario):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.cfg = os.path.join(logdir, f"{scenario}-corral.yaml")
        self.logpath = os.path.join(logdir, f"{scenario}-corral.log")
        with open(self.cfg, "w") as f:
            f.write(corral_config(self.port))
        self.logf = open(self.logpath, "w")
        env = dict(os.environ, NO_COLOR="1")
        env.pop("RUST_LOG", None)
        self.proc = subprocess.Popen([binary, "--config", self.cfg], stdout=self.logf,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        with open(os.path.join(logdir, "corral.pid"), "a") as f:  # for run.sh's exit trap
            f.write(f"{self.proc.pid}\n")

    def endpoints(self, timeout=1.0):
        st, body = http_get(f"{self.base}/internal/status/endpoints", timeout=timeout)
        if st != 200:
            return None
        try:
            return {e["name"]: e for e in json.loads(body)["endpoints"]}
        except Exception:
            return None

    def wait_healthy(self, deadline_s=30):
        end = now() + deadline_s
        while now() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"corral exited with {self.proc.returncode}; see {self.logpath}")
            eps = self.endpoints()
            if eps and all(eps.get(n, {}).get("status") == "healthy" for n in SERVERS):
                return
            time.sleep(0.2)
        raise RuntimeError(f"corral endpoints not both healthy after {deadline_s}s: {self.endpoints()}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.logf.close()


# --- clients -------------------------------------------------------------------------------


class Req:
    """One client request and what came of it. Times are monotonic seconds."""

    __slots__ = ("client", "kind", "t_start", "t_head", "t_first", "t_end", "status", "endpoint",
                 "bytes", "done", "error")

    def __init__(self, client, kind):
        self.client, self.kind = client, kind
        self.t_start = now()
        self.t_head = self.t_first = self.t_end = None
        self.status = self.endpoint = self.error = None
        self.bytes = 0
        self.done = False

    def outcome(self):
        ok_status = self.status is not None and 200 <= self.status < 300
        if ok_status and self.done and self.error is None:
            return "ok"
        if not ok_status or self.bytes == 0:  # a non-2xx is a failure whatever its body says
            return "failed_before_byte"
        return "broken_after_bytes"

    def row(self, t0):
        rel = lambda t: None if t is None else round(t - t0, 3)  # noqa: E731
        return {"client": self.client, "kind": self.kind, "start": rel(self.t_start),
                "head": rel(self.t_head), "first_byte": rel(self.t_first), "end": rel(self.t_end),
                "status": self.status, "endpoint": self.endpoint, "bytes": self.bytes,
                "done": self.done, "error": self.error, "outcome": self.outcome()}


def body(i):
    return {"model": MODEL, "stream": True, "max_tokens": 48, "temperature": 0.7,
            "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}]}


def describe(e):
    s = f"{type(e).__name__}: {e}"
    return s.replace("\n", " ")[:200]


def httpx_request(client, base, r, i):
    """Raw streaming chat over httpx; parses the SSE itself."""
    url = f"{base}/v1/chat/completions"
    buf = b""
    finish = False
    try:
        with client.stream("POST", url, json=body(i)) as resp:
            r.t_head = now()
            r.status = resp.status_code
            r.endpoint = resp.headers.get("x-olla-endpoint")
            for chunk in resp.iter_raw():
                if not chunk:
                    continue
                if r.t_first is None:
                    r.t_first = now()
                r.bytes += len(chunk)
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    line = line.strip()
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        r.done = True
                        continue
                    try:
                        ev = json.loads(data)
                    except ValueError:
                        continue
                    for c in ev.get("choices") or []:
                        if c.get("finish_reason"):
                            finish = True
                    if "error" in ev:
                        r.error = f"sse error event: {str(ev['error'])[:150]}"
                if now() - r.t_start > REQUEST_DEADLINE_S:
                    r.error = f"deadline {REQUEST_DEADLINE_S:.0f}s"
                    break
            if r.status >= 300 and r.error is None:
                r.error = f"http {r.status}: {buf[:150].decode('utf-8', 'replace')}"
    except Exception as e:
        r.error = describe(e)
    r.done = r.done or (finish and r.error is None)


def openai_request(client, r, i):
    """Streaming chat through the official SDK (retries off: we measure Corral, not the SDK).
    For these clients the first parsed chunk stands for the first body byte."""
    finish = False
    try:
        with client.chat.completions.with_streaming_response.create(**body(i)) as resp:
            r.t_head = now()
            r.status = resp.status_code
            r.endpoint = resp.headers.get("x-olla-endpoint")
            for chunk in resp.parse():
                if r.t_first is None:
                    r.t_first = now()
                r.bytes += 1
                for c in chunk.choices or []:
                    if c.finish_reason:
                        finish = True
                if now() - r.t_start > REQUEST_DEADLINE_S:
                    r.error = f"deadline {REQUEST_DEADLINE_S:.0f}s"
                    break
            # The SDK's iterator ends at `data: [DONE]` (or at the end of the body).
            r.done = finish and r.error is None
    except openai.APIStatusError as e:
        r.status = e.status_code
        r.endpoint = e.response.headers.get("x-olla-endpoint")
        r.error = describe(e)
    except Exception as e:
        r.error = describe(e)


def client_loop(idx, kind, base, stop, results, lock):
    timeout = httpx.Timeout(READ_S, connect=CONNECT_S)
    rng = random.Random(idx)
    if kind == "openai":
        http = httpx.Client(timeout=timeout)
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0,
                               timeout=timeout, http_client=http)
    else:
        http = client = httpx.Client(timeout=timeout)
    n = idx
    try:
        while not stop.is_set():
            r = Req(idx, kind)
            if kind == "openai":
                openai_request(client, r, n)
            else:
                httpx_request(client, base, r, n)
            r.t_end = now()
            with lock:
                results.append(r)
            n += 1
            if r.outcome() != "ok":
                stop.wait(0.2)  # no tight loop against an error
            stop.wait(rng.uniform(0.0, 0.2))
    finally:
        http.close()


# --- pollers -------------------------------------------------------------------------------


def poll_status(corral, stop, samples):
    """Every POLL_S: (t, {name: (status, error)}) or (t, None) when the status API failed."""
    while not stop.is_set():
        t = now()
        eps = corral.endpoints(timeout=1.0)
        samples.append((t, None if eps is None else
                        {n: (e.get("status"), e.get("error")) for n, e in eps.items()}))
        stop.wait(max(0.0, POLL_S - (now() - t)))


def poll_backend(name, stop, samples):
    """Every POLL_S: the server's own readiness URL, as (t, status or None, short body)."""
    url = SERVERS[name][2]
    while not stop.is_set():
        t = now()
        st, text = http_get(url, timeout=0.5)
        samples.append((t, st, text[:80]))
        stop.wait(max(0.0, POLL_S - (now() - t)))


# --- one scenario --------------------------------------------------------------------------


SCENARIOS = {
    # name: (target server, what happens to it)
    "freeze": ("llama-cpp", "rb freeze llama-cpp at +6s for 7s, then rb thaw"),
    "kill": ("llama-py", "rb kill llama-py at +6s, rb restart at +11s, wait until it answers"),
    "loading": ("llama-cpp", "rb restart llama-cpp at +6s: /health 503 'Loading model' until ready"),
}
EVENT_AT = 6.0
MIN_LOAD_S = 26.0
AFTER_BACK_S = 10.0  # load goes on at least this long after the server is back
MAX_LOAD_S = 45.0


def run_scenario(name, args, rb, logdir):
    target, what = SCENARIOS[name]
    other = next(n for n in SERVERS if n != target)
    log(f"--- {name}: {what}")
    rb.ensure_up()
    corral = Corral(args.corral, logdir, name)
    stop_clients, stop_polls = threading.Event(), threading.Event()
    results, lock, status, backend = [], threading.Lock(), [], []
    threads = []
    ev = {}  # event name -> monotonic time
    wall = {}  # event name -> wall-clock time (to compare with Corral's log timestamps)
    frozen = killed = False
    try:
        corral.wait_healthy()
        t0 = now()
        threads.append(threading.Thread(target=poll_status, args=(corral, stop_polls, status), daemon=True))
        threads.append(threading.Thread(target=poll_backend, args=(target, stop_polls, backend), daemon=True))
        for i in range(args.clients):
            kind = "openai" if i % 2 == 0 else "httpx"
            threads.append(threading.Thread(target=client_loop, daemon=True,
                                            args=(i, kind, corral.base, stop_clients, results, lock)))
        for t in threads:
            t.start()
        time.sleep(max(0.0, t0 + EVENT_AT - now()))

        if name == "freeze":
            _, ev["event"], wall["event"] = rb.run("freeze", target, check=True)
            frozen = True
            time.sleep(7.0)
            _, ev["back"], wall["back"] = rb.run("thaw", target, check=True)
            frozen = False
        else:
            if name == "kill":
                _, ev["event"], wall["event"] = rb.run("kill", target, check=True)
                killed = True
                time.sleep(5.0)
                rb.run("restart", target, check=True)
            else:
                _, ev["event"], wall["event"] = rb.run("restart", target, check=True)
                killed = True
            # back = the first 200 from the server's own readiness URL after it went away (a
            # poll can still get a 200 between `rb restart` starting and its kill)
            end = now() + 90
            while "back" not in ev and now() < end:
                gone = False
                for t, st, _ in list(backend):
                    if t <= ev["event"]:
                        continue
                    if st != 200:
                        gone = True
                    elif gone:
                        ev["back"] = t
                        wall["back"] = time.time() - (now() - t)
                        break
                time.sleep(0.1)
            if "back" not in ev:
                log(f"{target} did not answer its readiness URL within 90s of the restart")
            killed = "back" not in ev
        stop_at = max(t0 + MIN_LOAD_S, ev.get("back", t0) + AFTER_BACK_S)
        stop_at = min(stop_at, t0 + MAX_LOAD_S)
        time.sleep(max(0.0, stop_at - now()))
    finally:
        if frozen:
            rb.run("thaw", target)
        stop_clients.set()
        # In-flight requests finish (each is bounded by its own timeouts); when aborting, not.
        join_end = now() + (3 if ABORTING.is_set() else REQUEST_DEADLINE_S + READ_S + 5)
        for t in threads[2:]:
            t.join(timeout=max(0.0, join_end - now()))
        stop_polls.set()
        for t in threads[:2]:
            t.join(timeout=5)
        corral.stop()
        if killed:
            rb.ensure_up()
    t_load_end = now()
    return analyse(name, target, other, t0, t_load_end, ev, wall, results, status, backend, corral, logdir)


LOG_CHANGE = re.compile(r"^(\S+)\s+\w+\s+\S+ health status changed endpoint=(\S+) from=(\S+) to=(\S+)(?: reason=\"([^\"]*)\")?")


def parse_log(path):
    """[(wall time, endpoint, from, to, reason)] for every status change in Corral's log."""
    out = []
    with open(path, errors="replace") as f:
        for line in f:
            m = LOG_CHANGE.match(line)
            if not m:
                continue
            try:
                ts = dt.datetime.strptime(m.group(1)[:26].rstrip("Z"), "%Y-%m-%dT%H:%M:%S.%f")
                ts = ts.replace(tzinfo=dt.timezone.utc).timestamp()
            except ValueError:
                ts = None
            out.append((ts, m.group(2), m.group(3), m.group(4), m.group(5)))
    return out


def transitions(status, name):
    """[(t, status)] for each change of `name`'s status seen by the poller ('?' = no answer)."""
    out, last = [], None
    for t, eps in status:
        s = "?" if eps is None else (eps.get(name) or ("missing", None))[0]
        if s != last:
            out.append((t, s))
            last = s
    return out


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def fmt_s(x):
    return "n/a" if x is None else f"{x:.1f} s"


def analyse(name, target, other, t0, t_end, ev, wall, results, status, backend, corral, logdir):
    rows = [r.row(t0) for r in results]
    with open(os.path.join(logdir, f"{name}-requests.jsonl"), "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    with open(os.path.join(logdir, f"{name}-status.jsonl"), "w") as f:
        for t, eps in status:
            f.write(json.dumps({"t": round(t - t0, 3), "endpoints": eps}) + "\n")

    outcomes = collections.Counter(r.outcome() for r in results)
    per_ep = collections.Counter(r.endpoint or "(none)" for r in results)
    errors = collections.Counter()
    for r in results:
        if r.outcome() != "ok":
            key = f"{r.outcome()} via {r.endpoint or '-'}: {re.sub(r'[0-9a-f-]{20,}', '…', r.error or 'no [DONE]/finish_reason')[:110]}"
            errors[key] += 1

    # out of rotation: first poll after the event with the target not routable
    t_out = None
    already_out = None  # the target was already out of rotation when the event came
    if "event" in ev:
        before = [eps for t, eps in status if t < ev["event"] and eps is not None]
        if before and (before[-1].get(target) or ("?",))[0] not in ROUTABLE:
            already_out = next(t for t, s in reversed(transitions(status, target))
                               if t < ev["event"] and s not in ROUTABLE)
        for t, eps in status:
            if t >= ev["event"] and eps is not None and (eps.get(target) or ("?",))[0] not in ROUTABLE:
                t_out = t - ev["event"]
                break
    log_changes = parse_log(corral.logpath)
    t_out_log = None
    if "event" in wall:
        for ts, ep, _, to, _ in log_changes:
            if ep == target and ts is not None and ts >= wall["event"] - 0.05 and to not in ROUTABLE:
                t_out_log = ts - wall["event"]
                break
    # back: in rotation again (status API), and the first response it served to a request sent after
    t_in = t_traffic = None
    if "back" in ev:
        for t, eps in status:
            if t >= ev["back"] and eps is not None and (eps.get(target) or ("?",))[0] in ROUTABLE:
                t_in = t - ev["back"]
                break
        served = [r for r in results if r.endpoint == target and r.t_start >= ev["back"]
                  and r.status is not None and 200 <= r.status < 300 and r.t_head is not None]
        if served:
            t_traffic = min(r.t_head for r in served) - ev["back"]
    # flaps of the other server
    tr_other = transitions(status, other)
    flaps_poll = sum(1 for (_, a), (_, b) in zip(tr_other, tr_other[1:]) if a in ROUTABLE and b not in ROUTABLE)
    flaps_log = sum(1 for _, ep, _, to, _ in log_changes if ep == other and to == "unhealthy")
    degraded_other = sum(1 for _, ep, _, to, _ in log_changes if ep == other and to == "degraded")
    status_api_misses = sum(1 for _, eps in status if eps is None)
    loading_503 = sum(1 for t, st, _ in backend if st == 503 and t >= ev.get("event", t_end))

    rel = lambda t: f"+{t - t0:.1f}s"  # noqa: E731
    timeline = [f"{rel(t)} {s}" for t, s in transitions(status, target)]
    other_timeline = [f"{rel(t)} {s}" for t, s in tr_other]

    fig = collections.OrderedDict()
    fig["failed before first byte"] = outcomes["failed_before_byte"]
    fig["streams broken after bytes"] = outcomes["broken_after_bytes"]
    fig["completed streams"] = outcomes["ok"]
    def since(x, ref):  # a time, or "> how long we watched" when it never happened
        if ref == "event" and already_out is not None:
            return f"already out at the event (since {rel(already_out)})"
        if x is not None:
            return fmt_s(x)
        return "n/a" if ref not in ev else f"not seen (> {t_end - ev[ref]:.1f} s)"

    fig[f"out of rotation after {name} (status API)"] = since(t_out, "event")
    fig["out of rotation (Corral log)"] = since(t_out_log, "event")
    fig["back in rotation after it is back (status API)"] = since(t_in, "back")
    fig["traffic returns after it is back"] = since(t_traffic, "back")
    fig["flaps of the other server (status API)"] = flaps_poll
    fig["flaps of the other server (log to=unhealthy)"] = flaps_log
    fig["other server to=degraded (log)"] = degraded_other
    fig["server's own 503s while loading (direct polls)"] = loading_503
    fig["Corral samples showing the target loading/503"] = sum(
        1 for _, eps in status if eps is not None and (
            (eps.get(target) or ("?",))[0] == "warming"
            or re.search(r"503|loading", str((eps.get(target) or ("", ""))[1]), re.I)))
    failed_at = sorted(r.t_start for r in results if r.outcome() != "ok")
    fig["client errors seen (request start times)"] = (
        "none" if not failed_at else f"{rel(failed_at[0])} .. {rel(failed_at[-1])}")
    fig["total requests"] = len(results)
    for n in SERVERS:
        fig[f"requests to {n}"] = per_ep.get(n, 0)
    fig["requests with no X-Olla-Endpoint"] = per_ep.get("(none)", 0)

    print(f"\n=== {name}: {SCENARIOS[name][1]}  (target {target}, other {other})")
    for k, v in fig.items():
        print(f"{name}: {k}: {v}")
    print(f"{name}: load {t_end - t0:.1f}s; event {rel(ev['event']) if 'event' in ev else 'n/a'}; "
          f"back {rel(ev['back']) if 'back' in ev else 'n/a'}; "
          f"status API misses {status_api_misses}; readiness 503s seen from {target}: {loading_503}; "
          f"loadavg at the end {loadavg()}")
    print(f"{name}: {target} status: {' -> '.join(timeline)}")
    print(f"{name}: {other} status: {' -> '.join(other_timeline)}")
    for k, v in errors.most_common(8):
        print(f"{name}: error x{v}: {k}")
    sys.stdout.flush()
    return fig


def table(results):
    names = list(results)
    keys = []
    for fig in results.values():
        for k in fig:
            if k.startswith("out of rotation after"):
                k = "out of rotation after the event (status API)"
            if k not in keys:
                keys.append(k)
    print("\n| figure | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for k in keys:
        cells = []
        for n in names:
            fig = results[n]
            v = fig.get(k)
            if v is None and k == "out of rotation after the event (status API)":
                v = next((x for kk, x in fig.items() if kk.startswith("out of rotation after")), "")
            cells.append(str(v))
        print(f"| {k} | " + " | ".join(cells) + " |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corral", required=True)
    ap.add_argument("--rb", required=True)
    ap.add_argument("--logs", required=True)
    ap.add_argument("--scenarios", default="freeze,kill,loading")
    ap.add_argument("--clients", type=int, default=4)
    args = ap.parse_args()
    if args.clients < 2:
        ap.error("--clients must be at least 2 (one openai SDK, one httpx)")
    os.makedirs(args.logs, exist_ok=True)

    def on_signal(signum, _frame):
        ABORTING.set()
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    rb = Rb(args.rb, open(os.path.join(args.logs, "rb.log"), "a"))
    log(f"loadavg at the start: {loadavg()} on {os.cpu_count()} CPUs (the figures need a quiet machine)")
    results = collections.OrderedDict()
    failed = False
    try:
        for name in args.scenarios.split(","):
            if name not in SCENARIOS:
                ap.error(f"unknown scenario {name}; have {','.join(SCENARIOS)}")
            try:
                results[name] = run_scenario(name, args, rb, args.logs)
            except Exception as e:
                failed = True
                log(f"scenario {name} did not run to the end: {describe(e)}")
    finally:
        for _attempt in range(2):  # whatever happened: nothing left frozen or dead
            try:
                rb.ensure_up()
                break
            except Exception as e:
                failed = True
                log(f"could not bring the servers back: {describe(e)}")
    print(f"\nCorral in front of llama-py + llama-cpp, {args.clients} streaming clients; "
          f"{os.cpu_count()} CPUs, loadavg {loadavg()}; logs in {args.logs}")
    if results:
        table(results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
