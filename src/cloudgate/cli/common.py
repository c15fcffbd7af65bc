"""Helpers the subcommands share: logging set-up and settings with command-line overrides."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from cloudgate.config import ConfigError, Settings, load_settings


def setup_logging(level: str) -> None:
    """Plain log lines on stderr at `level`."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )


def settings_from_args(args: argparse.Namespace, overrides: dict[str, Any] | None = None) -> Settings:
    """Settings from --config, the environment and explicit flags; exits with a message if invalid."""
    try:
        return load_settings(getattr(args, "config", None), overrides=overrides or {})
    except ConfigError as exc:
        raise SystemExit(f"cloudgate: {exc}") from None
