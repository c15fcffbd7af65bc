"""EmulatorConfig: defaults and YAML loading."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloudgate.emulator import AuthorizedUser, EmulatorConfig, Fault, create_emulator_app


def test_defaults() -> None:
    config = EmulatorConfig()
    assert config.require_auth and config.token_ttl == 3600 and config.stream_delay == 0
    assert not config.strict_models and not config.count_tokens_global
    assert config.min_cacheable_tokens == 1024


def test_from_file(tmp_path: Path) -> None:
    (tmp_path / "turns.yaml").write_text("- reply: [{type: text, text: scripted}]\n")
    path = tmp_path / "emulator.yaml"
    path.write_text(
        """
stream_delay: 0.01
token_ttl: 60
static_tokens: [abc]
service_account_files: [keys/sa.json]
authorized_users:
  - {client_id: c, client_secret: s, refresh_token: r}
projects: [p1]
script: turns.yaml
faults:
  - {kind: rate_limit, times: 2, model: opus}
strict_models: true
"""
    )
    config = EmulatorConfig.from_file(path)
    assert config.stream_delay == 0.01 and config.token_ttl == 60 and config.static_tokens == ["abc"]
    assert config.service_account_files == [str(tmp_path / "keys/sa.json")]
    assert config.authorized_users == [AuthorizedUser("c", "s", "r")]
    assert config.faults == [Fault("rate_limit", times=2, model="opus")]
    assert config.script == str(tmp_path / "turns.yaml") and config.strict_models
    app = create_emulator_app(config)
    assert app.state.engine.script[0].reply == [{"type": "text", "text": "scripted"}]
    assert len(app.state.faults) == 1


def test_unknown_setting_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("stream_dely: 1\n")
    with pytest.raises(ValueError, match="stream_dely"):
        EmulatorConfig.from_file(path)
