"""The ASGI app: routing, request recording, the admin API, and robustness against bad input."""

from __future__ import annotations

import os
from typing import Any

import orjson
import requests

from cloudgate.emulator import Fault

from .conftest import MODEL, PROJECT, REGION, TOKEN, Emulator

BODY = {
    "anthropic_version": "vertex-2023-10-16",
    "max_tokens": 20,
    "messages": [{"role": "user", "content": "hi"}],
}


def _predict(srv: Any) -> requests.Response:
    url = f"{srv.url}/v1/projects/{PROJECT}/locations/{REGION}/publishers/anthropic/models/{MODEL}:rawPredict"
    return requests.post(
        url, data=orjson.dumps(BODY), headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5
    )


def test_health(emulator: Emulator) -> None:
    _, srv = emulator
    resp = requests.get(f"{srv.url}/_emulator/health", timeout=5)
    assert resp.status_code == 200 and resp.json()["status"] == "ok"


def test_requests_are_recorded_and_cleared(emulator: Emulator) -> None:
    app, srv = emulator
    assert _predict(srv).status_code == 200
    recorded = app.state.requests[-1]
    assert recorded.method == "POST" and recorded.path.endswith(":rawPredict")
    assert recorded.headers["authorization"] == f"Bearer {TOKEN}"
    assert recorded.json == BODY and orjson.loads(recorded.body) == BODY
    listed = requests.get(f"{srv.url}/_emulator/requests", timeout=5).json()
    assert len(listed) == 1 and listed[0]["body"] == BODY  # admin calls themselves are not recorded
    assert requests.delete(f"{srv.url}/_emulator/requests", timeout=5).json() == {"cleared": 1}
    assert app.state.requests == []


def test_faults_admin_api(emulator: Emulator) -> None:
    app, srv = emulator
    admin = f"{srv.url}/_emulator/faults"
    resp = requests.post(admin, json={"kind": "rate_limit", "times": 1}, timeout=5)
    assert resp.status_code == 200 and resp.json()[0]["kind"] == "rate_limit"
    assert _predict(srv).status_code == 429
    assert _predict(srv).status_code == 200
    requests.post(admin, json=[{"kind": "not_found"}, {"kind": "overloaded", "model": "opus"}], timeout=5)
    assert [f["kind"] for f in requests.get(admin, timeout=5).json()] == [
        "rate_limit",
        "not_found",
        "overloaded",
    ]
    assert _predict(srv).status_code == 404
    assert requests.delete(admin, timeout=5).status_code == 200
    assert len(app.state.faults) == 0
    assert _predict(srv).status_code == 200

    bad = requests.post(admin, json={"kind": "meteor"}, timeout=5)
    assert bad.status_code == 400 and bad.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert requests.post(admin, data=b"{oops", timeout=5).status_code == 400
    app.state.faults.add(Fault("server_error", times=1))
    assert _predict(srv).status_code == 500


def test_unknown_paths_and_methods(emulator: Emulator) -> None:
    _, srv = emulator
    for url in (f"{srv.url}/_emulator/nope", f"{srv.url}/v2/whatever", f"{srv.url}/v1/projects/p"):
        resp = requests.get(url, timeout=5)
        assert resp.status_code == 404 and resp.json()["error"]["status"] == "NOT_FOUND"
    wrong = requests.put(f"{srv.url}/_emulator/health", timeout=5)
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == 405
    url = f"{srv.url}/v1/projects/{PROJECT}/locations/{REGION}/publishers/anthropic/models/{MODEL}:rawPredict"
    assert requests.get(url, timeout=5).status_code == 405


def test_garbage_never_crashes_the_emulator(emulator: Emulator) -> None:
    _, srv = emulator
    url = f"{srv.url}/v1/projects/{PROJECT}/locations/{REGION}/publishers/anthropic/models/{MODEL}:streamRawPredict"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    bodies: list[bytes] = [
        b"",
        os.urandom(64),
        b"null",
        b'"string"',
        orjson.dumps({**BODY, "messages": [None, 1, "x"]}),
        orjson.dumps({**BODY, "messages": [{"role": "user", "content": [None]}]}),
        orjson.dumps({**BODY, "system": [{"type": "text"}], "tools": "all"}),
        orjson.dumps({**BODY, "stop_sequences": [1]}),
        orjson.dumps({**BODY, "max_tokens": True}),
    ]
    for body in bodies:
        resp = requests.post(url, data=body, headers=auth, timeout=5)
        assert resp.status_code == 400, (body, resp.text)
        assert "Traceback" not in resp.text
    for path in ("/token", "/computeMetadata/v1/instance/service-accounts/default/token"):
        resp = requests.post(
            f"{srv.url}{path}", data=os.urandom(32), headers={"Metadata-Flavor": "Google"}, timeout=5
        )
        assert 400 <= resp.status_code < 500
    assert requests.get(f"{srv.url}/_emulator/health", timeout=5).status_code == 200
