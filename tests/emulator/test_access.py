"""Project- and account-level refusals: a model not enabled in Model Garden, the Vertex AI API
not enabled, no Bedrock model access. The texts are the services' own."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import requests

from cloudgate.emulator import EmulatorConfig

from .conftest import PROJECT, TOKEN, Emulator, aws_client, bedrock_body

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _vertex(srv, model: str, location: str = "us-east5") -> str:  # type: ignore[no-untyped-def]
    return f"{srv.url}/v1/projects/{PROJECT}/locations/{location}/publishers/anthropic/models/{model}"


def test_model_not_enabled_for_the_project_is_404(make_emulator: Callable[..., Emulator]) -> None:
    _, srv = make_emulator(
        EmulatorConfig(static_tokens=[TOKEN], disabled_models={PROJECT: ["claude-sonnet-4-5"]})
    )
    body = {
        "anthropic_version": "vertex-2023-10-16",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "hi"}],
    }
    resp = requests.post(
        _vertex(srv, "claude-sonnet-4-5@20250929") + ":rawPredict", json=body, headers=AUTH, timeout=5
    )
    assert resp.status_code == 404
    assert resp.json()["error"]["message"].startswith(
        f"Publisher Model `projects/{PROJECT}/locations/us-east5/publishers/anthropic/models/"
        "claude-sonnet-4-5@20250929` was not found or your project does not have access to it."
    )
    counting = {**body, "model": "claude-sonnet-4-5@20250929"}
    del counting["max_tokens"]
    resp = requests.post(_vertex(srv, "count-tokens") + ":rawPredict", json=counting, headers=AUTH, timeout=5)
    assert resp.status_code == 404 and "models/claude-sonnet-4-5@20250929`" in resp.text
    # Other models, and other projects, are unaffected.
    ok = requests.post(
        _vertex(srv, "claude-haiku-4-5@20251001") + ":rawPredict", json=body, headers=AUTH, timeout=5
    )
    assert ok.status_code == 200


def test_api_not_enabled_is_403_service_disabled(make_emulator: Callable[..., Emulator]) -> None:
    _, srv = make_emulator(EmulatorConfig(static_tokens=[TOKEN], api_disabled_projects=[PROJECT]))
    body = {
        "anthropic_version": "vertex-2023-10-16",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "hi"}],
    }
    resp = requests.post(
        _vertex(srv, "claude-sonnet-4-6") + ":rawPredict", json=body, headers=AUTH, timeout=5
    )
    assert resp.status_code == 403
    error = resp.json()["error"]
    assert error["status"] == "PERMISSION_DENIED"
    assert error["message"].startswith(
        f"Vertex AI API has not been used in project {PROJECT} before or it is disabled."
    )
    assert error["details"][0]["reason"] == "SERVICE_DISABLED"


def test_bedrock_model_access_denied(make_emulator: Callable[..., Emulator]) -> None:
    config = EmulatorConfig(
        aws_credentials={"AKIDACCESS": "secret"}, bedrock_denied_models=["claude-sonnet-4-6"]
    )
    _, srv = make_emulator(config)
    client = aws_client(srv, region="us-east-1", key="AKIDACCESS", secret="secret")
    with pytest.raises(client.exceptions.AccessDeniedException) as denied:
        client.invoke_model(modelId="us.anthropic.claude-sonnet-4-6", body=json.dumps(bedrock_body()))
    assert (
        denied.value.response["Error"]["Message"]
        == "You don't have access to the model with the specified model ID."
    )
    ok = client.invoke_model(
        modelId="us.anthropic.claude-haiku-4-5-20251001-v1:0", body=json.dumps(bedrock_body())
    )
    assert ok["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_access_settings_load_from_yaml_data() -> None:
    config = EmulatorConfig.from_dict(
        {
            "disabled_models": {"p": ["claude-opus-4-6"]},
            "api_disabled_projects": ["q"],
            "bedrock_denied_models": ["x"],
        }
    )
    assert config.model_disabled("p", "claude-opus-4-6") and not config.model_disabled(
        "other", "claude-opus-4-6"
    )
    assert config.api_disabled_projects == ["q"] and config.bedrock_access_denied("x")
    with pytest.raises(ValueError, match="disabled_models"):
        EmulatorConfig.from_dict({"disabled_models": {"p": "claude-opus-4-6"}})
