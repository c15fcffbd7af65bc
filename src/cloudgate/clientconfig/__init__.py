"""Claude Code's client configuration (environment + settings files), resolved as Claude Code
resolves it, for `cloudgate config`, `cloudgate ask`, `cloudgate doctor` and the client library."""

from cloudgate.clientconfig.resolve import (
    AUTH_KINDS,
    PLATFORMS,
    Caching,
    ModelChoice,
    ResolvedConfig,
    choice_for,
    effective_base_url,
    mask_value,
    platform_model_id,
    resolve,
)
from cloudgate.clientconfig.settings_files import (
    SCOPES,
    SettingsFile,
    SettingsFileError,
    managed_settings_path,
    parse_env_argument,
    project_settings_path,
    settings_layers,
    update_settings_file,
    user_settings_path,
)

__all__ = [
    "AUTH_KINDS",
    "PLATFORMS",
    "SCOPES",
    "Caching",
    "ModelChoice",
    "ResolvedConfig",
    "SettingsFile",
    "SettingsFileError",
    "choice_for",
    "effective_base_url",
    "managed_settings_path",
    "mask_value",
    "parse_env_argument",
    "platform_model_id",
    "project_settings_path",
    "resolve",
    "settings_layers",
    "update_settings_file",
    "user_settings_path",
]
