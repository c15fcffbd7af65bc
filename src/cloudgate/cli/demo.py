"""`cloudgate demo`: the emulator and the gateway together, with zero configuration.

The emulator plays the upstream cloud (Vertex AI by default; Bedrock or the Anthropic API with
`--provider`). For Vertex the demo writes a throw-away service-account key the emulator trusts,
so the gateway gets its Google token through the real google-auth flow. It sends one request in
each wire format, prints the lines that point Claude Code at the gateway, and runs until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import signal
import socket
import sys
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from cloudgate.cli.common import setup_logging
from cloudgate.config import load_settings
from cloudgate.emulator import EmulatorConfig, create_emulator_app, write_service_account_key
from cloudgate.gateway import create_gateway_app
from cloudgate.gateway.records import MemorySink, RequestRecord
from cloudgate.protocol.eventstream import EventStreamDecoder
from cloudgate.protocol.sse import SSEParser
from cloudgate.util.server import EmbeddedServer, uvicorn_config

DEMO_PROJECT = "cloudgate-demo"
DEMO_MODEL = "claude-sonnet-4-5"
DEMO_BEDROCK_MODEL = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"


def add_parser(sub: Any) -> None:
    """Register the subcommand."""
    p = sub.add_parser(
        "demo",
        help="run the gateway in front of the emulator, no configuration needed",
        description="Start the emulator and the gateway on loopback, send a request in each wire "
        "format, and print how to point Claude Code at the gateway.",
    )
    p.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    p.add_argument("--port", type=int, default=8900, help="gateway port (0: any free port)")
    p.add_argument("--emulator-port", type=int, default=8901, help="emulator port (0: any free port)")
    p.add_argument("--key", help="gateway key to use (default: a new random one)")
    p.add_argument(
        "--provider",
        choices=("vertex", "bedrock", "anthropic"),
        default="vertex",
        help="which cloud the emulator plays behind the gateway",
    )
    p.add_argument("--stream-delay", type=float, default=0.02, help="emulator delay between events")
    p.add_argument("--once", action="store_true", help="exit after the first round of requests")
    p.add_argument("--log-level", default="warning")
    p.add_argument(
        "--log-format", choices=("text", "json"), default="text", help="log lines as text or JSON objects"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo until Ctrl-C (or once, with --once)."""
    setup_logging(args.log_level, args.log_format)
    try:
        return asyncio.run(_demo(args))
    except OSError as exc:
        print(f"cloudgate demo: {exc}", file=sys.stderr)
        return 1


def tool_round_trip_script() -> str:
    """Path of the packaged emulator script that asks for the Bash tool when told RUN_TOOL."""
    return str(resources.files("cloudgate.emulator").joinpath("scripts/tool_round_trip.yaml"))


