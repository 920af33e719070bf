#!/usr/bin/env python3
"""Client compatibility check: the official `openai` and `ollama` Python clients, pointed at
Corral, list models and complete a chat, streaming and not.

    check_clients.py http://127.0.0.1:PORT [--openai-models a,b,c] [--ollama-model m]

The defaults expect the backends that `cargo run --example mock_backend -- ollama vllm
lmstudio` serves (scripts/clients/run.sh sets all of this up): Ollama `llama3:8b`, vLLM
`qwen2.5-7b`, LM Studio `phi-3-mini`.

Prints one PASS/FAIL line per check and a closing `N passed, M failed` line; exits 1 if any
check failed, 2 on bad usage or when a client package is missing.

Besides what the clients themselves do with a reply, the OpenAI replies are also validated
strictly against the client's own pydantic models (the client constructs them without
validation, so a reply missing a required field would otherwise pass unnoticed and surface
later as a None). A failure there names each missing or mistyped field and where it came from:
the mock backends (tests/common/src/mock.rs) for chat replies, Corral itself for model listings.
"""

import argparse
import sys
import time
import traceback

try:
    import httpx
    import ollama
    import openai
    import pydantic
    from openai.types import Model
    from openai.types.chat import ChatCompletion, ChatCompletionChunk
except ImportError as e:  # pragma: no cover - environment problem, not a check failure
    print(
        f"check_clients: {e}; install the clients first: "
        "pip install -r scripts/clients/requirements.txt",
        file=sys.stderr,
    )
    sys.exit(2)

# Every request must finish well inside this; nothing here should take more than milliseconds.
TIMEOUT_S = 10.0
MESSAGES = [{"role": "user", "content": "Say hello."}]


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def run(self, name, fn):
        """Runs one check; `fn` returns a short detail string or raises with the reason."""
        start = time.monotonic()
        try:
            detail = fn()
        except Exception as e:  # every failure, whatever raised it, is one FAIL line
            self.failed += 1
            ms = (time.monotonic() - start) * 1000
            print(f"FAIL  {name} ({ms:.0f} ms): {describe(e)}", flush=True)
            if not isinstance(e, EXPECTED):
                # Something the clients did not foresee either (a reply they choke on):
                # show where, so the missing piece can be named.
                tb = "".join(traceback.format_exception(type(e), e, e.__traceback__))
                print("      " + tb.rstrip().replace("\n", "\n      "), flush=True)
            return
        self.passed += 1
        ms = (time.monotonic() - start) * 1000
        print(f"PASS  {name} ({ms:.0f} ms){': ' + detail if detail else ''}", flush=True)


class CheckFailed(Exception):
    pass


# Failures that say what went wrong in their message; anything else also gets a traceback.
EXPECTED = (CheckFailed, openai.APIError, ollama.ResponseError, httpx.HTTPError)


def describe(e):
    if isinstance(e, openai.APIStatusError):
        return f"{type(e).__name__}: HTTP {e.status_code}: {e.response.text[:300]}"
    if isinstance(e, ollama.ResponseError):
        return f"ollama.ResponseError: HTTP {e.status_code}: {e.error[:300]}"
    return f"{type(e).__name__}: {e}"


def require(cond, msg):
    if not cond:
        raise CheckFailed(msg)


def strict(model_cls, data, source):
    """Validates `data` against the client's pydantic model; names what is missing or wrong."""
    try:
        model_cls.model_validate(data)
    except pydantic.ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()
        )
        raise CheckFailed(
            f"reply does not match openai.types.{model_cls.__name__} ({source}): {problems}"
        ) from None


# --- OpenAI ---------------------------------------------------------------------------------


def openai_checks(checks, corral, prefix, models, chat_model):
    base = f"{corral}{prefix}/v1"
    # No retries: a retried request would hide exactly the failures this is here to find.
    client = openai.OpenAI(
        base_url=base, api_key="unused", max_retries=0, timeout=TIMEOUT_S
    )
    tag = f"openai {openai.__version__} @ {prefix or ''}/v1"

    def list_models():
        page = client.models.list()
        ids = sorted(m.id for m in page.data)
        missing = sorted(set(models) - set(ids))
        require(not missing, f"missing {missing}; listed {ids}")
        raw = client.models.with_raw_response.list().http_response.json()
        for entry in raw.get("data", []):
            strict(Model, entry, "Corral's model listing, src/proxy/listing.rs")
        return f"{ids}"

    def chat_once(model):
        def check():
            raw = client.chat.completions.with_raw_response.create(
                model=model, messages=MESSAGES
            )
            completion = raw.parse()
            content = completion.choices[0].message.content
            require(content, f"empty content in {completion!r}")
            strict(ChatCompletion, raw.http_response.json(), "mock backend reply")
            via = raw.headers.get("x-olla-endpoint", "?")
            return f"{content!r} via endpoint {via}"

        return check

    def chat_stream():
        stream = client.chat.completions.create(
            model=chat_model, messages=MESSAGES, stream=True
        )
        chunks, text, finish = 0, [], None
        # Read to the end (which releases the connection); openai < 1.6 has no `with stream`.
        for chunk in stream:
            chunks += 1
            # The client builds chunks without validation; check them as a strict one would.
            strict(
                ChatCompletionChunk,
                chunk.model_dump(exclude_unset=True),
                "mock backend SSE chunk",
            )
            for choice in chunk.choices:
                text.append(choice.delta.content or "")
                finish = choice.finish_reason or finish
        joined = "".join(text)
        require(chunks > 1, f"only {chunks} chunk(s)")
        require(joined, "concatenated content is empty")
        return f"{chunks} chunks, {joined!r}, finish_reason={finish}"

    checks.run(f"{tag}: models.list() shows {sorted(models)}", list_models)
    targets = [chat_model] if prefix else sorted(models)
    for model in targets:
        checks.run(f"{tag}: chat.completions.create({model})", chat_once(model))
    checks.run(f"{tag}: chat.completions.create({chat_model}, stream=True)", chat_stream)


