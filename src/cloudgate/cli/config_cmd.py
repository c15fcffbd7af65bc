"""`cloudgate config`: Claude Code's configuration as Claude Code resolves it, and writing it.

`show` reads the environment and Claude Code's five settings files and prints the platform,
endpoint, models with their platform ids and regions, credentials, caching, every variable
with where it came from, and what is wrong. `set` writes a settings file's `env` object (or
`apiKeyHelper`, `model`) the way `claude config set --global env '{...}'` does.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from cloudgate.cli.output import Column, table
from cloudgate.clientconfig import (
    ResolvedConfig,
    SettingsFileError,
    mask_value,
    parse_env_argument,
    project_settings_path,
    resolve,
    update_settings_file,
    user_settings_path,
)
from cloudgate.clientconfig.settings_files import local_settings_path

# Top-level settings `config set` writes besides `env`: both are plain strings.
_STRING_KEYS = ("apiKeyHelper", "model")


def add_parser(sub: Any) -> None:
    """Register the subcommand."""
    p = sub.add_parser(
        "config",
        help="Claude Code's configuration: show it resolved, or set variables in its settings files",
        description="Show Claude Code's configuration resolved from the environment and its settings "
        "files (as Claude Code resolves it), or write variables into a settings file.",
    )
    actions = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    show = actions.add_parser(
        "show",
        help="the resolved configuration: platform, endpoint, models, regions, credentials, problems",
        description="The resolved configuration: platform, endpoint, models, regions, credentials, "
        "caching, each variable with its source, and problems.",
    )
    show.add_argument("--json", action="store_true", help="one JSON document, for scripts")
    show.add_argument(
        "--settings", metavar="FILE", help="a settings file (or JSON) as Claude Code's --settings takes"
    )
    show.set_defaults(run=run_show)

    s = actions.add_parser(
        "set",
        help="write env variables (or apiKeyHelper, model) into a Claude Code settings file",
        description="Merge into a Claude Code settings file, as `claude config set` does: "
        '`set --global env \'{"CLAUDE_CODE_USE_VERTEX": "1"}\'` adds those variables to the '
        "file's env object (null removes one); other keys and variables are kept.",
    )
    where = s.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--global", "-g", dest="scope", action="store_const", const="user",
        help="the user's settings: ~/.claude/settings.json ($CLAUDE_CONFIG_DIR/settings.json)",
    )  # fmt: skip
    where.add_argument(
        "--project", dest="scope", action="store_const", const="project",
        help="the project's shared settings: ./.claude/settings.json",
    )  # fmt: skip
    where.add_argument(
        "--local", dest="scope", action="store_const", const="local",
        help="the project's personal settings: ./.claude/settings.local.json",
    )  # fmt: skip
    s.add_argument("key", metavar="KEY", help="env, apiKeyHelper or model")
    s.add_argument("value", metavar="VALUE", help="for env a JSON object of variables; else a string")
    s.set_defaults(run=run_set)


def run_show(args: argparse.Namespace) -> int:
    """`config show`: print the resolved configuration."""
    resolved = resolve(settings_file=args.settings)
    if args.json:
        sys.stdout.write(json.dumps(resolved.as_dict(), indent=2) + "\n")
    elif sys.stdout.isatty():
        _show_rich(resolved)
    else:
        sys.stdout.write(render_plain(resolved) + "\n")
    return 0


def run_set(args: argparse.Namespace) -> int:
    """`config set`: merge a value into one settings file."""
    path = settings_path_for(args.scope)
    try:
        if args.key == "env":
            doc = update_settings_file(path, env=parse_env_argument(args.value))
        elif args.key in _STRING_KEYS:
            doc = update_settings_file(path, values={args.key: args.value})
        else:
            raise SettingsFileError(
                f"cannot set {args.key!r}: cloudgate config set writes env, apiKeyHelper and model"
            )
    except SettingsFileError as exc:
        print(f"cloudgate config set: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {path}")
    env = doc.get("env") or {}
    for name in sorted(env):
        print(f"  {name}={mask_value(name, str(env[name]))}")
    for key in _STRING_KEYS:
        if key in doc:
            print(f"  {key}: {doc[key]}")
    return 0


# -- rendering ----------------------------------------------------------------------------------


def _summary_rows(resolved: ResolvedConfig) -> list[dict[str, Any]]:
    r = resolved
    cache = r.caching
    caching = "off (DISABLE_PROMPT_CACHING)" if cache.disabled else "on"
    off_for = [f for f in ("opus", "sonnet", "haiku") if getattr(cache, f"disabled_{f}")]
    if off_for and not cache.disabled:
        caching += f", off for {', '.join(off_for)}"
    if cache.ttl_1h:
        caching += ", 1-hour TTL"
    rows = [
        ("platform", r.platform),
        ("base URL", r.base_url or "(the platform's own endpoint)"),
        ("project", r.project),
        ("region", r.region),
        ("auth", r.auth + (" (cloud auth skipped)" if r.skip_auth else "")),
        ("auth detail", r.auth_detail),
        ("apiKeyHelper", r.api_key_helper),
        ("prompt caching", caching),
        ("1M context", "yes" if r.one_m_context else "no"),
    ]
    return [{"setting": k, "value": v} for k, v in rows if v is not None]


def _sections(resolved: ResolvedConfig) -> list[tuple[str, list[Column], list[dict[str, Any]]]]:
    doc = resolved.as_dict()
    variables = [
        {"name": name, "value": value.replace("\n", " | "), "source": doc["sources"].get(name, "")}
        for name, value in doc["env"].items()
    ]
    files = [
        {
            "scope": f["scope"],
            "path": f["path"],
            "state": f["error"] or ("read" if f["exists"] else "not present"),
        }
        for f in doc["files"]
    ]
    return [
        (
            "Claude Code configuration",
            [("SETTING", "setting", ""), ("VALUE", "value", "")],
            _summary_rows(resolved),
        ),
        (
            "Models",
            [
                ("ROLE", "role", ""),
                ("MODEL", "name", ""),
                ("PLATFORM ID", "platform_id", ""),
                ("REGION", "region", ""),
                ("ENDPOINT", "endpoint", ""),
            ],
            doc["models"],
        ),
        ("Variables", [("NAME", "name", ""), ("VALUE", "value", ""), ("SOURCE", "source", "")], variables),
        ("Settings files", [("SCOPE", "scope", ""), ("PATH", "path", ""), ("STATE", "state", "")], files),
    ]


def render_plain(resolved: ResolvedConfig) -> str:
    """The resolved configuration as aligned plain text (for pipes and logs)."""
    parts = [f"{title}\n{table(rows, columns)}" for title, columns, rows in _sections(resolved)]
    parts.append("Problems\n" + ("\n".join(f"- {p}" for p in resolved.problems) or "(none)"))
    return "\n\n".join(parts)


def _show_rich(resolved: ResolvedConfig) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console()
    for title, columns, rows in _sections(resolved):
        t = Table(title=title, title_justify="left", show_header=True, header_style="bold")
        for header, _field, _kind in columns:
            t.add_column(header, overflow="fold")
        for row in rows:
            # Text, not markup: values such as `sonnet[1m]` must print as written.
            t.add_row(*(Text("-" if row.get(f) is None else str(row.get(f))) for _h, f, _k in columns))
        console.print(t)
    if resolved.problems:
        console.print(Text("Problems", style="bold red"))
        for problem in resolved.problems:
            console.print(Text.assemble(("  • ", "red"), problem), highlight=False)
    else:
        console.print(Text("No problems found.", style="green"))


def settings_path_for(scope: str, cwd: Path | None = None, home: Path | None = None) -> Path:
    """The settings file `config set` writes for a scope ("user", "project", "local")."""
    if scope == "user":
        return user_settings_path(os.environ, home)
    if scope == "project":
        return project_settings_path(cwd)
    return local_settings_path(cwd)
