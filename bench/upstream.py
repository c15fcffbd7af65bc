"""The static upstream every benchmark scenario ends at: fixed Vertex answers, served fast.

Two answers, built here once so every server (nginx, the fallback) sends the same bytes:

- `message_body()`: a non-streaming Anthropic Message JSON of 439 bytes, for any POST to a path
  ending in `:rawPredict`;
- `stream_body()`: a 43-event Anthropic SSE stream (message_start, ping, content_block_start,
  37 content_block_delta, content_block_stop, message_delta with usage, message_stop), encoded
  with cloudgate's own `encode_event`, for any POST to a path ending in `:streamRawPredict`.

The preferred server is nginx (one worker, no access log, `return 200 '<body>'`). When nginx is
not installed, `python bench/upstream.py --port N` serves the same answers from a raw-ASGI uvicorn
app; that server is far slower than nginx, which `run.py` says in its output.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import orjson

from cloudgate.protocol.sse import encode_event

MESSAGE_ID = "msg_vrtx_01BenchStaticUpstream000"
MODEL_ID = "claude-sonnet-4-5@20250929"
MESSAGE_BYTES = 439  # the size performance.md measured with
DELTAS = 37  # + 6 framing events = 43, the stream performance.md measured with
SENTENCE = (
    "The quick brown fox jumps over the lazy dog while a benchmark counts every request "
    "that passes through the gateway on its way to the static upstream and back again"
)
WORDS = SENTENCE.split()


def _usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
    }


def message_body() -> bytes:
    """The `:rawPredict` answer: a complete Message, padded to exactly `MESSAGE_BYTES` bytes."""

    def build(text: str) -> bytes:
        return orjson.dumps(
            {
                "id": MESSAGE_ID,
                "type": "message",
                "role": "assistant",
                "model": MODEL_ID,
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": _usage(14, 38),
            }
        )

    room = MESSAGE_BYTES - len(build(""))  # the words are plain ASCII: one byte per character
    return build((SENTENCE * (room // len(SENTENCE) + 1))[: room - 1] + ".")


def stream_events() -> list[tuple[str, dict[str, Any]]]:
    """The `:streamRawPredict` answer as (event name, data) pairs: 43 events."""
    events: list[tuple[str, dict[str, Any]]] = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": MESSAGE_ID,
                    "type": "message",
                    "role": "assistant",
                    "model": MODEL_ID,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": _usage(14, 1),
                },
            },
        ),
        ("ping", {"type": "ping"}),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
    ]
    for i in range(DELTAS):
        word = WORDS[i % len(WORDS)]
        events.append(
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": word if i == 0 else " " + word},
                },
            )
        )
    events += [
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": DELTAS},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return events


def stream_body() -> bytes:
    """The `:streamRawPredict` answer as the bytes on the wire."""
    return b"".join(encode_event(name, data) for name, data in stream_events())


def token_body() -> bytes:
    """The answer to `POST /token`: an OAuth token response, so a peer that insists on Google
    credentials (LiteLLM) gets its bearer token from here instead of from Google."""
    return b'{"access_token":"bench-token","expires_in":3600,"token_type":"Bearer"}'


# -- nginx --------------------------------------------------------------------------------------


def _nginx_return(name: str, body: bytes) -> str:
    """`set` lines and a `return 200` sending `body` verbatim.

    nginx caps one configuration token at 4 KB, so the body is cut into pieces held in
    variables and joined again by `return`.
    """
    text = body.decode()
    # `return` expands variables; these bodies have no `$`, and must not, or nginx would mangle them.
    if "$" in text:
        raise ValueError("static bodies must not contain '$' (nginx would expand it)")
    lines, names = [], []
    for i in range(0, len(text), 2000):
        piece = text[i : i + 2000].replace("\\", "\\\\").replace("'", "\\'")
        names.append(f"${name}{len(names)}")
        lines.append(f"set {names[-1]} '{piece}';")
    lines.append(f'return 200 "{"".join(names)}";')
    return "\n            ".join(lines)


def nginx_config(port: int, workdir: Path) -> str:
    """A self-contained nginx.conf (run with `-p workdir -c <file>`): one worker, foreground."""
    temp = "\n".join(
        f"    {kind}_temp_path {workdir / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""# generated by bench/upstream.py
worker_processes 1;
daemon off;
pid {workdir / "nginx.pid"};
error_log {workdir / "error.log"} warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
{temp}
    keepalive_requests 10000000;
    keepalive_timeout 75s;
    server_tokens off;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        client_max_body_size 32m;
        location ~ :streamRawPredict$ {{
            if ($request_method != POST) {{ return 405; }}
            default_type text/event-stream;
            {_nginx_return("sse", stream_body())}
        }}
        location ~ :rawPredict$ {{
            if ($request_method != POST) {{ return 405; }}
            default_type application/json;
            {_nginx_return("json", message_body())}
        }}
        location = /token {{
            default_type application/json;
            return 200 '{token_body().decode()}';
        }}
        location / {{
            return 404;
        }}
    }}
}}
"""


# -- the fallback: raw ASGI on uvicorn ----------------------------------------------------------

Scope = dict[str, Any]


class StaticUpstream:
    """The same answers as the nginx config, as a raw ASGI app."""

    def __init__(self) -> None:
        self._json = message_body()
        self._sse = stream_body()
        self._token = token_body()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].replace("lifespan.", "")
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body", False):
            pass
        path: str = scope["path"]
        if scope["method"] == "POST" and path.endswith(":streamRawPredict"):
            body, ctype = self._sse, b"text/event-stream"
        elif scope["method"] == "POST" and path.endswith(":rawPredict"):
            body, ctype = self._json, b"application/json"
        elif scope["method"] == "POST" and path == "/token":
            body, ctype = self._token, b"application/json"
        else:
            body, ctype = b'{"error":"not found"}', b"application/json"
        status = 200 if ctype == b"text/event-stream" or body in (self._json, self._token) else 404
        headers = [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})


def main() -> None:
    """Serve the fallback upstream on 127.0.0.1 until interrupted."""
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        StaticUpstream(),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        lifespan="on",
    )


if __name__ == "__main__":
    main()
