"""The minimal pass-through performance.md measures the gateway against.

uvicorn (uvloop, httptools) + a raw ASGI app + one aiohttp ClientSession + orjson. It does the
least a Vertex gateway must do: read the Anthropic request body, move `model` into the URL, add
`anthropic_version`, POST it to `{upstream}/v1/projects/p/locations/us-east5/publishers/
anthropic/models/{model}:rawPredict` (`:streamRawPredict` when `"stream": true`), and relay the
answer chunk by chunk with the upstream's status and content type. No authentication, no
validation, no logging, no usage accounting: everything the gateway adds costs relative to this.

    python bench/baseline.py --port 8001 --upstream http://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
from typing import Any

import aiohttp
import orjson
import uvicorn

Scope = dict[str, Any]
ANTHROPIC_VERSION = "vertex-2023-10-16"


class PassThrough:
    """Raw ASGI: any POST path is a Messages call."""

    def __init__(self, upstream: str) -> None:
        self.prefix = upstream.rstrip("/") + "/v1/projects/p/locations/us-east5/publishers/anthropic/models/"
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await self._call(receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.session = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=1000),
                    auto_decompress=False,
                    skip_auto_headers=("User-Agent", "Content-Type", "Accept-Encoding"),
                )
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.session is not None:
                    await self.session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _call(self, receive: Any, send: Any) -> None:
        assert self.session is not None
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = orjson.loads(b"".join(chunks))
        model = body.pop("model")
        body["anthropic_version"] = ANTHROPIC_VERSION
        verb = "streamRawPredict" if body.get("stream") else "rawPredict"
        async with self.session.post(
            f"{self.prefix}{model}:{verb}",
            data=orjson.dumps(body),
            headers={"content-type": "application/json", "authorization": "Bearer bench-token"},
        ) as resp:
            ctype = resp.headers.get("content-type", "application/json").encode("latin-1")
            await send(
                {"type": "http.response.start", "status": resp.status, "headers": [(b"content-type", ctype)]}
            )
            async for chunk in resp.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def main() -> None:
    """Serve on 127.0.0.1 until interrupted."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="base URL of the static upstream")
    args = parser.parse_args()
    uvicorn.run(
        PassThrough(args.upstream),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
        server_header=False,
    )


if __name__ == "__main__":
    main()
