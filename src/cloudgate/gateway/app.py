"""The gateway ASGI application: dispatch to a front door, then one path to the upstream.

Follow one request: `GatewayApp.__call__` picks the front door from the path, `_handle_call`
authenticates, reads and decodes the body into a `MessagesCall`, applies the caching policy,
asks the router for a target and hands over to `proxy.forward`, which streams the answer back.
Every request ends in exactly one `RequestRecord`, whatever happened.
"""

from __future__ import annotations

import gc
import itertools
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from urllib.parse import parse_qsl, urlsplit

import orjson

from cloudgate import __version__
from cloudgate.activity import ActivityLog
from cloudgate.catalog import Catalog, default_catalog
from cloudgate.config.settings import DeploymentSettings, Settings
from cloudgate.console import Console
from cloudgate.gateway import caching, proxy
from cloudgate.gateway.auth import AuthError, Caller, KeyAuthenticator, is_sigv4, presented_keys
from cloudgate.gateway.frontdoors import anthropic as anthropic_door
from cloudgate.gateway.frontdoors import bedrock as bedrock_door
from cloudgate.gateway.frontdoors import vertex as vertex_door
from cloudgate.gateway.frontdoors.admin import AdminAPI
from cloudgate.gateway.frontdoors.validation import InvalidJSON
from cloudgate.gateway.governor import Governor
from cloudgate.gateway.http import BodyTooLarge, ClientGone, headers_dict, read_body, send_response
from cloudgate.gateway.records import JsonLinesSink, RecordSink, RequestRecord
from cloudgate.gateway.types import Receive, Scope, Send
from cloudgate.governance.types import Principal
from cloudgate.observability.context import RequestContext, enter_request, leave_request
from cloudgate.observability.health import store_problem
from cloudgate.observability.metrics import MetricsSink
from cloudgate.observability.multiprocess import metrics_sink
from cloudgate.observability.tracing import build_trace_sink
from cloudgate.protocol.errors import GatewayError, aws_error_body
from cloudgate.protocol.messages import MessagesCall, Operation, Usage
from cloudgate.providers.base import Provider, Target
from cloudgate.providers.transport import Timeouts, Transport
from cloudgate.routing import Router
from cloudgate.routing.deployments import account_key

log = logging.getLogger("cloudgate.gateway")

Parser = Callable[[bytes, dict[str, str]], MessagesCall]


class RequestIds:
    """Request ids in the style of the upstream ones: `req_cg` + 22 hex digits, in time order.

    11 digits of milliseconds since the epoch, 5 of a random number drawn per process (again
    after a fork) and 6 of a counter. Ids that grow with time land at the end of the spend and
    activity tables' primary-key indexes instead of at random pages (measured: half the
    database's work per row on SQLite), and cost no system call to make.
    """

    def __init__(self) -> None:
        self._reseed()
        os.register_at_fork(after_in_child=self._reseed)

    def _reseed(self) -> None:
        self._process = int.from_bytes(os.urandom(3)) & 0xFFFFF
        self._count = itertools.count(int.from_bytes(os.urandom(3)))

    def __call__(self) -> str:
        """A new id."""
        millis = time.time_ns() // 1_000_000
        return f"req_cg{millis:011x}{self._process:05x}{next(self._count) & 0xFFFFFF:06x}"


new_request_id = RequestIds()


@dataclass
class GatewayState:
    """What the app holds while it runs."""

    settings: Settings
    catalog: Catalog
    transport: Transport
    providers: dict[str, Provider]
    router: Router
    auth: KeyAuthenticator
    sinks: list[RecordSink] = field(default_factory=list)
    governor: Governor | None = None
    started: bool = False
    metrics: MetricsSink | None = None  # also among `sinks`; None when metrics are off
    activity: ActivityLog | None = None  # also among `sinks`; None when the activity log is off
    tracing: bool = False  # a trace sink is among `sinks`: requests note what spans need


