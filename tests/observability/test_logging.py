"""Log lines: text or JSON, the request id on lines logged inside a request, no secrets."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import yaml

from cloudgate.emulator import EmulatorConfig, Fault, create_emulator_app
from cloudgate.observability.context import RequestContext, enter_request, leave_request
from cloudgate.observability.logging import JsonFormatter, TextFormatter, log_handler
from cloudgate.util.server import free_port, serving
from tests.cli.helpers import wait_until_up
from tests.cli.test_serve import _cloudgate
from tests.conftest import ANTHROPIC_API_KEY, BEDROCK_API_KEY, GATEWAY_KEY
from tests.gateway.test_governor import new_key
from tests.gateway.wire_clients import send
from tests.observability.helpers import SONNET, ask, routed

FAILOVER = routed()
HI = {"max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def captured() -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """Everything logged in the process (DEBUG and up), as JSON lines and as text lines."""
    as_json, as_text = io.StringIO(), io.StringIO()
    handlers = [log_handler("json", as_json), log_handler("text", as_text)]
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.DEBUG)
    for handler in handlers:
        root.addHandler(handler)
    try:
        yield as_json, as_text
    finally:
        for handler in handlers:
            root.removeHandler(handler)
        root.setLevel(level)


def lines(stream: io.StringIO) -> list[str]:
    return [line for line in stream.getvalue().splitlines() if line]


def failing_over(captured_json: io.StringIO) -> list[dict[str, object]]:
    return [
        doc
        for doc in map(orjson.loads, lines(captured_json))
        if "trying the next deployment" in str(doc["message"])
    ]


def test_json_lines_have_the_fields_and_the_exception() -> None:
    formatter = JsonFormatter()
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "cloudgate.x", logging.ERROR, __file__, 1, "failed %s", ("here",), sys.exc_info()
        )
    record.request_id = "req_cg0123"
    doc = orjson.loads(formatter.format(record))
    assert doc["level"] == "ERROR" and doc["logger"] == "cloudgate.x" and doc["message"] == "failed here"
    assert doc["request_id"] == "req_cg0123"
    assert doc["time"].endswith("+00:00") and "T" in doc["time"]
    assert "Traceback" in doc["exception"] and "ValueError: boom" in doc["exception"]
    outside = logging.LogRecord("cloudgate.x", logging.INFO, __file__, 1, "idle", (), None)
    assert "request_id" not in orjson.loads(formatter.format(outside))


def test_the_request_id_comes_from_the_context_where_the_line_is_logged() -> None:
    out = io.StringIO()
    logger = logging.getLogger("cloudgate.test.context")
    logger.addHandler(log_handler("text", out))
    logger.propagate = False
    try:
        logger.warning("before")
        token = enter_request(RequestContext("req_cgabc", 0.0))
        logger.warning("inside")
        leave_request(token)
        logger.warning("after")
    finally:
        logger.handlers.clear()
        logger.propagate = True
    before, inside, after = lines(out)
    assert inside.endswith("WARNING cloudgate.test.context [req_cgabc]: inside")
    assert before.endswith("WARNING cloudgate.test.context: before") and "[" not in after
    assert isinstance(TextFormatter(), logging.Formatter)


def test_lines_logged_inside_a_request_carry_its_id(make_stack, captured) -> None:
    as_json, as_text = captured
    gw = make_stack(settings=FAILOVER)
    gw.emulator.state.faults.add(Fault(kind="server_error", status=503, platform="vertex", times=1))
    resp = ask(gw, "fail over")
    assert resp.status_code == 200
    rid = resp.headers["x-cloudgate-request-id"]
    assert gw.records(1)[0].request_id == rid
    (line,) = failing_over(as_json)
    assert line["request_id"] == rid and line["logger"] == "cloudgate.gateway" and line["level"] == "INFO"
    assert any(
        f"cloudgate.gateway [{rid}]: request {rid}: vertex/us-east5 failed" in t for t in lines(as_text)
    )
    # Lines from outside any request carry no id (the emulator's and the server's own).
    assert any("request_id" not in orjson.loads(t) for t in lines(as_json))


def test_no_key_or_token_reaches_the_log(make_stack, captured) -> None:
    as_json, as_text = captured
    gw = make_stack(emulator=EmulatorConfig(), settings=FAILOVER)
    gw.emulator.state.faults.add(Fault(kind="server_error", status=503, platform="vertex", times=1))
    gw.emulator.state.faults.add(Fault(kind="overloaded", platform="bedrock", times=1))
    store_key, _ = new_key(gw)
    wrong = "cg-wrong-0123456789abcdef"
    assert ask(gw, "fail over twice").status_code == 200  # Vertex, Bedrock, then the Anthropic API
    assert ask(gw, "vertex").status_code == 200  # a Google token from the emulator
    assert ask(gw, "store key", key=store_key).status_code == 200
    assert ask(gw, "wrong key", key=wrong).status_code == 401
    for door in ("vertex", "bedrock"):
        answer = send(gw.url, GATEWAY_KEY, door, SONNET, HI, stream=True)
        assert answer.status == 200
    gw.records(6)
    issued = list(gw.emulator.state.tokens._tokens)
    assert issued, "the Vertex deployment fetched no Google token"
    secrets = [GATEWAY_KEY, BEDROCK_API_KEY, ANTHROPIC_API_KEY, store_key, wrong, *issued]
    logged = as_json.getvalue() + as_text.getvalue()
    assert len(lines(as_json)) > 5  # DEBUG and up from every library, so the check means something
    for secret in secrets:
        assert secret not in logged


def test_serve_writes_json_lines(tmp_path: Path) -> None:
    with serving(create_emulator_app(EmulatorConfig(static_tokens=["tok"]))) as emulator:
        port = free_port()
        settings = {
            "data_dir": str(tmp_path / "data"),
            "gateway": {"port": port, "keys": ["cg-json-key"]},
            "vertex": {"project_id": "p", "base_url": f"{emulator.url}/v1", "access_token": "tok"},
            "telemetry": {"log_format": "json"},
            "log_level": "INFO",
        }
        (tmp_path / "cloudgate.yaml").write_text(yaml.safe_dump(settings))
        proc = _cloudgate("serve", "--config", str(tmp_path / "cloudgate.yaml"))
        try:
            wait_until_up(f"http://127.0.0.1:{port}/health", proc)
            answer = send(f"http://127.0.0.1:{port}", "cg-json-key", "anthropic", SONNET, HI, stream=False)
            assert answer.status == 200
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=20)
    docs = [orjson.loads(line) for line in err.splitlines() if line.strip()]  # every line is JSON
    logs = [d for d in docs if "logger" in d]
    assert any(d["logger"].startswith("uvicorn") and "running on" in d["message"].lower() for d in logs), logs
    assert all({"time", "level", "logger", "message"} <= d.keys() for d in logs)
    assert any(d.get("request_id") == answer.headers["x-cloudgate-request-id"] for d in docs)  # the record
    assert "cg-json-key" not in err
