import argparse
import json
import os
import subprocess
import sys

import pytest
import requests

from cloudgate.cli.emulator import build_config
from cloudgate.cli.main import build_parser
from cloudgate.util.server import free_port
from tests.cli.helpers import wait_until_up


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["emulator", *argv])


def test_flags_become_config(tmp_path):
    key = tmp_path / "sa.json"
    config = build_config(
        _args(
            "--stream-delay",
            "0.5",
            "--fault",
            "rate_limit:2",
            "--fault",
            "overloaded",
            "--no-auth",
            "--static-token",
            "t",
            "--write-service-account",
            str(key),
            "--port",
            "9999",
        )
    )
    assert config.stream_delay == 0.5 and not config.require_auth and config.static_tokens == ["t"]
    assert [(f.kind, f.times) for f in config.faults] == [("rate_limit", 2), ("overloaded", None)]
    written = json.loads(key.read_text())
    assert written["type"] == "service_account" and written["token_uri"] == "http://127.0.0.1:9999/token"
    assert config.trusted_keys and config.trusted_keys[0]["private_key_id"] == written["private_key_id"]


def test_unknown_fault_is_refused():
    with pytest.raises(ValueError, match="unknown fault kind"):
        build_config(_args("--fault", "meteor"))


def test_runs_and_answers(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cloudgate.cli.main",
            "emulator",
            "--port",
            str(port),
            "--static-token",
            "tok",
        ],
        env={"PATH": os.environ["PATH"]},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/_emulator/health", proc)
        url = f"http://127.0.0.1:{port}/v1/projects/p/locations/us-east5/publishers/anthropic/models/claude-haiku-4-5@20251001:rawPredict"
        body = {
            "anthropic_version": "vertex-2023-10-16",
            "max_tokens": 10,
            "messages": [{"role": "user", "content": "hi"}],
        }
        assert (
            requests.post(url, json=body, headers={"authorization": "Bearer tok"}, timeout=5).status_code
            == 200
        )
        assert (
            requests.post(url, json=body, headers={"authorization": "Bearer nope"}, timeout=5).status_code
            == 401
        )
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