class GatewayApp:
    """The ASGI app. Build it with `create_gateway_app`."""

    def __init__(self, state: GatewayState) -> None:
        self.state = state
        self._max_body = state.settings.gateway.max_body_bytes
        self._models_body: bytes | None = None
        self._admin_api: AdminAPI | None = None
        self._console: Console | None = None
        self._configured_principals: dict[str, Principal] = {}  # key id -> principal
        self._ready = True  # the last readiness answer, so only changes are logged
        self.freeze_gc = False  # `cloudgate serve` sets it: the process is the gateway alone

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        kind = scope["type"]
        if kind == "http":
            await self._dispatch(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    # -- lifecycle -------------------------------------------------------------------------

    async def startup(self) -> None:
        """Start providers (credentials, refreshers)."""
        if self.state.started:
            return
        if self.state.governor is not None:
            await self.state.governor.start()
        if self.state.activity is not None:  # after the migrations its table needs
            await self.state.activity.start()
        for provider in self.state.providers.values():
            await provider.start()
        bedrock = self.state.providers.get("bedrock")
        region = getattr(bedrock, "region", None)
        if isinstance(region, str) and region != self.state.router.bedrock_region:
            # The AWS region may come from a profile, known only once credentials are loaded.
            self.state.router = Router(self.state.settings, self.state.catalog, bedrock_region=region)
        self.state.started = True
        if self.freeze_gc:
            # Everything loaded so far (modules, catalog, clients) lives as long as the process:
            # keep it out of the collector's full passes, whose pauses grew with it (measured: p99
            # at concurrency 1 from ~49 ms to ~10 ms). Only for a process that is this gateway.
            gc.collect()
            gc.freeze()

    async def shutdown(self) -> None:
        """Stop providers and close upstream connections."""
        for provider in self.state.providers.values():
            try:
                await provider.close()
            except Exception:  # a failing provider must not keep the others open
                log.exception("closing provider %s failed", provider.name)
        await self.state.transport.close()
        if self.state.activity is not None:  # before the store it writes to is closed
            try:
                await self.state.activity.aclose()
            except Exception:  # the rest must still be released
                log.exception("closing the activity log failed")
        if self.state.governor is not None:
            try:
                await self.state.governor.close()
            except Exception:  # the other resources must still be released
                log.exception("closing governance failed")
        for sink in self.state.sinks:
            try:
                sink.close()
            except Exception:  # one failing sink must not keep the others from flushing
                log.exception("closing record sink %r failed", sink)
        self.state.started = False

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.exception("gateway failed to start")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- dispatch --------------------------------------------------------------------------

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        route = anthropic_door.ROUTES.get(path)
        if route is not None:
            if route == "models":
                if method != "GET":
                    await self._reject(
                        send, anthropic_door, 405, f"{method} is not allowed on {path}; use GET"
                    )
                    return
                await self._models(scope, send)
                return
            if method != "POST":
                await self._reject(send, anthropic_door, 405, f"{method} is not allowed on {path}; use POST")
                return
            operation = Operation.MESSAGES if route == "messages" else Operation.COUNT_TOKENS
            await self._handle_call(
                scope,
                receive,
                send,
                anthropic_door,
                lambda raw, headers: anthropic_door.parse_call(raw, headers, operation),
                operation,
            )
            return
        if path.startswith(vertex_door.PREFIXES):
            where = vertex_door.match_path(path)
            if where is None:
                await self._reject(
                    send, vertex_door, 404, f"The requested URL {path} was not found on this server."
                )
                return
            if method != "POST":
                await self._reject(send, vertex_door, 405, f"{method} is not allowed on {path}; use POST")
                return
            await self._handle_call(
                scope,
                receive,
                send,
                vertex_door,
                lambda raw, headers: vertex_door.parse_call(raw, headers, where),
                where.operation,
            )
            return
        if path.startswith(bedrock_door.PREFIXES):
            await self._bedrock(scope, receive, send, path, method)
            return
        if path.startswith("/admin/"):
            await self._admin(scope, receive, send)
            return
        if path == "/ui" or path.startswith("/ui/"):
            await self._web_console(scope, receive, send)
            return
        if path in ("/health", "/healthz", "/livez"):
            await send_response(send, 200, orjson.dumps({"status": "ok", "version": __version__}))
            return
        if path == "/readyz":
            await self._readyz(send, method)
            return
        if path == "/metrics" and self.state.metrics is not None:
            await self._metrics(scope, send, method)
            return
        if path == "/health/deployments":
            await self._deployments(scope, send, method)
            return
        await self._reject(send, anthropic_door, 404, f"no route for {method} {path}")

    async def _bedrock(self, scope: Scope, receive: Receive, send: Send, path: str, method: str) -> None:
        raw_path: bytes = scope.get("raw_path") or path.encode()
        where = bedrock_door.match_path(raw_path)
        if where is not None:
            if method != "POST":
                await self._reject(send, bedrock_door, 405, f"{method} is not allowed on {path}; use POST")
                return
            await self._handle_call(
                scope,
                receive,
                send,
                bedrock_door,
                lambda raw, headers: bedrock_door.parse_call(raw, headers, where),
                where.operation,
            )
            return
        is_profiles, ident = bedrock_door.match_profiles(raw_path)
        if not is_profiles:
            await self._reject(send, bedrock_door, 404, f"Unknown operation {method} {path}")
            return
        if method != "GET":
            await self._reject(send, bedrock_door, 405, f"{method} is not allowed on {path}; use GET")
            return
        try:
            await self._principal(scope)
        except GatewayError as exc:
            await self._reject(send, bedrock_door, exc.status, exc.message)
            return
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        status, body, headers = bedrock_door.profiles_response(
            self.state.catalog, self.state.router.bedrock_region, ident, query
        )
        await send_response(send, status, body, headers)

    async def _admin(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The admin API, for admin keys only (the configured admin key or a store admin key)."""
        governor = self.state.governor
        if governor is None:
            await self._admin_error(send, 404, "not_found", "the admin API needs governance (the store)")
            return
        try:
            principal = await self._principal(scope)
        except GatewayError as exc:
            await self._admin_error(send, 401, "authentication_error", exc.message)
            return
        if not principal.is_admin:
            await self._admin_error(send, 403, "permission_error", "the admin API needs an admin key")
            return
        if self._admin_api is None:
            self._admin_api = AdminAPI(governor.store)
        await self._admin_api(scope, receive, send)

    async def _web_console(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The web console (cloudgate.console), signed in with an admin key like the admin API."""
        governor = self.state.governor
        if governor is None:
            await self._admin_error(send, 404, "not_found", "the web console needs governance (the store)")
            return
        if self._console is None:

            async def sign_in(key: str) -> Principal | None:
                scope = {"type": "http", "headers": [(b"x-api-key", key.encode("latin-1", "replace"))]}
                try:
                    return await self._principal(scope)
                except GatewayError:
                    return None

            self._console = Console(governor.store, sign_in, lambda: deployments_view(self.state.router))
        await self._console(scope, receive, send)

    async def _admin_error(self, send: Send, status: int, error_type: str, message: str) -> None:
        body = orjson.dumps({"error": {"type": error_type, "message": message}})
        await send_response(send, status, body)

    async def _reject(self, send: Send, door: ModuleType, status: int, message: str) -> None:
        code, body, headers = door.error_response(GatewayError(status, message))
        await send_response(send, code, body, headers)

    async def _deployments(self, scope: Scope, send: Send, method: str) -> None:
        """Every deployment with its health per model (any gateway key may look)."""
        if method != "GET":
            await self._reject(send, anthropic_door, 405, f"{method} is not allowed here; use GET")
            return
        try:
            await self._principal(scope)
        except GatewayError as exc:
            await self._reject(send, anthropic_door, exc.status, exc.message)
            return
        await send_response(send, 200, orjson.dumps(deployments_view(self.state.router)))

    async def _readyz(self, send: Send, method: str) -> None:
        """200 once started and while the store answers; 503 with the reason otherwise."""
        if method != "GET":
            await self._reject(send, anthropic_door, 405, f"{method} is not allowed here; use GET")
            return
        problem = None if self.state.started else "the gateway is not started (or is shutting down)"
        governor = self.state.governor
        if problem is None and governor is not None:
            problem = await store_problem(governor.store.engine)
        if (problem is None) != self._ready:
            self._ready = problem is None
            if problem is None:
                log.warning("ready again")
            else:
                log.warning("not ready: %s", problem)
        if problem is not None:
            await send_response(send, 503, orjson.dumps({"status": "unavailable", "reason": problem}))
            return
        await send_response(send, 200, orjson.dumps({"status": "ready", "version": __version__}))

    async def _metrics(self, scope: Scope, send: Send, method: str) -> None:
        """The Prometheus exposition; behind a gateway key when telemetry.metrics_require_key."""
        metrics = self.state.metrics
        assert metrics is not None
        if method != "GET":
            await self._reject(send, anthropic_door, 405, f"{method} is not allowed here; use GET")
            return
        if self.state.settings.telemetry.metrics_require_key:
            try:
                await self._principal(scope)
            except GatewayError as exc:
                await self._reject(send, anthropic_door, exc.status, exc.message)
                return
        accept = headers_dict(scope).get("accept", "")
        body, content_type = metrics.render(accept)
        await send_response(send, 200, body, [(b"content-type", content_type.encode("latin-1"))])

    async def _models(self, scope: Scope, send: Send) -> None:
        try:
            await self._principal(scope)
        except GatewayError as exc:
            await self._reject(send, anthropic_door, exc.status, exc.message)
            return
        if self._models_body is None:
            self._models_body = anthropic_door.models_body(
                self.state.catalog, self.state.settings.models.aliases
            )
        await send_response(send, 200, self._models_body)

    # -- one Messages call -----------------------------------------------------------------

    async def _handle_call(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        door: ModuleType,
        parse: Parser,
        operation: Operation,
    ) -> None:
        record = RequestRecord(
            request_id=new_request_id(),
            started_at=time.time(),
            frontdoor=door.WIRE.value,
            operation=operation.value,
        )
        started = time.perf_counter()
        context = RequestContext(record.request_id, started)
        token = enter_request(context)  # log lines and sinks below know which request this is
        try:
            await self._serve_call(scope, receive, send, door, parse, record, context)
        except GatewayError as err:
            await self._fail(send, door, err, record)
        except proxy.ClientDisconnected:
            record.status = 499
            record.error_type = "client_disconnected"
        except Exception as exc:
            log.exception("request %s failed unexpectedly", record.request_id)
            await self._fail(send, door, proxy.error_for_unexpected(exc), record)
        finally:
            record.duration_ms = (time.perf_counter() - started) * 1000
            for sink in self.state.sinks:
                try:
                    sink.emit(record)
                except Exception:  # a failing sink must not fail the request
                    log.exception("record sink %r failed", sink)
            leave_request(token)

    async def _serve_call(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        door: ModuleType,
        parse: Parser,
        record: RequestRecord,
        context: RequestContext,
    ) -> None:
        state = self.state
        signed = door is bedrock_door and is_sigv4(scope)
        principal: Principal | None = None
        if not signed:  # reject unauthenticated callers before reading their bodies
            principal = await self._principal(scope)
        try:
            raw = await read_body(scope, receive, self._max_body)
        except BodyTooLarge:
            raise GatewayError(
                413, f"request body is larger than the gateway's limit of {self._max_body} bytes"
            ) from None
        except ClientGone:
            raise proxy.ClientDisconnected from None
        if signed:  # a SigV4 signature covers the body
            principal = await self._principal(scope, raw)
        assert principal is not None
        record.caller = principal.key_id
        headers = headers_dict(scope)
        if state.activity is not None:
            state.activity.observe(record, principal, headers, raw, scope.get("client"))
        call = parse(raw, headers)
        call.request_id = record.request_id
        record.model = call.model
        record.stream = call.stream
        record.session_id = headers.get("x-claude-code-session-id")
        # Our request id goes upstream too, so the cloud's logs can be joined with ours.
        call.passthrough_headers["x-cloudgate-request-id"] = record.request_id
        for name in ("x-claude-code-session-id", "x-claude-code-agent-id"):
            if name in headers:
                call.passthrough_headers[name] = headers[name]
        if state.tracing:
            context.traceparent = headers.get("traceparent")
            max_tokens = call.body.get("max_tokens")
            context.max_tokens = max_tokens if isinstance(max_tokens, int) else None

        plan = state.router.plan(call, principal)
        if caching.apply_cache_policy(call.body, state.settings.caching, state.router.family(plan.model)):
            call.raw_body = b""
        proxy.aim(record, plan.first_target)
        record.betas = call.betas
        governor = state.governor
        ticket = (
            await governor.admit(principal, call, plan.targets(), record, len(raw))
            if governor is not None
            else None
        )
        cost = None
        if ticket is not None and governor is not None:
            priced = ticket

            def cost(usage: Usage, target: Target) -> int:
                return governor.price(priced, usage, target)

        metrics = state.metrics if call.stream else None
        if metrics is not None:
            metrics.open_streams += 1
        context.upstream_at = time.perf_counter()
        try:
            await proxy.forward(state.providers, plan, call, record, receive, send, cost)
        except GatewayError as err:
            record.status, record.error_type, record.error_message = err.status, err.error_type, err.message
            raise
        except proxy.ClientDisconnected:
            record.status, record.error_type = 499, "client_disconnected"
            raise
        finally:
            if metrics is not None:
                metrics.open_streams -= 1
            if ticket is not None and governor is not None:
                await governor.finish(ticket, record, call.operation.value)

    async def _principal(self, scope: Scope, signed_body: bytes | None = None) -> Principal:
        """Who is calling: a configured key, the admin key, or a key from the store."""
        governor = self.state.governor
        if governor is None or signed_body is not None:
            return self._configured(self._authenticate(scope, signed_body))
        caller = self.state.auth.match(scope)
        if caller is None:
            principal = await governor.principal(
                presented_keys(scope, self.state.settings.gateway.auth_header)
            )
            if principal is not None:
                return principal
            caller = self._authenticate(scope)  # raises: says whether the key is missing or wrong
        return self._configured(caller)

    def _configured(self, caller: Caller) -> Principal:
        """The principal of a configured key (the same object each time: they never change)."""
        principal = self._configured_principals.get(caller.key_id)
        if principal is None:
            kid = caller.key_id
            principal = Principal(key_id=kid, key_prefix=kid, is_admin=kid == "admin")
            if len(self._configured_principals) < 4096:  # (SigV4 access key ids are the caller's)
                self._configured_principals[caller.key_id] = principal
        return principal

    def upstream_host(self, provider: str, deployment: str, region: str) -> str | None:
        """The host a deployment's requests go to (`server.address` on trace spans)."""
        spec = self.state.router.table.get(deployment)
        providers = self.state.providers
        upstream = (providers.get(spec.account) if spec is not None else None) or providers.get(provider)
        base_url_for = getattr(upstream, "base_url_for", None)
        if callable(base_url_for):
            url = str(base_url_for(region))
        else:  # the Anthropic API has one base URL
            url = str(getattr(getattr(upstream, "settings", None), "base_url", "") or "")
        return urlsplit(url).hostname

    def _authenticate(self, scope: Scope, signed_body: bytes | None = None) -> Caller:
        try:
            if signed_body is not None:
                return self.state.auth.authenticate_sigv4(scope, signed_body)
            return self.state.auth.authenticate(scope)
        except AuthError as exc:
            err = GatewayError(401, str(exc))
            if exc.aws_code:  # keep AWS's own exception name for signature failures
                err.raw_body = aws_error_body(str(exc))
                err.raw_shape = "aws"
                err.status = 403
                err.headers["x-amzn-errortype"] = exc.aws_code
            raise err from None

    async def _fail(self, send: Send, door: ModuleType, err: GatewayError, record: RequestRecord) -> None:
        record.status = err.status
        record.error_type = err.error_type
        record.error_message = err.message
        if isinstance(err, InvalidJSON) and door is vertex_door:
            err.raw_body = None  # Vertex reports unreadable JSON in Google's envelope
        status, body, headers = door.error_response(err)
        rid = record.request_id.encode()
        headers = [*headers, (b"x-cloudgate-request-id", rid)]
        if door is bedrock_door:
            headers.append((b"x-amzn-requestid", rid))
        try:
            await send_response(send, status, body, headers)
        except Exception:  # the response may have started; nothing more can be said
            log.debug("could not send error response for %s", record.request_id, exc_info=True)


def build_provider(
    settings: Settings, transport: Transport, spec: DeploymentSettings | None = None
) -> Provider:
    """The upstream named by `settings.provider` (or by `spec`, with its own credentials and
    endpoint), ready to `start()`."""
    kind = spec.provider if spec is not None else settings.provider
    if kind == "bedrock":
        from cloudgate.providers.bedrock import BedrockProvider

        bedrock = settings.bedrock
        if spec is not None:
            bedrock = bedrock.model_copy(update=_overrides(spec, profile="profile", api_key="api_key"))
        return BedrockProvider(bedrock, transport)
    if kind == "anthropic":
        from cloudgate.providers.anthropic import AnthropicProvider

        anthropic = settings.anthropic
        if spec is not None:
            anthropic = anthropic.model_copy(update=_overrides(spec, api_key="api_key"))
        return AnthropicProvider(anthropic, transport)
    from cloudgate.providers.vertex import VertexProvider

    vertex = settings.vertex
    if spec is not None:
        vertex = vertex.model_copy(update=_overrides(spec, credentials_file="credentials_file"))
    return VertexProvider(vertex, transport)


def _overrides(spec: DeploymentSettings, **fields: str) -> dict[str, object]:
    update: dict[str, object] = {}
    for ours, theirs in fields.items():
        value = getattr(spec, ours)
        if value:
            update[theirs] = value
    if spec.base_url:
        update["base_url"] = spec.base_url
    return update


def build_providers(settings: Settings, transport: Transport) -> dict[str, Provider]:
    """One provider per account the deployments use: the configured provider, the fallback
    providers, and every explicit deployment's (shared when credentials and endpoint match)."""
    providers: dict[str, Provider] = {}
    routing = settings.routing
    if not routing.deployments:
        for kind in [settings.provider, *routing.fallback_providers]:
            if kind not in providers:
                providers[kind] = build_provider(settings.model_copy(update={"provider": kind}), transport)
    for spec in routing.deployments:
        key = account_key(spec)
        if key not in providers:
            providers[key] = build_provider(settings, transport, spec)
    return providers


def deployments_view(router: Router) -> dict[str, object]:
    """What GET /health/deployments answers: each deployment with its health per model."""
    health: dict[str, list[dict[str, object]]] = {}
    for entry in router.board.snapshot():
        health.setdefault(str(entry["deployment"]), []).append(entry)
    deployments = []
    degraded = False
    for deployment in router.table.all():
        view = deployment.describe()
        entries = health.get(deployment.name, [])
        view["health"] = entries
        degraded = degraded or any(e["state"] in ("cooling", "half-open") for e in entries)
        deployments.append(view)
    return {"status": "degraded" if degraded else "ok", "deployments": deployments}


def create_gateway_app(
    settings: Settings,
    *,
    catalog: Catalog | None = None,
    providers: dict[str, Provider] | None = None,
    sinks: list[RecordSink] | None = None,
    transport: Transport | None = None,
    governance: bool | None = None,
) -> GatewayApp:
    """Build the gateway from settings. Providers default to the configured upstream; with
    `governance` (default: `settings.governance`) keys, budgets, limits and spend live in the store."""
    if governance is None:
        governance = settings.governance
    if catalog is None:
        catalog = Catalog.from_file(settings.catalog_file) if settings.catalog_file else default_catalog()
    t = settings.gateway.timeouts
    transport = transport or Transport(
        limit=settings.gateway.max_upstream_connections,
        timeouts=Timeouts(connect=t.connect, first_byte=t.first_byte, idle=t.idle, total=t.total),
    )
    if providers is None:
        providers = build_providers(settings, transport)
    if sinks is None:
        sinks = [JsonLinesSink(settings.gateway.request_log)] if settings.gateway.log_requests else []
    state = GatewayState(
        settings=settings,
        catalog=catalog,
        transport=transport,
        providers=providers,
        router=Router(settings, catalog),
        auth=KeyAuthenticator(settings.gateway, admin_key=settings.admin_key, store_keys=governance),
        sinks=list(sinks),
        governor=Governor(settings, catalog) if governance else None,
    )
    if settings.activity.enabled:
        governor = state.governor
        state.activity = (
            ActivityLog(settings, governor.store, database=governor.write_activity)
            if governor is not None
            else ActivityLog(settings, None)
        )
        state.sinks.append(state.activity)
    app = GatewayApp(state)
    telemetry = settings.telemetry
    if telemetry.metrics:
        # Read through `state`: startup may replace the router once the AWS region is known.
        state.metrics = metrics_sink(lambda: state.router, model_name=catalog.anthropic_id)
        state.sinks.append(state.metrics)
    tracer = build_trace_sink(telemetry, app.upstream_host)
    if tracer is not None:
        state.sinks.append(tracer)
        state.tracing = True
    return app
