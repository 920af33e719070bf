#!/usr/bin/env python3
"""An Ollama-API (and LM Studio-API) front for llama-server, for the Olla compatibility run only.

Several of Olla's scripts need an Ollama backend (they post to `/olla/ollama/api/generate`,
read `/api/tags` in Ollama's shape). This machine has no Ollama, so this small server speaks
the part of Ollama's API those scripts use and answers every generation from the real
llama-server behind it (its OpenAI API): the tokens are real, only the wire format is
translated. Routes: GET /, /api/version, /api/tags, /api/ps; POST /api/generate, /api/chat
(NDJSON stream or one JSON object); LM Studio's GET /api/v0/models; vLLM's GET /health; /v1/*
passed through
(the request's model set to llama-server's).

    python3 ollama_front.py PORT UPSTREAM_URL      # e.g. 18083 http://127.0.0.1:18082

Standard library only; loopback only; each upstream call has a 120 s timeout.
"""

import http.client
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

PORT = int(sys.argv[1])
UP = urlsplit(sys.argv[2])
MODEL = "smollm2:latest"


def now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def upstream(method, path, body=None, headers=None):
    conn = http.client.HTTPConnection(UP.hostname, UP.port, timeout=120)
    conn.request(method, path, body, headers or {})
    return conn, conn.getresponse()


class Front(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Not BaseHTTPRequestHandler's "BaseHTTP/0.6 Python/3.x": Olla's shell scripts find the
    # status line by grepping the headers for "HTTP/".
    server_version = "ollama-front"
    sys_version = ""

    def log_message(self, *args):
        pass

    def reply(self, status, obj, ctype="application/json"):
        data = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/":
            return self.reply(200, b"Ollama is running", "text/plain; charset=utf-8")
        if self.path == "/health":  # vLLM's health route
            return self.reply(200, {})
        if self.path == "/api/version":
            return self.reply(200, {"version": "0.5.7"})
        if self.path in ("/api/tags", "/api/ps"):
            model = {"name": MODEL, "model": MODEL, "modified_at": now(), "size": 97_000_000,
                     "digest": "0" * 64,
                     "details": {"format": "gguf", "family": "llama", "families": ["llama"],
                                 "parameter_size": "135M", "quantization_level": "Q4_1"}}
            return self.reply(200, {"models": [model]})
        if self.path == "/api/v0/models":
            return self.reply(200, {"object": "list", "data": [{
                "id": "smollm2", "object": "model", "type": "llm", "publisher": "local",
                "arch": "llama", "compatibility_type": "gguf", "quantization": "Q4_1",
                "state": "loaded", "max_context_length": 2048}]})
        if self.path.startswith("/v1/"):
            return self.passthrough("GET")
        self.reply(404, {"error": "not found"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path.startswith("/v1/"):
            return self.passthrough("POST", raw)
        if self.path in ("/api/v0/chat/completions", "/api/v1/chat/completions"):
            # LM Studio's own spellings of the OpenAI route.
            return self.passthrough("POST", raw, "/v1/chat/completions")
        if self.path not in ("/api/generate", "/api/chat"):
            return self.reply(404, {"error": "not found"})
        try:
            req = json.loads(raw or b"{}")
        except ValueError:
            return self.reply(400, {"error": "invalid JSON"})
        chat = self.path == "/api/chat"
        messages = req.get("messages") if chat else [{"role": "user", "content": req.get("prompt", "")}]
        stream = req.get("stream", True)
        options = req.get("options") or {}
        body = json.dumps({"model": "smollm2", "messages": messages or [], "stream": True,
                           "max_tokens": options.get("num_predict", 64)})
        conn, resp = upstream("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        if resp.status != 200:
            data = resp.read()
            conn.close()
            return self.reply(resp.status, data)
        name = req.get("model", MODEL)

        def piece(text, done):
            out = {"model": name, "created_at": now(), "done": done}
            if chat:
                out["message"] = {"role": "assistant", "content": text}
            else:
                out["response"] = text
            if done:
                out.update(done_reason="stop", total_duration=0, eval_count=0)
            return out

        pieces = []
        if stream:
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
        for line in resp:
            if not line.startswith(b"data: {"):
                continue
            delta = json.loads(line[6:])["choices"][0].get("delta", {}).get("content")
            if not delta:
                continue
            if stream:
                self.chunk(json.dumps(piece(delta, False)).encode() + b"\n")
            else:
                pieces.append(delta)
        conn.close()
        if stream:
            self.chunk(json.dumps(piece("", True)).encode() + b"\n")
            self.chunk(b"")
        else:
            self.reply(200, piece("".join(pieces), True))

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def passthrough(self, method, raw=None, path=None):
        headers = {"Content-Type": self.headers.get("Content-Type", "application/json")}
        if raw is not None:
            try:
                obj = json.loads(raw)
                obj["model"] = "smollm2"
                raw = json.dumps(obj).encode()
            except ValueError:
                pass
        conn, resp = upstream(method, path or self.path, raw, headers)
        data = resp.read()
        conn.close()
        self.reply(resp.status, data, resp.getheader("Content-Type", "application/json"))


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", PORT), Front).serve_forever()
