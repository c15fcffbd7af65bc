"""The Vertex endpoints against the official SDK and raw HTTP: success, streaming, validation, catalog."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anthropic
import orjson
import pytest
import requests

from cloudgate.emulator import EmulatorConfig

from .conftest import MODEL, PROJECT, REGION, TOKEN, Emulator, vertex_client

HI = [{"role": "user", "content": "Hello there, emulator"}]


def _url(srv: Any, model: str = MODEL, location: str = REGION, method: str = "rawPredict") -> str:
    return (
        f"{srv.url}/v1/projects/{PROJECT}/locations/{location}/publishers/anthropic/models/{model}:{method}"
    )


def _post(url: str, body: Any, headers: dict[str, str] | None = None) -> requests.Response:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return requests.post(
        url, data=data, headers={"Authorization": f"Bearer {TOKEN}", **(headers or {})}, timeout=5
    )


def _body(**extra: Any) -> dict[str, Any]:
    return {"anthropic_version": "vertex-2023-10-16", "max_tokens": 100, "messages": HI, **extra}


def test_sdk_plain_message(emulator: Emulator) -> None:
    app, srv = emulator
    client = vertex_client(srv)
    raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=100, messages=HI)
    message = raw.parse()
    assert raw.headers["request-id"].startswith("req_vrtx_")
    assert message.id.startswith("msg_vrtx_") and len(message.id) == len("msg_vrtx_") + 24
    assert message.model == MODEL
    assert message.content[0].type == "text"
    assert message.content[0].text == "Hello from the cloudgate emulator. You said: Hello there, emulator"
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    assert message.usage.cache_read_input_tokens == 0
    # The SDK's wire form reached the emulator: model in the URL, anthropic_version in the body.
    seen = app.state.requests[-1]
    assert seen.path.endswith(f"/models/{MODEL}:rawPredict")
    assert "model" not in seen.json and seen.json["anthropic_version"]
    assert seen.headers["authorization"] == f"Bearer {TOKEN}"


def test_percent_encoded_at_sign_is_accepted(emulator: Emulator) -> None:
    _, srv = emulator
    resp = _post(_url(srv, model=MODEL.replace("@", "%40")), _body())
    assert resp.status_code == 200
    assert resp.json()["model"] == MODEL


def test_missing_or_unknown_token_is_401(emulator: Emulator) -> None:
    _, srv = emulator
    for headers in ({}, {"Authorization": "Bearer nope"}):
        resp = requests.post(_url(srv), data=orjson.dumps(_body()), headers=headers, timeout=5)
        assert resp.status_code == 401
        assert resp.json()["error"]["status"] == "UNAUTHENTICATED"


def test_require_auth_off(make_emulator: Callable[..., Emulator]) -> None:
    _, srv = make_emulator(EmulatorConfig(require_auth=False))
    resp = requests.post(_url(srv), data=orjson.dumps(_body()), timeout=5)
    assert resp.status_code == 200


def test_project_restriction_is_403(make_emulator: Callable[..., Emulator]) -> None:
    _, srv = make_emulator(EmulatorConfig(static_tokens=[TOKEN], projects=["only-this-one"]))
    with pytest.raises(anthropic.PermissionDeniedError) as info:
        vertex_client(srv).messages.create(model=MODEL, max_tokens=10, messages=HI)
    resource = f"projects/{PROJECT}/locations/{REGION}/publishers/anthropic/models/{MODEL}"
    message = (
        "Permission 'aiplatform.endpoints.predict' denied on resource "
        f"'//aiplatform.googleapis.com/{resource}' (or it may not exist)."
    )
    assert info.value.body == {"error": {"code": 403, "message": message, "status": "PERMISSION_DENIED"}}
