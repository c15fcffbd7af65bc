"""`cloudgate deployments`: plans from the settings, live health from a running gateway."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from cloudgate.cli.main import main
from tests.gateway.test_app import post

SETTINGS = {
    "vertex": {"project_id": "p", "region": "us-east5"},
    "routing": {
        "deployments": [
            {"provider": "vertex", "region": "global"},
            {"provider": "vertex", "region": "europe-west1"},
            {"name": "aws", "provider": "bedrock", "region": "eu-west-1", "priority": 1},
        ]
    },
}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "cloudgate.yaml"
    path.write_text(yaml.safe_dump(SETTINGS))
    return path


def test_list_shows_the_configured_deployments(config: Path, capsys) -> None:
    assert main(["deployments", "list", "-c", str(config)]) == 0
    out = capsys.readouterr().out
    assert "vertex/global" in out and "vertex/europe-west1" in out and "aws" in out


def test_list_model_shows_the_plan_in_order(config: Path, capsys) -> None:
    assert (
        main(["deployments", "list", "-c", str(config), "-m", "claude-sonnet-4-5", "--format", "json"]) == 0
    )
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["vertex/global", "vertex/europe-west1", "aws"]
    assert rows[0]["upstream_model"] == "claude-sonnet-4-5@20250929"
    assert rows[2]["upstream_model"] == "eu.anthropic.claude-sonnet-4-5-20250929-v1:0"


def test_list_model_with_regions_applies_residency(config: Path, capsys) -> None:
    assert (
        main(
            [
                "deployments",
                "list",
                "-c",
                str(config),
                "-m",
                "claude-sonnet-4-5",
                "--regions",
                "eu",
                "--format",
                "csv",
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(",")[0] for line in lines[1:]] == ["vertex/europe-west1", "aws"]
    with pytest.raises(SystemExit) as info:
        main(["deployments", "list", "-c", str(config), "-m", "claude-sonnet-4-5", "--regions", "apac"])
    assert "apac" in str(info.value.code)


def test_list_without_deployments_explains_the_derived_default(tmp_path: Path, capsys) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("vertex: {region: us-east5}\n")
    assert main(["deployments", "list", "-c", str(path)]) == 0
    assert "No deployments are configured" in capsys.readouterr().out
    assert main(["deployments", "list", "-c", str(path), "-m", "claude-sonnet-4-5"]) == 0
    out = capsys.readouterr().out
    assert "vertex/us-east5" in out and "vertex/us " in out


def test_health_reads_a_running_gateway(make_stack, capsys) -> None:
    gw = make_stack(settings={"routing": SETTINGS["routing"]})
    body = {"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    assert post(gw, "/v1/messages", body).status_code == 200
    assert main(["deployments", "health", "--gateway", gw.url, "--key", gw.key]) == 0
    out = capsys.readouterr().out
    assert "gateway " in out and ": ok" in out
    assert "vertex/global" in out and "healthy" in out
    assert main(["deployments", "health", "--gateway", gw.url, "--key", gw.key, "--format", "json"]) == 0
    view = json.loads(capsys.readouterr().out)
    assert view["status"] == "ok" and len(view["deployments"]) == 3


def test_health_explains_failures_to_connect_or_authenticate(make_stack) -> None:
    gw = make_stack()
    with pytest.raises(SystemExit) as info:
        main(["deployments", "health", "--gateway", gw.url, "--key", "wrong"])
    assert "401" in str(info.value.code)
    with pytest.raises(SystemExit) as info:
        main(["deployments", "health", "--gateway", "http://127.0.0.1:9", "--key", "k"])
    assert "cannot reach" in str(info.value.code)
