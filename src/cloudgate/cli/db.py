"""`cloudgate db`: bring the store's schema up to date, or show where it stands."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from cloudgate.cli.common import settings_from_args, setup_logging
from cloudgate.store.engine import database_url
from cloudgate.store.migrate import current_revision, head_revision, upgrade


def add_parser(sub: Any) -> None:
    """Register the subcommand."""
    p = sub.add_parser("db", help="manage the store's database", description="Manage the store's database.")
    actions = p.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    for name, help_text, run in (
        ("upgrade", "apply pending migrations", run_upgrade),
        ("current", "print the database's revision", run_current),
    ):
        a = actions.add_parser(name, help=help_text, description=help_text.capitalize() + ".")
        a.add_argument(
            "--config", "-c", help="settings file (default: $CLOUDGATE_CONFIG or ./cloudgate.yaml)"
        )
        a.add_argument("--url", help="database URL (store.url; default: SQLite in the data directory)")
        a.set_defaults(run=run)


def _url(args: argparse.Namespace) -> str:
    overrides: dict[str, Any] = {"store": {"url": args.url}} if args.url else {}
    settings = settings_from_args(args, overrides)
    setup_logging(settings.log_level)
    return database_url(settings)


def _shown(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def run_upgrade(args: argparse.Namespace) -> int:
    """Apply every pending migration."""
    url = _url(args)
    try:
        revision = asyncio.run(_upgrade(url))
    except (SQLAlchemyError, OSError, ValueError) as exc:
        raise SystemExit(f"cloudgate: cannot upgrade {_shown(url)}: {exc}") from None
    print(f"{_shown(url)}: at revision {revision}")
    return 0


async def _upgrade(url: str) -> str | None:
    await upgrade(url)
    return await current_revision(url)


def run_current(args: argparse.Namespace) -> int:
    """Print the database's revision (and whether it is the newest)."""
    url = _url(args)
    try:
        revision = asyncio.run(current_revision(url))
    except (SQLAlchemyError, OSError, ValueError) as exc:
        raise SystemExit(f"cloudgate: cannot read {_shown(url)}: {exc}") from None
    head = head_revision()
    if revision is None:
        print(f"none (empty database; head is {head})")
    elif revision == head:
        print(f"{revision} (head)")
    else:
        print(f"{revision} (head is {head}: run `cloudgate db upgrade`)")
    return 0
