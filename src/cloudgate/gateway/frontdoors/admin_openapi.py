"""The admin API's OpenAPI document: JSON Schemas of its bodies and answers, and the builder."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cloudgate import __version__
from cloudgate.activity.export import FIELDS
from cloudgate.governance.types import PROVIDERS

if TYPE_CHECKING:
    from cloudgate.gateway.frontdoors.admin import Route

_STR: dict[str, Any] = {"type": "string"}
_NULLABLE_STR: dict[str, Any] = {"type": ["string", "null"]}
_TIME: dict[str, Any] = {"type": "string", "format": "date-time"}
_NULLABLE_TIME: dict[str, Any] = {"type": ["string", "null"], "format": "date-time"}
_TAGS: dict[str, Any] = {"type": "array", "items": {"type": "string"}}
_SCOPE: dict[str, Any] = {"type": "string", "enum": ["key", "user", "team"]}
_PERIOD: dict[str, Any] = {"type": "string", "enum": ["daily", "weekly", "monthly", "total"]}
_LIMIT: dict[str, Any] = {"type": ["integer", "null"], "minimum": 1, "description": "null: unlimited"}
_USD: dict[str, Any] = {"type": "number", "minimum": 0}
_REGIONS: dict[str, Any] = {
    "type": ["array", "null"],
    "items": {"type": "string", "pattern": "^[a-z0-9-]{1,64}$"},
    "minItems": 1,
    "description": "regions or geographies (europe-west1, eu-west-1, eu, us, global) requests may be "
    "served from; null: anywhere",
}
_PROVIDERS: dict[str, Any] = {
    "type": ["array", "null"],
    "items": {"type": "string", "enum": list(PROVIDERS)},
    "minItems": 1,
    "description": "providers in order of preference, first preferred; null: no preference",
}
_LOG_BODIES: dict[str, Any] = {
    "type": "boolean",
    "description": "keep whole request and response bodies in the activity log (default false)",
}
_TEAM_SETTINGS: dict[str, Any] = {
    "allowed_regions": _REGIONS,
    "preferred_providers": _PROVIDERS,
    "log_bodies": _LOG_BODIES,
}
_COUNT: dict[str, Any] = {"type": "integer", "minimum": 0}


def _obj(
    properties: dict[str, Any], required: tuple[str, ...] = (), *, closed: bool = True
) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    if closed:  # the API refuses fields it does not know
        schema["additionalProperties"] = False
    return schema


def _list(item: str) -> dict[str, Any]:
    return _obj({"data": {"type": "array", "items": {"$ref": f"#/components/schemas/{item}"}}}, ("data",))


_KEY_FIELDS: dict[str, Any] = {
    "id": _STR,
    "name": _STR,
    "prefix": {"type": "string", "description": "the key's first characters, to recognise it"},
    "user_id": _NULLABLE_STR,
    "team_id": _NULLABLE_STR,
    "is_admin": {"type": "boolean"},
    "allowed_models": {"type": ["array", "null"], "items": {"type": "string"}, "description": "null: any"},
    "allowed_regions": _REGIONS,
    "log_bodies": _LOG_BODIES,
    "tags": _TAGS,
    "created_at": _TIME,
    "expires_at": _NULLABLE_TIME,
    "revoked_at": _NULLABLE_TIME,
    "last_used_at": _NULLABLE_TIME,
}
_PLAINTEXT: dict[str, Any] = {"type": "string", "description": "the key itself: shown once, never again"}
_LIMIT_FIELDS: dict[str, Any] = {
    "requests_per_minute": _LIMIT,
    "input_tokens_per_minute": _LIMIT,
    "output_tokens_per_minute": _LIMIT,
    "max_concurrent": _LIMIT,
}
_SPEND_FIELDS: dict[str, Any] = {
    "requests": _COUNT,
    "attempts": {**_COUNT, "description": "upstream requests made, failovers included"},
    "input_tokens": _COUNT,
    "output_tokens": _COUNT,
    "cache_write_5m_tokens": _COUNT,
    "cache_write_1h_tokens": _COUNT,
    "cache_read_tokens": _COUNT,
    "cost_usd": _USD,
}
_EXPIRY: dict[str, Any] = {
    "expires_at": {**_NULLABLE_TIME, "description": "ISO 8601, in the future; null: never"},
    "expires_in_days": {"type": ["number", "null"], "exclusiveMinimum": 0},
}

_KIND_SCHEMAS: dict[str, dict[str, Any]] = {
    "str": _STR,
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "bool": {"type": "boolean"},
    "time": _TIME,
    "json": {},
}
# What the entry's own types do not say.
_ENTRY_DETAILS: dict[str, dict[str, Any]] = {
    "started_at": {"description": "when the request arrived"},
    "session_id": {"description": "Claude Code's x-claude-code-session-id"},
    "deployment": {"description": "the deployment that answered (or was tried last)"},
    "cost_micro": {"description": "cost in micro-dollars (exact); cost_usd has it in dollars"},
    "attempts": {
        "type": "array",
        "items": {"type": "object"},
        "description": "every upstream attempt, failovers included: deployment, status, error",
    },
    "betas": {"type": "array", "items": {"type": "string"}},
    "request_headers": {
        "type": "object",
        "additionalProperties": {"type": "string"},
        "description": "as received, credentials redacted",
    },
    "request_body": {"description": "null unless bodies are kept for the key, its team, or everyone"},
    "response_body": {"description": "a Message as JSON, or the event stream as text"},
    "bodies_truncated": {"description": "the bodies were cut at activity.max_body_bytes"},
}


def _entry_field(kind: str, optional: bool, name: str) -> dict[str, Any]:
    schema = {**_KIND_SCHEMAS[kind], **_ENTRY_DETAILS.get(name, {})}
    if optional and "type" in schema:
        schema["type"] = [schema["type"], "null"]
    return schema


_ENTRY: dict[str, Any] = {
    **{f.name: _entry_field(f.kind, f.optional, f.name) for f in FIELDS},
    "cost_usd": {"type": ["number", "null"], "description": "null when governance did not price it"},
}
_NOT_LISTED = ("request_headers", "request_body", "response_body")
_LOG_SUMMARY: dict[str, Any] = {
    **{name: schema for name, schema in _ENTRY.items() if name not in _NOT_LISTED},
    "bodies_kept": {"type": "boolean", "description": "GET /logs/{request_id} shows them"},
}
_TURN: dict[str, Any] = {
    **_LOG_SUMMARY,
    "user_text": {**_NULLABLE_STR, "description": "the request's last user message, when bodies were kept"},
    "assistant_text": {**_NULLABLE_STR, "description": "what the assistant said, when bodies were kept"},
}
_SESSION_TOTAL: dict[str, Any] = {
    "errors": {**_COUNT, "description": "requests that failed"},
    **{name: schema for name, schema in _SPEND_FIELDS.items() if name != "attempts"},
}

SCHEMAS: dict[str, Any] = {
    "Error": _obj(
        {"error": _obj({"type": _STR, "message": _STR}, ("type", "message"))},
        ("error",),
    ),
    "Deleted": _obj({"id": _STR, "deleted": {"type": "boolean"}}, ("id", "deleted")),
    "TeamCreate": _obj({"name": _STR, "tags": _TAGS, **_TEAM_SETTINGS}, ("name",)),
    "TeamUpdate": _obj({"name": _STR, "tags": _TAGS, **_TEAM_SETTINGS}),
    "Team": _obj(
        {"id": _STR, "name": _STR, "tags": _TAGS, **_TEAM_SETTINGS, "created_at": _TIME}, ("id", "name")
    ),
    "TeamList": _list("Team"),
    "UserCreate": _obj(
        {"name": _STR, "email": _NULLABLE_STR, "team_id": _NULLABLE_STR, "tags": _TAGS}, ("name",)
    ),
    "UserUpdate": _obj({"name": _STR, "email": _NULLABLE_STR, "team_id": _NULLABLE_STR, "tags": _TAGS}),
    "User": _obj(
        {
            "id": _STR,
            "name": _STR,
            "email": _NULLABLE_STR,
            "team_id": _NULLABLE_STR,
            "tags": _TAGS,
            "created_at": _TIME,
        },
        ("id", "name"),
    ),
    "UserList": _list("User"),
    "KeyCreate": _obj(
        {
            "name": _STR,
            "user_id": _NULLABLE_STR,
            "team_id": _NULLABLE_STR,
            "is_admin": {"type": "boolean"},
            "allowed_models": _KEY_FIELDS["allowed_models"],
            "allowed_regions": _REGIONS,
            "log_bodies": _LOG_BODIES,
            **_EXPIRY,
            "tags": _TAGS,
        },
        ("name",),
    ),
    "KeyUpdate": _obj(
        {
            "name": _STR,
            "is_admin": {"type": "boolean"},
            "allowed_models": _KEY_FIELDS["allowed_models"],
            "allowed_regions": _REGIONS,
            "log_bodies": _LOG_BODIES,
            **_EXPIRY,
            "tags": _TAGS,
        }
    ),
    "Key": _obj(_KEY_FIELDS, ("id", "name", "prefix")),
    "KeyList": _list("Key"),
    "CreatedKey": _obj({"key": _PLAINTEXT, **_KEY_FIELDS}, ("key", "id", "name", "prefix")),
    "RotatedKey": _obj(
        {
            "key": _PLAINTEXT,
            "replaces": {"type": "string", "description": "the revoked key's id"},
            **_KEY_FIELDS,
        },
        ("key", "id", "replaces"),
    ),
    "BudgetSet": _obj(
        {"scope": _SCOPE, "scope_id": _STR, "period": _PERIOD, "amount_usd": _USD},
        ("scope", "scope_id", "period", "amount_usd"),
    ),
    "Budget": _obj(
        {
            "id": _STR,
            "scope": _SCOPE,
            "scope_id": _STR,
            "period": _PERIOD,
            "amount_usd": _USD,
            "period_start": {**_NULLABLE_TIME, "description": "null for a total budget"},
            "spent_usd": _USD,
            "remaining_usd": _USD,
        },
        ("id", "scope", "scope_id", "period", "amount_usd"),
    ),
    "BudgetList": _list("Budget"),
    "LimitsSet": _obj({"scope": _SCOPE, "scope_id": _STR, **_LIMIT_FIELDS}, ("scope", "scope_id")),
    "Limits": _obj({"scope": _SCOPE, "scope_id": _STR, **_LIMIT_FIELDS}, ("scope", "scope_id")),
    "LimitsList": _list("Limits"),
    "LimitsDeleted": _obj(
        {"scope": _SCOPE, "scope_id": _STR, "deleted": {"type": "boolean"}}, ("scope", "scope_id", "deleted")
    ),
    "SpendRow": _obj(
        {
            "group": {
                **_NULLABLE_STR,
                "description": "the key, user, team, model, deployment or day; null: none",
            },
            **_SPEND_FIELDS,
        }
    ),
    "SpendReport": _obj(
        {
            "by": {"type": "string", "enum": ["key", "user", "team", "model", "deployment", "day"]},
            "since": _TIME,
            "until": _NULLABLE_TIME,
            "data": {"type": "array", "items": {"$ref": "#/components/schemas/SpendRow"}},
            "total": _obj(_SPEND_FIELDS),
        },
        ("by", "since", "data", "total"),
    ),
    "LogEntry": _obj(_ENTRY, ("request_id", "started_at", "status")),
    "LogSummary": _obj(_LOG_SUMMARY, ("request_id", "started_at", "status")),
    "LogList": _obj(
        {
            "data": {"type": "array", "items": {"$ref": "#/components/schemas/LogSummary"}},
            "next_cursor": {**_NULLABLE_STR, "description": "the next page's cursor; null on the last page"},
        },
        ("data", "next_cursor"),
    ),
    "SessionTurn": _obj(_TURN, ("request_id", "started_at", "status")),
    "Session": _obj(
        {
            "session_id": _STR,
            "started_at": _TIME,
            "finished_at": _TIME,
            "turns": {"type": "array", "items": {"$ref": "#/components/schemas/SessionTurn"}},
            "total": _obj(_SESSION_TOTAL),
        },
        ("session_id", "turns", "total"),
    ),
}


def openapi_document(routes: Sequence[Route], prefix: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the admin API, built from its route table."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        content: dict[str, Any] = {
            "application/json": {
                "schema": {"$ref": f"#/components/schemas/{route.response}"}
                if route.response
                else {"type": "object"}
            }
        }
        if route.media:  # streamed: one document in one of these formats, as it is produced
            content = {media: {"schema": {"type": "string"}} for media in route.media}
        op: dict[str, Any] = {
            "operationId": route.handler.__name__,
            "summary": route.summary,
            "tags": [route.tag],
            "responses": {
                str(route.status): {"description": route.summary, "content": content},
                "default": {
                    "description": "An error: 400 invalid request, 404 unknown id or path, 405 wrong method, "
                    "409 conflict",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                },
            },
        }
        params: list[dict[str, Any]] = [
            {"name": name[1:-1], "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"\{[^}]+\}", route.path)
        ]
        for q in route.query:
            schema: dict[str, Any] = {"type": q.type}
            if q.enum:
                schema["enum"] = list(q.enum)
            params.append(
                {
                    "name": q.name,
                    "in": "query",
                    "required": q.required,
                    "description": q.description,
                    "schema": schema,
                }
            )
        if params:
            op["parameters"] = params
        if route.request:
            op["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{route.request}"}}
                },
            }
        paths.setdefault(prefix + route.path, {})[route.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "cloudgate admin API",
            "version": __version__,
            "description": "Teams, users, keys, budgets, rate limits, spend and the activity log. "
            "Money is in US dollars.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}, {"apiKey": []}],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "an admin key"},
                "apiKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "x-api-key",
                    "description": "an admin key",
                },
            },
        },
    }
