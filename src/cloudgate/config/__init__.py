"""Settings: a YAML file plus environment variables, with Claude Code's own variables honoured."""

from cloudgate.config.loader import ConfigError, load_settings
from cloudgate.config.settings import (
    AnthropicSettings,
    BedrockSettings,
    CachingSettings,
    GatewaySettings,
    ModelSettings,
    Settings,
    TimeoutSettings,
    VertexSettings,
)

__all__ = [
    "AnthropicSettings",
    "BedrockSettings",
    "CachingSettings",
    "ConfigError",
    "GatewaySettings",
    "ModelSettings",
    "Settings",
    "TimeoutSettings",
    "VertexSettings",
    "load_settings",
]
