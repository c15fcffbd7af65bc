"""The typed settings model. Every field is documented in docs/user-guide.md."""

from __future__ import annotations

import ipaddress
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TimeoutSettings(_Section):
    """Upstream timeouts in seconds (see cloudgate.providers.transport)."""

    connect: float = Field(10.0, gt=0)
    first_byte: float = Field(600.0, gt=0)
    idle: float = Field(300.0, gt=0)
    total: float | None = Field(3600.0, gt=0)


class GatewaySettings(_Section):
    """The listening side: address, caller authentication, limits."""

    host: str = "127.0.0.1"
    port: int = Field(8900, ge=0, le=65535)
    # Worker processes `cloudgate serve` runs, sharing the listening socket (one per core).
    workers: int = Field(1, ge=1)
    # Keys callers present as `Authorization: Bearer`, `x-api-key`, or in `auth_header`.
    keys: list[str] = Field(default_factory=list)
    # An extra header to read the key from, e.g. `Proxy-Authorization` when the client puts
    # its own cloud token in `Authorization`. A `Bearer ` prefix in its value is accepted.
    auth_header: str | None = None
    # Serve without keys. Refused unless `host` is a loopback address.
    allow_keyless: bool = False
    max_body_bytes: int = Field(32 * 1024 * 1024, gt=0)
    timeouts: TimeoutSettings = Field(default_factory=TimeoutSettings)
    # Open upstream connections at most (per process); a request past it waits for one. Every
    # streaming answer holds one for its whole length. 0: no limit but the process's open files.
    max_upstream_connections: int = Field(10_000, ge=0)
    # Write one JSON line per request (usage included), to `request_log` or standard error.
    log_requests: bool = True
    request_log: str | None = None

    @field_validator("keys")
    @classmethod
    def _non_empty_keys(cls, keys: list[str]) -> list[str]:
        if any(not k.strip() for k in keys):
            raise ValueError("gateway keys must be non-empty strings")
        return [k.strip() for k in keys]

    @property
    def is_loopback(self) -> bool:
        """Whether `host` only accepts connections from this machine."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


class VertexSettings(_Section):
    """The Vertex AI upstream."""

    project_id: str | None = None
    # CLOUD_ML_REGION: `global`, a multi-region (`us`, `eu`) or a region such as `us-east5`.
    region: str = "us-east5"
    # Model-id prefix -> region, e.g. {"claude-3-5-haiku": "us-east5"}; the longest prefix
    # wins. VERTEX_REGION_* variables land here under the prefixes Claude Code uses.
    region_overrides: dict[str, str] = Field(default_factory=dict)
    # One base URL for every region (like ANTHROPIC_VERTEX_BASE_URL for the SDK), or None for
    # Google's own hosts. `base_urls` maps a single region to its own base URL and wins.
    base_url: str | None = None
    base_urls: dict[str, str] = Field(default_factory=dict)
    # A service-account key or authorized-user file; else Application Default Credentials.
    credentials_file: str | None = None
    # A fixed OAuth access token instead of credentials (short-lived tests, tokens from outside).
    access_token: str | None = None
    anthropic_version: str = "vertex-2023-10-16"
    # Where to count tokens when `region` is `global` and the global endpoint refuses it.
    count_tokens_region: str = "us-east5"
    # Use the region in a Vertex-format caller's URL instead of the configured one.
    honor_client_region: bool = False
    # Refresh the OAuth token this many seconds before it expires.
    token_refresh_margin: float = Field(300.0, ge=0)
    # Betas to drop in addition to the built-in table of betas Vertex rejects.
    drop_betas: list[str] = Field(default_factory=list)

    @field_validator("region", "count_tokens_region")
    @classmethod
    def _valid_region(cls, region: str) -> str:
        region = region.strip()
        if not region or any(c in region for c in "/. "):
            raise ValueError(f"not a Vertex location: {region!r}")
        return region


INFERENCE_PROFILES = frozenset({"auto", "none", "global", "us", "eu", "apac", "jp", "au", "us-gov", "ca"})


def _inference_profile(value: str) -> str:
    if value not in INFERENCE_PROFILES:
        raise ValueError(f"inference_profile must be one of {sorted(INFERENCE_PROFILES)}")
    return value


class BedrockSettings(_Section):
    """The Amazon Bedrock upstream."""

    # AWS_REGION, then AWS_DEFAULT_REGION, then the profile's region, then us-east-1.
    region: str | None = None
    # A named profile from ~/.aws/config and ~/.aws/credentials (AWS_PROFILE); None = default chain.
    profile: str | None = None
    # Runtime base URL; default https://bedrock-runtime.{region}.amazonaws.com.
    base_url: str | None = None
    # A Bedrock API key (AWS_BEARER_TOKEN_BEDROCK): sent as `Authorization: Bearer` instead of SigV4.
    api_key: str | None = None
    # Inference profile for model ids: "auto" (prefix from the region, as Claude Code picks it),
    # "none" (base ids, on-demand throughput), or a prefix: global, us, eu, apac, jp, au, us-gov.
    inference_profile: str = "auto"
    anthropic_version: str = "bedrock-2023-05-31"
    drop_betas: list[str] = Field(default_factory=list)

    @field_validator("inference_profile")
    @classmethod
    def _valid_profile(cls, value: str) -> str:
        return _inference_profile(value)


class AnthropicSettings(_Section):
    """The Anthropic API upstream."""

    base_url: str = "https://api.anthropic.com"
    api_key: str | None = None  # sent as x-api-key
    auth_token: str | None = None  # sent as Authorization: Bearer
    # A shell command whose output is the key (Claude Code's apiKeyHelper), cached for
    # `api_key_helper_ttl_ms` and re-run after a 401.
    api_key_helper: str | None = None
    api_key_helper_ttl_ms: int = Field(300_000, gt=0)
    drop_betas: list[str] = Field(default_factory=list)


class StoreSettings(_Section):
    """Where keys, users, teams, budgets and spend live."""

    # SQLAlchemy URL: sqlite+aiosqlite:///path (the embedded default: cloudgate.db in the data
    # directory) or postgresql+asyncpg://user@host/db.
    url: str | None = None
    # Apply pending migrations when the gateway starts (else `cloudgate db upgrade`).
    migrate_on_start: bool = True
    # Where the spend journal lives (crash safety); default: the data directory.
    journal_dir: str | None = None
    # Spend rows are written in batches this often (seconds), or at once past `spend_batch_size`
    # waiting. Fewer, larger writes cost less CPU per request (decision 0036); the journal keeps
    # what is waiting safe from a crash.
    spend_flush_interval: float = Field(1.0, gt=0)
    spend_batch_size: int = Field(2048, ge=1)
    # Who writes spend rows, rollups and activity entries to the database: a child process the
    # gateway starts ("process": the event loop only encodes each batch, decision 0038), or the
    # gateway's own event loop and database thread ("inline": one process, slower under load).
    writer: Literal["process", "inline"] = "process"


class ModelSettings(_Section):
    """What model names mean (Claude Code's ANTHROPIC_*MODEL variables)."""

    default: str | None = None  # ANTHROPIC_MODEL: what the alias `default` resolves to
    small_fast: str | None = None  # ANTHROPIC_SMALL_FAST_MODEL
    opus: str | None = None  # ANTHROPIC_DEFAULT_OPUS_MODEL: what `opus` resolves to
    sonnet: str | None = None  # ANTHROPIC_DEFAULT_SONNET_MODEL
    haiku: str | None = None  # ANTHROPIC_DEFAULT_HAIKU_MODEL
    # Further aliases: name -> model id (any platform's spelling).
    aliases: dict[str, str] = Field(default_factory=dict)


class CachingSettings(_Section):
    """Prompt caching (Claude Code's DISABLE_PROMPT_CACHING* and ENABLE_PROMPT_CACHING_1H)."""

    disable: bool = False
    disable_opus: bool = False
    disable_sonnet: bool = False
    disable_haiku: bool = False
    # Give `cache_control` markers without a `ttl` the one-hour TTL.
    ttl_1h: bool = False


ProviderName = Literal["vertex", "bedrock", "anthropic"]

_PLACE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


def _places(values: list[str] | None, what: str) -> list[str] | None:
    if values is None:
        return None
    cleaned = [v.strip().lower() for v in values]
    bad = [v for v in cleaned if not _PLACE.match(v)]
    if bad:
        raise ValueError(f"not a region or geography name in {what}: {', '.join(map(repr, bad))}")
    return cleaned


class DeploymentSettings(_Section):
    """One place a model can run: provider + project/account + region, and how to use it."""

    # A name for logs, health and spend; default `provider/region` (plus project when set).
    name: str | None = None
    provider: ProviderName
    # Vertex location or AWS region; default: the provider section's.
    region: str | None = None
    # Vertex project; default: the vertex section's, then the one the credentials name.
    project: str | None = None
    # Bedrock inference profile for this deployment (as bedrock.inference_profile).
    inference_profile: str | None = None
    # Models served here (ids, any platform's spelling, or aliases); None: every model the
    # catalog lists for this provider and region.
    models: list[str] | None = None
    # Model -> the upstream id to send here, overriding the catalog's.
    model_ids: dict[str, str] = Field(default_factory=dict)
    # Lower priorities are tried first; equal ones share traffic by `weight`.
    priority: int = 0
    weight: float = Field(1.0, gt=0)
    # The most requests in flight here; adaptive concurrency stays at or below it.
    max_concurrency: int | None = Field(None, ge=1)
    # Requests per minute sent here at most (a known quota): beyond it, other deployments first.
    rpm: int | None = Field(None, ge=1)
    timeouts: TimeoutSettings | None = None
    # Credentials and endpoint of this deployment when they differ from the provider section's.
    credentials_file: str | None = None  # vertex
    profile: str | None = None  # bedrock (AWS_PROFILE)
    api_key: str | None = None  # bedrock API key or Anthropic API key
    base_url: str | None = None

    @field_validator("inference_profile")
    @classmethod
    def _valid_profile(cls, value: str | None) -> str | None:
        return None if value is None else _inference_profile(value)

    @property
    def label(self) -> str:
        """The deployment's name, given or derived."""
        if self.name:
            return self.name
        parts: list[str] = [self.provider]
        if self.project:
            parts.append(self.project)
        if self.region:
            parts.append(self.region)
        if self.inference_profile and self.inference_profile not in ("auto", "none"):
            parts.append(self.inference_profile)
        return "/".join(parts)


class RoutingSettings(_Section):
    """Deployments, failover, retries, health and affinity (see docs/user-guide.md#routing)."""

    # Explicit deployments; empty: derived from the provider sections and the catalog.
    deployments: list[DeploymentSettings] = Field(default_factory=list)
    # For derived deployments: where a model may also be served when its region fails.
    # none: only the configured region; same-geography: other catalog locations in the same
    # geography (us-east5 -> us, other us-* regions); any: every catalog location, global first.
    fallback: Literal["none", "same-geography", "any"] = "same-geography"
    # Further providers whose derived deployments follow the main one's (cross-provider failover).
    fallback_providers: list[ProviderName] = Field(default_factory=list)
    # Within one priority: cost (cheapest first, e.g. global before regional) or weight only.
    order: Literal["cost", "weight"] = "cost"
    # Regions (or geographies: us, eu, apac, global) every request must stay in; None: anywhere.
    allowed_regions: list[str] | None = None
    # Upstream attempts per request, failovers included.
    max_attempts: int = Field(4, ge=1, le=20)
    # Backoff before going round the deployments again: capped exponential with full jitter.
    backoff_initial: float = Field(0.5, ge=0)
    backoff_max: float = Field(8.0, ge=0)
    # The most one request waits in backoff, retry-after included; longer waits are the caller's.
    max_retry_wait: float = Field(15.0, ge=0)
    # Consecutive failures that put a deployment in cooldown, and for how long (doubling on
    # each failed probe up to cooldown_max).
    cooldown_failures: int = Field(3, ge=1)
    cooldown_seconds: float = Field(30.0, gt=0)
    cooldown_max: float = Field(300.0, gt=0)
    # How long a model a deployment answered 404 for is skipped there.
    not_found_seconds: float = Field(600.0, gt=0)
    # Adaptive concurrency per deployment: halves on 429/529, grows back by one per success.
    adaptive_concurrency: bool = True
    # Requests in flight per deployment and model at most (every stream counts for its length).
    max_concurrency: int = Field(10_000, ge=1)
    # Keep a session (x-claude-code-session-id, else the prompt prefix) on one deployment.
    affinity: bool = True
    affinity_ttl: float = Field(3600.0, gt=0)

    @field_validator("allowed_regions")
    @classmethod
    def _valid_regions(cls, values: list[str] | None) -> list[str] | None:
        return _places(values, "routing.allowed_regions")


class ActivitySettings(_Section):
    """The activity log: one entry per request, kept `retention_days` days."""

    enabled: bool = True
    # Where entries go: the store's database, rotating JSON-lines files, or both.
    sink: Literal["database", "files", "both"] = "database"
    # Directory of the JSON-lines files; default <data_dir>/activity.
    directory: str | None = None
    # A file is closed and a new one started past this size.
    rotate_bytes: int = Field(64 * 1024 * 1024, gt=0)
    retention_days: float = Field(30.0, gt=0)
    # How often the retention job runs, and how many rows it deletes per statement.
    retention_interval: float = Field(3600.0, gt=0)
    retention_batch: int = Field(2000, ge=1)
    # Keep full request and response bodies for every request (keys and teams can ask too).
    log_bodies: bool = False
    # Bodies longer than this are cut (and marked as cut).
    max_body_bytes: int = Field(1024 * 1024, gt=0)
    # Extra regular expressions whose matches are replaced by [REDACTED] in kept bodies and
    # headers; keys, tokens and credentials are always redacted.
    redact_patterns: list[str] = Field(default_factory=list)
    # Entries are written in batches this often (seconds), or at once past `batch_size`.
    # Fewer, larger writes cost less CPU per request (decision 0036).
    flush_interval: float = Field(1.0, gt=0)
    batch_size: int = Field(2048, ge=1)

    @field_validator("redact_patterns")
    @classmethod
    def _valid_patterns(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid redaction pattern {pattern!r}: {exc}") from None
        return patterns


class TelemetrySettings(_Section):
    """Metrics, log format and traces (docs/user-guide.md#metrics-logs-and-traces)."""

    # Serve Prometheus metrics at /metrics.
    metrics: bool = True
    # Ask for a gateway key on /metrics (Prometheus then sends one as a bearer token).
    metrics_require_key: bool = False
    # text: plain log lines; json: one JSON object per line, with the request id.
    log_format: Literal["text", "json"] = "text"
    # OTLP/HTTP endpoint for OpenTelemetry traces (OTEL_EXPORTER_OTLP_ENDPOINT); None: no traces.
    otlp_endpoint: str | None = None
    otlp_headers: dict[str, str] = Field(default_factory=dict)
    service_name: str = "cloudgate"


class Settings(_Section):
    """All of cloudgate's settings."""

    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    # The upstream every call goes to: vertex, bedrock or anthropic.
    provider: Literal["vertex", "bedrock", "anthropic"] = "vertex"
    vertex: VertexSettings = Field(default_factory=VertexSettings)
    bedrock: BedrockSettings = Field(default_factory=BedrockSettings)
    anthropic: AnthropicSettings = Field(default_factory=AnthropicSettings)
    models: ModelSettings = Field(default_factory=ModelSettings)
    caching: CachingSettings = Field(default_factory=CachingSettings)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    activity: ActivitySettings = Field(default_factory=ActivitySettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    # Keys from the store, budgets, rate limits and the spend log. False: a plain forwarding
    # gateway that checks only `gateway.keys` and records nothing in a database (no store).
    governance: bool = True
    # Redis for counters shared by several gateway processes (budgets, rate limits); None keeps
    # them in this process's memory.
    redis_url: str | None = None
    # The admin (master) key for the admin API; keys for callers live in the store.
    admin_key: str | None = None
    # Where cloudgate keeps its files (SQLite database, spend journal); default
    # $XDG_DATA_HOME/cloudgate or ~/.local/share/cloudgate.
    data_dir: str | None = None
    # A catalog file replacing the built-in one (same format as cloudgate/catalog/models.yaml).
    catalog_file: str | None = None
    log_level: str = "INFO"
