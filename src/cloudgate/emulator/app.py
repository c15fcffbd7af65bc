"""The emulator as one raw ASGI app: routing, request recording, the admin API under /_emulator/."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvicorn

from cloudgate.emulator import anthropic_api, bedrock, bedrock_profiles, google_oauth, vertex
from cloudgate.emulator.config import EmulatorConfig
from cloudgate.emulator.engine import ModelEngine, load_script
from cloudgate.emulator.faults import Fault, FaultSet, platform_of
from cloudgate.emulator.google_oauth import KeyRing, TokenStore
from cloudgate.emulator.wire import (
    AnyResponse,
    Receive,
    Request,
    Response,
    Scope,
    Send,
    StreamResponse,
    json_response,
    read_request,
    send_response,
)
from cloudgate.protocol.errors import anthropic_error_body, aws_error_body, google_error_body
from cloudgate.util.server import uvicorn_config

log = logging.getLogger("cloudgate.emulator")

_ADMIN = "/_emulator/"


@dataclass(slots=True)
class RecordedRequest:
    """A request the emulator received (admin calls excluded)."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    json: Any = None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form for the admin API (body as parsed JSON, else text)."""
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": self.headers,
            "body": self.json if self.json is not None else self.body.decode("utf-8", "replace"),
        }


@dataclass(slots=True)
class EmulatorState:
    """Everything the emulator knows at run time; `app.state` exposes it for tests and the CLI."""

    config: EmulatorConfig
    engine: ModelEngine
    faults: FaultSet
    tokens: TokenStore
    keys: KeyRing
    requests: list[RecordedRequest] = field(default_factory=list)
    base_url: str | None = None
    # Streams whose client hung up before the end (a gateway must cancel upstream calls).
    abandoned_streams: int = 0
    _last_host: str | None = None

    def own_url(self, path: str) -> str:
        """An absolute URL on this emulator (from base_url, else the last Host header seen)."""
        base = self.base_url or (f"http://{self._last_host}" if self._last_host else "http://localhost")
        return base.rstrip("/") + path

    def trust_key(self, info: dict[str, Any]) -> None:
        """Trust a service-account key at run time."""
        self.keys.trust(info)


class EmulatorApp:
    """The ASGI callable."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.state = EmulatorState(
            config=config,
            engine=ModelEngine(
                script=load_script(config.script), min_cacheable_tokens=config.min_cacheable_tokens
            ),
            faults=FaultSet(config.faults, seed=config.fault_seed),
            tokens=TokenStore(),
            keys=KeyRing(config),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        req = await read_request(scope, receive)
        try:
            response = await self._dispatch(req)
        except Exception:
            # Never crash and never leak a traceback: log it, answer a 500 in the platform's shape.
            log.exception("emulator failed on %s %s", req.method, req.path)
            response = _internal_error(req.path)
        try:
            completed = await send_response(send, response, receive)
        except OSError:
            completed = False
        if not completed and isinstance(response, StreamResponse) and response.cut_after is None:
            self.state.abandoned_streams += 1
            log.info("client went away during %s %s", req.method, req.path)

    async def _dispatch(self, req: Request) -> AnyResponse:
        state = self.state
        if "host" in req.headers:
            state._last_host = req.headers["host"]
        if req.path.startswith(_ADMIN):
            return _admin(req, state)
        state.requests.append(_record(req))
        route = vertex.match_route(req.path)
        if route is not None:
            return await vertex.handle(req, route, state)
        bedrock_route = bedrock.match_route(req.path)
        if bedrock_route is not None:
            return await bedrock.handle(req, bedrock_route, state)
        if bedrock_profiles.is_profiles_path(req.path):
            return bedrock_profiles.handle(req, state)
        if anthropic_api.is_api_path(req.path):
            return await anthropic_api.handle(req, state)
        if req.path == "/token":
            return google_oauth.handle_token(req, state)
        if google_oauth.is_metadata_path(req.path):
            return google_oauth.handle_metadata(req, state)
        return _not_found(req)


def create_emulator_app(config: EmulatorConfig | None = None) -> EmulatorApp:
    """Build the emulator's ASGI app; `app.state` gives run-time control."""
    return EmulatorApp(config or EmulatorConfig())


def run_emulator(config: EmulatorConfig | None = None, *, host: str = "127.0.0.1", port: int = 8090) -> None:
    """Serve the emulator in the foreground until interrupted (what `cloudgate emulator` runs)."""
    app = create_emulator_app(config)
    # A wildcard bind has no single URL: leave base_url to be derived from each request's Host.
    if host not in ("0.0.0.0", "::"):
        app.state.base_url = f"http://{host}:{port}"
    log.info("emulator listening on http://%s:%d", host, port)
    uvicorn.Server(uvicorn_config(app, host, port)).run()


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _record(req: Request) -> RecordedRequest:
    parsed: Any = None
    if req.body:
        try:
            parsed = req.json()
        except orjson.JSONDecodeError:
            parsed = None
    return RecordedRequest(req.method, req.path, req.query, dict(req.headers), req.body, parsed)


def _internal_error(path: str) -> Response:
    platform = platform_of(path)
    if platform == "bedrock":
        return json_response(
            500,
            aws_error_body("The system encountered an unexpected error during processing."),
            {"x-amzn-errortype": "InternalServerException"},
        )
    if platform == "anthropic":
        return json_response(500, anthropic_error_body("api_error", "Internal server error"))
    return json_response(500, google_error_body(500, "Internal error encountered.", "INTERNAL"))


def _not_found(req: Request) -> Response:
    return json_response(
        404, google_error_body(404, f"The requested URL {req.path} was not found on this server.")
    )


def _method_not_allowed(req: Request) -> Response:
    return json_response(405, google_error_body(405, f"Method {req.method} is not allowed on {req.path}."))


def _admin(req: Request, state: EmulatorState) -> Response:
    path = req.path[len(_ADMIN) :].rstrip("/")
    if path == "health":
        if req.method != "GET":
            return _method_not_allowed(req)
        return json_response(
            200, {"status": "ok", "faults": len(state.faults), "requests": len(state.requests)}
        )
    if path == "requests":
        if req.method == "GET":
            return json_response(200, [r.to_json() for r in state.requests])
        if req.method == "DELETE":
            count = len(state.requests)
            state.requests.clear()
            return json_response(200, {"cleared": count})
        return _method_not_allowed(req)
    if path == "faults":
        if req.method == "GET":
            return json_response(200, [f.to_dict() for f in state.faults.active()])
        if req.method == "DELETE":
            state.faults.clear()
            return json_response(200, {"cleared": True})
        if req.method == "POST":
            return _add_faults(req, state)
        return _method_not_allowed(req)
    return _not_found(req)


def _add_faults(req: Request, state: EmulatorState) -> Response:
    try:
        data = req.json()
        items = data if isinstance(data, list) else [data]
        faults = [Fault.from_dict(item) for item in items]
    except (orjson.JSONDecodeError, ValueError) as exc:
        return json_response(400, google_error_body(400, f"Invalid fault: {exc}", "INVALID_ARGUMENT"))
    state.faults.add(faults)
    return json_response(200, [f.to_dict() for f in state.faults.active()])
