"""Helpers the subcommands share: logging set-up and settings with command-line overrides."""

from __future__ import annotations

import argparse
from typing import Any

from cloudgate.config import ConfigError, Settings, load_settings
from cloudgate.observability.logging import LogFormat, configure_logging


def setup_logging(level: str, fmt: LogFormat = "text") -> None:
    """Log lines on stderr at `level`: plain text, or one JSON object each (`fmt="json"`),
    with the request id when logged inside a request."""
    configure_logging(level, fmt)


def settings_from_args(args: argparse.Namespace, overrides: dict[str, Any] | None = None) -> Settings:
    """Settings from --config, the environment and explicit flags; exits with a message if invalid."""
    try:
        return load_settings(getattr(args, "config", None), overrides=overrides or {})
    except ConfigError as exc:
        raise SystemExit(f"cloudgate: {exc}") from None
