"""Hostile clients against a running Corral (not in CI): odd headers, lying bodies, a CONNECT,
path spellings, a half head, non-UTF-8 JSON, an Upgrade, and clients that vanish mid-stream of
a real generation. Prints the first response line of each case, then every endpoint's health:
none may have moved because of these requests.

    python3 scripts/real/hostile.py PORT    # Corral on 127.0.0.1:PORT in front of the rb servers
"""
import json, socket, sys, time, urllib.request

PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 40114
H = ("127.0.0.1", PORT)
def raw(data, read=True, wait=3.0, close_after=None):
    s=socket.create_connection(H); s.settimeout(wait)
    s.sendall(data)
    if close_after is not None:
        time.sleep(close_after); s.close(); return b""
    out=b""
    try:
        while True:
            d=s.recv(65536)
            if not d: break
            out+=d
            if not read: break
    except Exception: pass
    s.close(); return out
body=json.dumps({"model":"smollm2","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}).encode()
def post(path, extra=b"", b=body, cl=None):
    cl = len(b) if cl is None else cl
    return raw(b"POST "+path+b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: %d\r\n"%cl+extra+b"\r\n"+b)
cases = {
 "expect-x": post(b"/v1/chat/completions", b"Expect: x\r\n"),
 "expect-100": post(b"/v1/chat/completions", b"Expect: 100-continue\r\n"),
 "te+cl": post(b"/v1/chat/completions", b"Transfer-Encoding: chunked\r\n"),
 "cl-short": post(b"/v1/chat/completions", b"", body, len(body)+50),
 "connect": raw(b"CONNECT 127.0.0.1:18081 HTTP/1.1\r\nHost: x\r\n\r\n"),
 "traversal": raw(b"GET /v1/%2e%2e/internal/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
 "encoded-internal": raw(b"GET /%69nternal/status/endpoints HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
 "half-head": raw(b"GET /v1/models HTTP/1.1\r\nHo", wait=5),
 "non-utf8-json": post(b"/v1/chat/completions", b"", b'{"model":"smollm2","x":"\xff"}'),
 "upgrade": post(b"/v1/chat/completions", b"Upgrade: websocket\r\nConnection: upgrade\r\n"),
}
for k,v in cases.items():
    first = v.split(b'\r\n')[0].decode(errors='replace')[:60]; print(f'{k:18} {first!r}')
# vanish mid-stream of a real generation
sb=json.dumps({"model":"smollm2","stream":True,"max_tokens":64,"messages":[{"role":"user","content":"count to 50"}]}).encode()
for after in (0.0, 0.3, 1.0):
    raw(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"%len(sb)+sb, close_after=after)
print("vanished mid-stream x3")
time.sleep(4)
st=json.load(urllib.request.urlopen(f"http://127.0.0.1:{PORT}/internal/status/endpoints"))
for e in st["endpoints"]:
    print(e["name"], e["status"], "cf",e["consecutive_failures"], "proxy",e["circuit_breaker"]["proxy"], "in_flight",e["in_flight"])
