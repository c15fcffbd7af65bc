"""The Anthropic API face of the emulator, driven by the official `anthropic.Anthropic` client."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anthropic
import httpx2
import pytest

from cloudgate.emulator import EmulatorConfig, Fault

from .conftest import Emulator

KEY = "sk-ant-emulator-1"
MODEL = "claude-sonnet-4-6"


@pytest.fixture
def api_emulator(make_emulator: Callable[..., Emulator]) -> Emulator:
    """An emulator that accepts the Anthropic API key KEY."""
    return make_emulator(EmulatorConfig(anthropic_api_keys=[KEY]))


def _client(srv: Any, **kw: Any) -> anthropic.Anthropic:
    kw.setdefault("max_retries", 0)
    kw.setdefault("api_key", KEY)
    return anthropic.Anthropic(base_url=srv.url, **kw)


def _ask(client: anthropic.Anthropic, text: str = "hi api", **kw: Any) -> Any:
    kw.setdefault("model", MODEL)
    return client.messages.create(max_tokens=50, messages=[{"role": "user", "content": text}], **kw)


def test_plain_message_and_headers(api_emulator: Emulator) -> None:
    _, srv = api_emulator
    raw = _client(srv).messages.with_raw_response.create(
        model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "hi api"}]
    )
    msg = raw.parse()
    assert msg.id.startswith("msg_01") and len(msg.id) == 6 + 22
    assert "You said: hi api" in msg.content[0].text
    assert raw.headers["request-id"].startswith("req_01")
    for name in (
        "requests-limit",
        "requests-remaining",
        "requests-reset",
        "tokens-limit",
        "tokens-remaining",
    ):
        assert f"anthropic-ratelimit-{name}" in raw.headers


def test_same_answer_as_other_platforms(api_emulator: Emulator) -> None:
    app, srv = api_emulator
    msg = _ask(_client(srv), "same everywhere")
    body = {"max_tokens": 50, "messages": [{"role": "user", "content": "same everywhere"}]}
    assert msg.usage.input_tokens == app.state.engine.count_tokens(body)


def test_stream(api_emulator: Emulator) -> None:
    _, srv = api_emulator
    with _client(srv).messages.stream(
        model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "hi stream"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert "You said: hi stream" in text
    assert final.stop_reason == "end_turn"


def test_count_tokens_and_beta_query(api_emulator: Emulator) -> None:
    app, srv = api_emulator
    client = _client(srv)
    counted = client.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "count me"}])
    assert counted.input_tokens == app.state.engine.count_tokens(
        {"messages": [{"role": "user", "content": "count me"}]}
    )
    beta = client.beta.messages.create(
        model=MODEL,
        max_tokens=20,
        betas=["context-management-2025-06-27", "claude-code-20250219"],
        messages=[{"role": "user", "content": "beta"}],
    )
    assert beta.id.startswith("msg_01")
    r = httpx2.post(
        f"{srv.url}/v1/messages?beta=true",
        headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"},
        json={"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": "q"}]},
    )
    assert r.status_code == 200 and app.state.requests[-1].query == "beta=true"


def test_unknown_beta_rejected(api_emulator: Emulator) -> None:
    _, srv = api_emulator
    with pytest.raises(anthropic.BadRequestError, match="not-a-beta"):
        _client(srv).beta.messages.create(
            model=MODEL, max_tokens=20, betas=["not-a-beta"], messages=[{"role": "user", "content": "x"}]
        )


def test_models_list_and_get(api_emulator: Emulator) -> None:
    _, srv = api_emulator
    client = _client(srv)
    ids = [m.id for m in client.models.list(limit=3)]  # auto-paginates past the first page
    assert "claude-opus-4-6" in ids and MODEL in ids and len(ids) == len(set(ids))
    assert client.models.retrieve("claude-sonnet-4-5").id == "claude-sonnet-4-5-20250929"
    with pytest.raises(anthropic.NotFoundError):
        client.models.retrieve("claude-nope-1")


def test_auth_and_version(api_emulator: Emulator) -> None:
    _, srv = api_emulator
    with pytest.raises(anthropic.AuthenticationError, match="invalid x-api-key"):
        _ask(_client(srv, api_key="wrong"))
    _ask(anthropic.Anthropic(base_url=srv.url, auth_token=KEY, max_retries=0))
    r = httpx2.post(
        f"{srv.url}/v1/messages",
        headers={"x-api-key": KEY},
        json={"model": MODEL, "max_tokens": 5, "messages": []},
    )
    assert r.status_code == 400
    assert r.json()["error"] == {
        "type": "invalid_request_error",
        "message": "anthropic-version: header is required",
    }


def test_model_checks(make_emulator: Callable[..., Emulator]) -> None:
    _, srv = make_emulator(EmulatorConfig(anthropic_api_keys=[KEY]))
    assert _ask(_client(srv), model="claude-opus-5-5").model == "claude-opus-5-5"
    with pytest.raises(anthropic.NotFoundError, match="model: gpt-4"):
        _ask(_client(srv), model="gpt-4")
    _, strict = make_emulator(EmulatorConfig(anthropic_api_keys=[KEY], strict_models=True))
    with pytest.raises(anthropic.NotFoundError, match="model: claude-opus-5-5"):
        _ask(_client(strict), model="claude-opus-5-5")
    with pytest.raises(anthropic.BadRequestError, match="max_tokens"):
        _client(srv).messages.create(model=MODEL, max_tokens=0, messages=[{"role": "user", "content": "x"}])


@pytest.mark.parametrize(
    ("fault", "error", "status"),
    [
        (Fault("rate_limit"), anthropic.RateLimitError, 429),
        (Fault("overloaded"), anthropic.APIStatusError, 529),
        (Fault("server_error"), anthropic.InternalServerError, 500),
        (Fault("not_found"), anthropic.NotFoundError, 404),
        (Fault("permission_denied"), anthropic.PermissionDeniedError, 403),
        (Fault("unauthenticated"), anthropic.AuthenticationError, 401),
    ],
)
def test_faults_typed(api_emulator: Emulator, fault: Fault, error: type[Exception], status: int) -> None:
    app, srv = api_emulator
    app.state.faults.add(fault)
    with pytest.raises(error) as err:
        _ask(_client(srv))
    assert isinstance(err.value, anthropic.APIStatusError) and err.value.status_code == status
    if status == 429:
        assert err.value.response.headers["retry-after"] == "1"
        assert err.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    if status == 529:
        assert err.value.body["error"] == {"type": "overloaded_error", "message": "Overloaded"}  # type: ignore[index]


def test_platform_targeted_fault_spares_other_platforms(api_emulator: Emulator) -> None:
    app, srv = api_emulator
    app.state.faults.add(Fault("overloaded", platform="bedrock"))
    _ask(_client(srv))
    app.state.faults.add(Fault("overloaded", platform="anthropic", times=1))
    with pytest.raises(anthropic.APIStatusError):
        _ask(_client(srv))


def test_mid_stream_error_event(api_emulator: Emulator) -> None:
    app, srv = api_emulator
    app.state.faults.add(Fault("overloaded", stream=True, after_events=3))
    with (
        pytest.raises(anthropic.APIStatusError, match="Overloaded"),
        _client(srv).messages.stream(
            model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "x"}]
        ) as stream,
    ):
        list(stream)


def test_auth_off(make_emulator: Callable[..., Emulator]) -> None:
    _, srv = make_emulator(EmulatorConfig(require_auth=False))
    assert _ask(_client(srv, api_key="anything")).id.startswith("msg_01")
