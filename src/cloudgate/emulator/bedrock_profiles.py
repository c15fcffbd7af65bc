"""Bedrock's control plane, the part Claude Code calls at start-up: inference profiles.

Real host `bedrock.{region}.amazonaws.com`; here the same port as everything else. Shapes follow
botocore's `bedrock` service model (ListInferenceProfiles, GetInferenceProfile).
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Any

from cloudgate.catalog import default_catalog
from cloudgate.emulator.bedrock import authenticate, aws_error, geography_serves, request_region, validation
from cloudgate.emulator.wire import Request, Response, json_response

if TYPE_CHECKING:
    from cloudgate.emulator.app import EmulatorState

PROFILES_PATH = "/inference-profiles"
# Geography prefix -> (name prefix, regions the profile routes to; None = the caller's region).
_GEOGRAPHIES: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "us": ("US", ("us-east-1", "us-east-2", "us-west-2")),
    "eu": ("EU", ("eu-central-1", "eu-west-1", "eu-west-3")),
    "apac": ("APAC", ("ap-northeast-1", "ap-southeast-1", "ap-southeast-2")),
    "global": ("Global", None),
}
_CREATED = "2025-01-01T00:00:00Z"
_MAX_RESULTS = 1000


def is_profiles_path(path: str) -> bool:
    """Whether a (percent-decoded) path is an inference-profile endpoint."""
    return path == PROFILES_PATH or path.startswith(PROFILES_PATH + "/")


def _profile(prefix: str, base_id: str, name: str, state: EmulatorState, region: str) -> dict[str, Any]:
    label, regions = _GEOGRAPHIES[prefix]
    profile_id = f"{prefix}.{base_id}"
    routed = regions or (region,)
    return {
        "inferenceProfileName": f"{label} {name}",
        "description": f"Routes requests to {name} in {', '.join(routed)}.",
        "createdAt": _CREATED,
        "updatedAt": _CREATED,
        "inferenceProfileArn": (
            f"arn:aws:bedrock:{region}:{state.config.aws_account_id}:inference-profile/{profile_id}"
        ),
        "models": [{"modelArn": f"arn:aws:bedrock:{r}::foundation-model/{base_id}"} for r in routed],
        "inferenceProfileId": profile_id,
        "status": "ACTIVE",
        "type": "SYSTEM_DEFINED",
    }


def _application_profile(key: str, target: str, state: EmulatorState, region: str) -> dict[str, Any]:
    prefix = f"arn:aws:bedrock:{region}:{state.config.aws_account_id}:application-inference-profile/"
    arn = key if key.startswith("arn:") else prefix + key
    base = default_catalog().bedrock_base_id(target)
    return {
        "inferenceProfileName": arn.rsplit("/", 1)[-1],
        "createdAt": _CREATED,
        "updatedAt": _CREATED,
        "inferenceProfileArn": arn,
        "models": [{"modelArn": f"arn:aws:bedrock:{region}::foundation-model/{base}"}],
        "inferenceProfileId": arn.rsplit("/", 1)[-1],
        "status": "ACTIVE",
        "type": "APPLICATION",
    }


def all_profiles(state: EmulatorState, region: str, kind: str | None = None) -> list[dict[str, Any]]:
    """Every profile offered in `region`: system ones per catalog model, then application ones.

    As on AWS, a region lists only the geography profiles that serve it (and the global ones).
    """
    geographies = [prefix for prefix in _GEOGRAPHIES if geography_serves(prefix, region)]
    out: list[dict[str, Any]] = []
    if kind in (None, "SYSTEM_DEFINED"):
        for entry in default_catalog().entries:
            if entry.bedrock:
                name = f"Anthropic {entry.name.removeprefix('Anthropic ')}"
                out.extend(_profile(prefix, entry.bedrock, name, state, region) for prefix in geographies)
    if kind in (None, "APPLICATION"):
        out.extend(
            _application_profile(k, v, state, region) for k, v in state.config.application_profiles.items()
        )
    return out


def handle(req: Request, state: EmulatorState) -> Response:
    """Serve ListInferenceProfiles and GetInferenceProfile."""
    if req.method != "GET":
        return aws_error(405, "UnknownOperationException", "")
    denied = authenticate(req, state)
    if denied is not None:
        return denied
    region = request_region(req, state)
    if req.path == PROFILES_PATH:
        return _list(req, state, region)
    wanted = req.path[len(PROFILES_PATH) + 1 :]
    for profile in all_profiles(state, region):
        if wanted in (profile["inferenceProfileId"], profile["inferenceProfileArn"]):
            return json_response(200, profile)
    return aws_error(404, "ResourceNotFoundException", "The specified inference profile was not found.")


def _list(req: Request, state: EmulatorState, region: str) -> Response:
    params = req.query_params()
    kind = params.get("type") or None
    if kind not in (None, "SYSTEM_DEFINED", "APPLICATION"):
        return validation(
            f"1 validation error detected: Value '{kind}' at 'typeEquals' failed to satisfy "
            "constraint: Member must satisfy enum value set: [SYSTEM_DEFINED, APPLICATION]"
        )
    try:
        limit = int(params.get("maxResults") or _MAX_RESULTS)
        start = int(base64.b64decode(params["nextToken"]).decode()) if params.get("nextToken") else 0
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return validation("Invalid pagination token or maxResults.")
    if not 1 <= limit <= _MAX_RESULTS or start < 0:
        return validation(
            f"1 validation error detected: Value '{limit}' at 'maxResults' failed to satisfy "
            f"constraint: Member must have value between 1 and {_MAX_RESULTS}"
        )
    profiles = all_profiles(state, region, kind)
    page: dict[str, Any] = {"inferenceProfileSummaries": profiles[start : start + limit]}
    if start + limit < len(profiles):
        page["nextToken"] = base64.b64encode(str(start + limit).encode()).decode()
    return json_response(200, page)
