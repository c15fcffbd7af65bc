"""EmulatorConfig: every knob of the emulator, loadable from YAML with the same field names."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from cloudgate.catalog import default_catalog
from cloudgate.emulator.faults import Fault


def same_model(a: str, b: str) -> bool:
    """Whether two spellings (Anthropic, Vertex, Bedrock id, alias) name the same model."""
    if a == b:
        return True
    catalog = default_catalog()
    entry = catalog.lookup(a)
    return entry is not None and entry is catalog.lookup(b)


@dataclass(slots=True, frozen=True)
class AuthorizedUser:
    """A `gcloud auth application-default login` identity the refresh_token grant accepts."""

    client_id: str
    client_secret: str
    refresh_token: str


@dataclass(slots=True)
class EmulatorConfig:
    """How the emulator behaves.

    stream_delay: seconds between SSE events (0 = as fast as possible).
    token_ttl: lifetime in seconds of the access tokens it issues.
    require_auth: whether Vertex calls need a valid bearer token.
    static_tokens: bearer tokens accepted without ever being issued.
    service_account_files: key files whose public keys the token endpoint trusts (read lazily,
        so a file may be written after the app is created).
    trusted_keys: key-file contents trusted the same way (see `trust_key`).
    authorized_users: client_id/client_secret/refresh_token triples for the refresh_token grant.
    projects: if non-empty, the only projects allowed; others get 403 PERMISSION_DENIED.
    script: path to a YAML/JSON turns file, or the turns inline (a list); None = default replies.
    faults: faults active from the start.
    fault_seed: seed of the draws of faults with a `probability` (None = a fresh seed each run),
        so a soak test can replay the same hits.
    strict_models: False serves unknown `claude-*` ids everywhere; True answers 404 for them.
    count_tokens_global: whether count-tokens works at location `global` (False -> 404).
    min_cacheable_tokens: the smallest prefix the prompt cache stores.
    metadata_project / metadata_email: what the GCE metadata server reports.
    aws_credentials: access key id -> secret access key that Bedrock's SigV4 check accepts;
        a value may also be `{"secret": ..., "session_token": ...}` for session credentials
        (the request must then carry that `x-amz-security-token`).
    bedrock_api_keys: Bedrock API keys accepted as `Authorization: Bearer <key>`.
    anthropic_api_keys: Anthropic API keys accepted as `x-api-key` or `Authorization: Bearer`.
    aws_region: the Bedrock region of requests that name none (Bedrock API keys, unsigned calls,
        unless their Host is a real `bedrock-runtime.{region}.amazonaws.com`); a signed request
        is served in the region its signature is scoped to.
    aws_account_id: the account Bedrock ARNs name (inference profiles, models).
    application_profiles: application-inference-profile ARN (or its id) -> the model id or
        system profile it routes to; others answer 404 ResourceNotFoundException.
    disabled_models: project -> models (any spelling) not enabled for it in Model Garden; Vertex
        answers them with its 404 "was not found or your project does not have access to it".
    api_disabled_projects: projects where the Vertex AI API (aiplatform.googleapis.com) is not
        enabled; Vertex answers 403 SERVICE_DISABLED.
    bedrock_denied_models: models (any spelling) the AWS account has not been granted access
        to; Bedrock answers 403 AccessDeniedException.
    """

    stream_delay: float = 0.0
    token_ttl: int = 3600
    require_auth: bool = True
    static_tokens: list[str] = field(default_factory=list)
    service_account_files: list[str] = field(default_factory=list)
    trusted_keys: list[dict[str, Any]] = field(default_factory=list)
    authorized_users: list[AuthorizedUser] = field(default_factory=list)
    projects: list[str] = field(default_factory=list)
    script: str | list[dict[str, Any]] | None = None
    faults: list[Fault] = field(default_factory=list)
    fault_seed: int | None = None
    strict_models: bool = False
    count_tokens_global: bool = False
    min_cacheable_tokens: int = 1024
    metadata_project: str = "emulated-project"
    metadata_email: str = "cloudgate-test@emulated-project.iam.gserviceaccount.com"
    aws_credentials: dict[str, str | dict[str, str]] = field(default_factory=dict)
    bedrock_api_keys: list[str] = field(default_factory=list)
    anthropic_api_keys: list[str] = field(default_factory=list)
    aws_region: str = "us-east-1"
    aws_account_id: str = "123456789012"
    application_profiles: dict[str, str] = field(default_factory=dict)
    disabled_models: dict[str, list[str]] = field(default_factory=dict)
    api_disabled_projects: list[str] = field(default_factory=list)
    bedrock_denied_models: list[str] = field(default_factory=list)

    def aws_secret(self, access_key_id: str) -> str | None:
        """The secret for an access key id (None when unknown)."""
        value = self.aws_credentials.get(access_key_id)
        if isinstance(value, dict):
            secret = value.get("secret")
            return secret if isinstance(secret, str) else None
        return value

    def aws_session_token(self, access_key_id: str) -> str | None:
        """The session token an access key id must come with (None for long-term keys)."""
        value = self.aws_credentials.get(access_key_id)
        return value.get("session_token") if isinstance(value, dict) else None

    def model_disabled(self, project: str, model: str) -> bool:
        """Whether `model` is not enabled for `project` in Model Garden (`disabled_models`)."""
        return any(same_model(listed, model) for listed in self.disabled_models.get(project, ()))

    def bedrock_access_denied(self, model: str) -> bool:
        """Whether the account has no access to `model` on Bedrock (`bedrock_denied_models`)."""
        return any(same_model(listed, model) for listed in self.bedrock_denied_models)

    def trust_key(self, info: dict[str, Any]) -> None:
        """Trust a service-account key given as parsed key-file JSON."""
        self.trusted_keys.append(dict(info))

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, base_dir: Path | None = None) -> EmulatorConfig:
        """Build a config from parsed YAML/JSON; relative paths resolve against `base_dir`."""
        if not isinstance(data, dict):
            raise ValueError("emulator config must be a mapping")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown emulator setting(s): {', '.join(sorted(unknown))}")
        values = dict(data)
        values["faults"] = [
            f if isinstance(f, Fault) else Fault.from_dict(f) for f in data.get("faults") or []
        ]
        values["authorized_users"] = [
            u if isinstance(u, AuthorizedUser) else AuthorizedUser(**u)
            for u in data.get("authorized_users") or []
        ]
        for key in (
            "static_tokens", "service_account_files", "projects", "trusted_keys",
            "bedrock_api_keys", "anthropic_api_keys", "api_disabled_projects", "bedrock_denied_models",
        ):  # fmt: skip
            values[key] = list(data.get(key) or [])
        for key in ("aws_credentials", "application_profiles"):
            mapping = data.get(key) or {}
            if not isinstance(mapping, dict):
                raise ValueError(f"emulator setting {key!r} must be a mapping")
            values[key] = {str(k): v if isinstance(v, dict) else str(v) for k, v in mapping.items()}
        disabled = data.get("disabled_models") or {}
        if not isinstance(disabled, dict) or not all(isinstance(v, list) for v in disabled.values()):
            raise ValueError("emulator setting 'disabled_models' must map a project to a list of models")
        values["disabled_models"] = {str(k): [str(m) for m in v] for k, v in disabled.items()}
        seed = data.get("fault_seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"emulator setting 'fault_seed' must be an integer, not {seed!r}")
        if base_dir is not None:
            values["service_account_files"] = [str(base_dir / p) for p in values["service_account_files"]]
            if isinstance(values.get("script"), str):
                values["script"] = str(base_dir / values["script"])
        return cls(**values)

    @classmethod
    def from_file(cls, path: str | Path) -> EmulatorConfig:
        """Load a config from a YAML file with the same field names."""
        path = Path(path)
        with path.open(encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
        return cls.from_dict(data, base_dir=path.parent)
