"""Doctor scenarios: Claude Code's environment pointed at a real emulator (or a gateway in front
of one), with credentials files in a throw-away HOME, so every check runs as it would for a user."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cloudgate.clientconfig import resolve
from cloudgate.doctor import Report, diagnose
from cloudgate.emulator import EmulatorApp, EmulatorConfig, create_emulator_app, write_service_account_key
from cloudgate.util.server import serving

PROJECT = "doctor-project"
SA_EMAIL = "claude-code@doctor-project.iam.gserviceaccount.com"
AWS_KEY_ID = "AKIADOCTOR0000000001"
AWS_SECRET = "doctor-secret-0123456789"
API_KEY = "sk-ant-doctor-0123456789"


@dataclass
class Scenario:
    """An emulator and a user's machine around it: a HOME, a service-account key file, AWS keys."""

    emulator: EmulatorApp
    url: str
    tmp: Path
    home: Path
    key_file: Path

    def base_env(self) -> dict[str, str]:
        """What every scenario shares: an isolated HOME and no cloud metadata services to find."""
        return {
            "HOME": str(self.home),
            "PATH": "/usr/bin:/bin",
            # No GCE/EC2 metadata server here: fail fast instead of waiting for a timeout.
            "GCE_METADATA_HOST": "127.0.0.1:9",
            "GCE_METADATA_IP": "127.0.0.1:9",
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def vertex_env(self, **extra: str) -> dict[str, str]:
        """Claude Code on Vertex AI with a service-account key, aimed at the emulator."""
        return {
            **self.base_env(),
            "CLAUDE_CODE_USE_VERTEX": "1",
            "ANTHROPIC_VERTEX_BASE_URL": f"{self.url}/v1",
            "ANTHROPIC_VERTEX_PROJECT_ID": PROJECT,
            "CLOUD_ML_REGION": "us-east5",
            "GOOGLE_APPLICATION_CREDENTIALS": str(self.key_file),
            **extra,
        }

    def bedrock_env(self, **extra: str) -> dict[str, str]:
        """Claude Code on Bedrock with access keys in the environment, aimed at the emulator."""
        return {
            **self.base_env(),
            "CLAUDE_CODE_USE_BEDROCK": "1",
            "ANTHROPIC_BEDROCK_BASE_URL": self.url,
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": AWS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
            **extra,
        }

    def anthropic_env(self, **extra: str) -> dict[str, str]:
        """Claude Code on the Anthropic API with a key, aimed at the emulator."""
        return {**self.base_env(), "ANTHROPIC_BASE_URL": self.url, "ANTHROPIC_API_KEY": API_KEY, **extra}

    def doctor(self, env: dict[str, str], *models: str) -> Report:
        """Resolve `env` as Claude Code would and run every check."""
        config = resolve(env=env, cwd=self.tmp, home=self.home)
        return diagnose(config, extra_models=models, base_env=env, home=self.home)


def emulator_config(**kw: object) -> EmulatorConfig:
    """An emulator config that accepts the scenarios' AWS keys and API key."""
    config = EmulatorConfig(**kw)  # type: ignore[arg-type]
    config.aws_credentials[AWS_KEY_ID] = AWS_SECRET
    config.anthropic_api_keys.append(API_KEY)
    return config


@contextlib.contextmanager
def scenario_factory(tmp_path: Path) -> Iterator[Callable[..., Scenario]]:
    """`make(**emulator_settings)` serves an emulator and sets up a user's machine around it."""
    stack = contextlib.ExitStack()
    count = 0

    def make(**settings: object) -> Scenario:
        nonlocal count
        count += 1
        app = create_emulator_app(emulator_config(**settings))
        srv = stack.enter_context(serving(app))
        app.state.base_url = srv.url
        root = tmp_path / f"machine-{count}"
        home = root / "home"
        home.mkdir(parents=True)
        key_file = root / "sa.json"
        info = write_service_account_key(
            key_file, token_uri=f"{srv.url}/token", client_email=SA_EMAIL, project_id=PROJECT
        )
        app.state.trust_key(info)
        return Scenario(app, srv.url, root, home, key_file)

    with stack:
        yield make