# --- Ollama ---------------------------------------------------------------------------------


def ollama_checks(checks, corral, model, not_ollama):
    # Replies are read by subscript: ollama < 0.4 returns dicts, later versions pydantic
    # models that also support it.
    client = ollama.Client(host=corral, timeout=TIMEOUT_S)
    tag = f"ollama {ollama_version()} @ /api"

    def list_models():
        names = sorted(m["model"] for m in client.list()["models"])
        require(model in names, f"{model!r} not listed; listed {names}")
        # /api/tags lists only models on Ollama endpoints (SPEC 5.1).
        leaked = sorted(set(names) & set(not_ollama))
        require(not leaked, f"non-Ollama models listed on /api/tags: {leaked}")
        return f"{names}"

    def chat_once():
        reply = client.chat(model=model, messages=MESSAGES)
        content = reply["message"]["content"]
        require(content, f"empty content in {reply!r}")
        require(reply["done"], f"done is {reply['done']!r}")
        return f"{content!r}, done_reason={reply['done_reason']}"

    def chat_stream():
        parts = list(client.chat(model=model, messages=MESSAGES, stream=True))
        require(len(parts) > 1, f"only {len(parts)} part(s)")
        joined = "".join(p["message"]["content"] or "" for p in parts)
        require(joined, "concatenated content is empty")
        require(parts[-1]["done"], f"last part not done: {parts[-1]!r}")
        return f"{len(parts)} parts, {joined!r}, last done={parts[-1]['done']}"

    def generate_once():
        reply = client.generate(model=model, prompt="Say hello.")
        require(reply["response"], f"empty response in {reply!r}")
        return f"{reply['response']!r}"

    def generate_stream():
        parts = list(client.generate(model=model, prompt="Say hello.", stream=True))
        require(len(parts) > 1, f"only {len(parts)} part(s)")
        joined = "".join(p["response"] or "" for p in parts)
        require(joined, "concatenated response is empty")
        return f"{len(parts)} parts, {joined!r}"

    checks.run(f"{tag}: list() shows {model!r}", list_models)
    checks.run(f"{tag}: chat({model})", chat_once)
    checks.run(f"{tag}: chat({model}, stream=True)", chat_stream)
    checks.run(f"{tag}: generate({model})", generate_once)
    checks.run(f"{tag}: generate({model}, stream=True)", generate_stream)


def ollama_version():
    try:
        from importlib.metadata import version

        return version("ollama")
    except Exception:
        return "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("corral", help="Corral's base URL, e.g. http://127.0.0.1:40114")
    ap.add_argument(
        "--openai-models",
        default="llama3:8b,qwen2.5-7b,phi-3-mini",
        help="models /v1/models must list (comma-separated)",
    )
    ap.add_argument("--ollama-model", default="llama3:8b", help="the Ollama endpoint's model")
    ap.add_argument(
        "--chat-model", default="qwen2.5-7b", help="model for the OpenAI streaming chat"
    )
    args = ap.parse_args()
    corral = args.corral.rstrip("/")
    models = [m for m in args.openai_models.split(",") if m]
    not_ollama = [m for m in models if m != args.ollama_model]

    # Fail fast, with one clear line, when nothing answers at all.
    try:
        httpx.get(f"{corral}/internal/health", timeout=TIMEOUT_S)
    except httpx.HTTPError as e:
        print(f"FAIL  reach Corral at {corral}: {type(e).__name__}: {e}")
        print("0 passed, 1 failed")
        return 1

    checks = Checks()
    openai_checks(checks, corral, "", models, args.chat_model)
    openai_checks(checks, corral, "/olla/openai", models, args.chat_model)
    ollama_checks(checks, corral, args.ollama_model, not_ollama)
    print(f"{checks.passed} passed, {checks.failed} failed")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