def _bind(host: str, port: int, what: str, flag: str) -> socket.socket:
    """A listening socket, bound before anything starts so a busy port is a plain message."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(
            f"the {what} could not listen on port {port}: {exc.strerror} (choose another with {flag})"
        ) from None
    return sock


async def _demo(args: argparse.Namespace) -> int:
    host = args.host
    emulator_sock = _bind(host, args.emulator_port, "emulator", "--emulator-port")
    try:
        gateway_sock = _bind(host, args.port, "gateway", "--port")
    except OSError:
        emulator_sock.close()
        raise
    emulator_port = emulator_sock.getsockname()[1]
    gateway_port = gateway_sock.getsockname()[1]
    emulator_url = f"http://{host}:{emulator_port}"
    gateway_url = f"http://{host}:{gateway_port}"
    key = args.key or "cg-demo-" + secrets.token_hex(12)
    admin_key = "cg-admin-" + secrets.token_hex(12)  # signs in to the web console
    state_dir = Path(tempfile.mkdtemp(prefix="cloudgate-demo-"))
    key_file = state_dir / "service-account.json"

    upstream_key = "emulated-" + secrets.token_hex(8)  # what the gateway shows the emulated cloud
    config = EmulatorConfig(
        stream_delay=args.stream_delay,
        script=tool_round_trip_script(),
        bedrock_api_keys=[upstream_key],
        anthropic_api_keys=[upstream_key],
    )
    config.trust_key(write_service_account_key(key_file, token_uri=f"{emulator_url}/token"))
    emulator_app = create_emulator_app(config)
    emulator_app.state.base_url = emulator_url

    settings = load_settings(
        env={},  # the demo is hermetic: nothing in the caller's environment changes it
        overrides={
            "gateway": {"host": host, "port": gateway_port, "keys": [key]},
            "admin_key": admin_key,
            "data_dir": str(state_dir),
            "provider": args.provider,
            "vertex": {
                "project_id": DEMO_PROJECT,
                "region": "global",
                "base_url": f"{emulator_url}/v1",
                "credentials_file": str(key_file),
            },
            "bedrock": {"region": "us-east-1", "base_url": emulator_url, "api_key": upstream_key},
            "anthropic": {"base_url": emulator_url, "api_key": upstream_key},
        },
    )
    sink = MemorySink(limit=1000)
    gateway_app = create_gateway_app(settings, sinks=[sink])

    emulator = EmbeddedServer(
        uvicorn_config(emulator_app, host, args.emulator_port, log_level=args.log_level, log_config=None)
    )
    gateway = EmbeddedServer(
        uvicorn_config(gateway_app, host, args.port, log_level=args.log_level, log_config=None)
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    emulator_task = asyncio.ensure_future(emulator.serve(sockets=[emulator_sock]))
    await _until_started(emulator, emulator_task, "emulator")
    gateway_task = asyncio.ensure_future(gateway.serve(sockets=[gateway_sock]))
    try:
        await _until_started(gateway, gateway_task, "gateway")
        ok = await _first_requests(gateway_url, key, sink)
        _print_instructions(gateway_url, emulator_url, key, ok, args.provider, admin_key)
        if not args.once:
            print("Press Ctrl-C to stop.", flush=True)
            await stop.wait()
        return 0 if ok else 1
    finally:
        gateway.should_exit = True
        emulator.should_exit = True
        await asyncio.gather(gateway_task, emulator_task, return_exceptions=True)


async def _until_started(server: EmbeddedServer, task: asyncio.Future[None], what: str) -> None:
    while not server.started:
        if task.done():
            raise OSError(f"the {what} failed to start (see the log above)")
        await asyncio.sleep(0.02)


async def _first_requests(gateway_url: str, key: str, sink: MemorySink) -> bool:
    """One Anthropic-format call and one streamed Vertex-format call through the gateway."""
    headers = {"x-api-key": key, "anthropic-version": "2023-06-01", "content-type": "application/json"}
    ask = {"role": "user", "content": "Hello from the cloudgate demo!"}
    ok = True
    async with aiohttp.ClientSession() as http:
        body = {"model": DEMO_MODEL, "max_tokens": 200, "messages": [ask]}
        async with http.post(f"{gateway_url}/v1/messages", json=body, headers=headers) as resp:
            answer = await resp.json()
        if resp.status == 200:
            text = "".join(b.get("text", "") for b in answer.get("content", []))
            print(f"Anthropic format  POST /v1/messages -> 200: {text!r}")
        else:
            ok = False
            print(f"Anthropic format  POST /v1/messages -> {resp.status}: {answer}")

        path = (
            f"/vertex_ai/v1/projects/{DEMO_PROJECT}/locations/global/publishers/anthropic/models/"
            "claude-sonnet-4-5@20250929:streamRawPredict"
        )
        body = {
            "anthropic_version": "vertex-2023-10-16",
            "max_tokens": 200,
            "messages": [ask],
            "stream": True,
        }
        parser = SSEParser()
        events: list[str] = []
        async with http.post(f"{gateway_url}{path}", json=body, headers=headers) as resp:
            async for chunk in resp.content.iter_any():
                events.extend(e.event for e in parser.feed(chunk))
        if resp.status == 200 and events and events[-1] == "message_stop":
            print(f"Vertex format     POST ...:streamRawPredict -> 200: {len(events)} events streamed")
        else:
            ok = False
            print(f"Vertex format     POST ...:streamRawPredict -> {resp.status}: events {events}")

        bedrock_path = f"/bedrock/model/{quote(DEMO_BEDROCK_MODEL, safe='')}/invoke-with-response-stream"
        body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 200, "messages": [ask]}
        decoder = EventStreamDecoder()
        frames: list[str] = []
        bearer = {"authorization": f"Bearer {key}", "content-type": "application/json"}
        async with http.post(f"{gateway_url}{bedrock_path}", json=body, headers=bearer) as resp:
            async for chunk in resp.content.iter_any():
                frames.extend(f.message_type for f in decoder.feed(chunk))
        if resp.status == 200 and frames and set(frames) == {"event"}:
            print(f"Bedrock format    POST .../invoke-with-response-stream -> 200: {len(frames)} frames")
        else:
            ok = False
            print(f"Bedrock format    POST .../invoke-with-response-stream -> {resp.status}: frames {frames}")
    for record in sink.records[-3:]:
        _print_record(record)
    return ok


def _print_record(record: RequestRecord) -> None:
    u = record.usage
    where = f" @ {record.region}" if record.region else ""
    print(
        f"  record {record.request_id}: {record.frontdoor} -> {record.provider} "
        f"{record.upstream_model}{where}, status {record.status}, "
        f"tokens in {u.input_tokens} out {u.output_tokens}"
    )


def _print_instructions(
    gateway_url: str, emulator_url: str, key: str, ok: bool, provider: str, admin_key: str
) -> None:
    plays = {
        "vertex": "Vertex AI and Google OAuth",
        "bedrock": "Amazon Bedrock",
        "anthropic": "the Anthropic API",
    }
    print(
        f"""
cloudgate demo {"is running" if ok else "started, but the first requests failed (see above)"}
  gateway   {gateway_url}   key {key}
  emulator  {emulator_url}   (playing {plays[provider]}: the gateway's upstream)
  console   {gateway_url}/ui   sign in with the admin key {admin_key}

Point Claude Code at the gateway, in any mode:

  # Anthropic API format
  export ANTHROPIC_BASE_URL={gateway_url}
  export ANTHROPIC_AUTH_TOKEN={key}

  # Vertex AI format (cloudgate holds the Google credentials)
  export CLAUDE_CODE_USE_VERTEX=1
  export ANTHROPIC_VERTEX_BASE_URL={gateway_url}/vertex_ai/v1
  export CLAUDE_CODE_SKIP_VERTEX_AUTH=1
  export ANTHROPIC_VERTEX_PROJECT_ID={DEMO_PROJECT}
  export CLOUD_ML_REGION=global
  export ANTHROPIC_AUTH_TOKEN={key}

  # Amazon Bedrock format (cloudgate holds the AWS credentials)
  export CLAUDE_CODE_USE_BEDROCK=1
  export ANTHROPIC_BEDROCK_BASE_URL={gateway_url}/bedrock
  export AWS_BEARER_TOKEN_BEDROCK={key}
  export AWS_REGION=us-east-1

Then run: claude -p "say hi"   (the emulator answers; send RUN_TOOL to see a tool round trip)
""",
        flush=True,
    )
