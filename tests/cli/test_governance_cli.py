"""`cloudgate teams|users|keys|budgets|limits|spend` end to end, as real processes on a SQLite file."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cloudgate.cli.governance import KEY_WARNING
from cloudgate.governance.types import SpendEntry
from cloudgate.store import Store


class CLI:
    """`cloudgate` with a data directory of its own."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.data_dir = tmp_path / "data"

    @property
    def db_url(self) -> str:
        return f"sqlite+aiosqlite:///{self.data_dir / 'cloudgate.db'}"

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "CLOUDGATE_DATA_DIR": str(self.data_dir)}
        for name in ("CLOUDGATE_CONFIG", "CLOUDGATE_DATABASE_URL"):
            env.pop(name, None)
        return subprocess.run(
            [sys.executable, "-m", "cloudgate.cli.main", *argv],
            cwd=self.tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def ok(self, *argv: str) -> str:
        done = self.run(*argv)
        assert done.returncode == 0, (argv, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr
        return done.stdout

    def json(self, *argv: str) -> object:
        return json.loads(self.ok(*argv, "--format", "json"))

    def fails(self, *argv: str) -> str:
        done = self.run(*argv)
        assert done.returncode == 1, (argv, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr
        assert done.stderr.startswith("cloudgate: ")
        return done.stderr


@pytest.fixture
def cli(tmp_path: Path) -> CLI:
    return CLI(tmp_path)


def write_spend(url: str, entries: list[SpendEntry]) -> None:
    async def go() -> None:
        store = Store.open(url)
        try:
            await store.spend.write_spend(entries)
        finally:
            await store.close()

    asyncio.run(go())


def test_team_user_key_budget_revoke_and_spend(cli: CLI) -> None:
    team = cli.json("teams", "create", "platform", "--tag", "eng")
    assert isinstance(team, list) and team[0]["name"] == "platform" and team[0]["tags"] == ["eng"]
    team_id = team[0]["id"]
    table = cli.ok("teams", "list")
    assert table.splitlines()[0].split() == [
        "ID",
        "NAME",
        "TAGS",
        "REGIONS",
        "PROVIDERS",
        "BODIES",
        "CREATED",
    ]
    assert team_id in table and "platform" in table

    user = cli.json("users", "create", "ada", "--email", "ada@example.com", "--team", team_id)
    assert isinstance(user, list)
    user_id = user[0]["id"]
    assert [u["id"] for u in cli.json("users", "list", "--team", team_id)] == [user_id]  # type: ignore[union-attr,index]

    done = cli.run(
        "keys",
        "create",
        "--user",
        user_id,
        "--name",
        "laptop",
        "--model",
        "claude-sonnet-4-5",
        "--expires-in-days",
        "30",
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    plaintext = lines[-1]
    assert plaintext.startswith("cg-") and "laptop" in lines[0] and user_id in lines[0]
    assert KEY_WARNING in done.stderr and plaintext not in done.stderr

    keys = cli.json("keys", "list")
    assert isinstance(keys, list) and len(keys) == 1
    key = keys[0]
    assert key["prefix"] == plaintext[:10] and key["allowed_models"] == ["claude-sonnet-4-5"]
    key_table = cli.ok("keys", "list")
    assert key["id"] in key_table and plaintext not in key_table
    keys_csv = list(csv.DictReader(io.StringIO(cli.ok("keys", "list", "--format", "csv"))))
    assert keys_csv[0]["id"] == key["id"] and keys_csv[0]["is_admin"] == "false"

    # A total budget: the spend below is hours old, which on the 1st may be last month.
    budget = cli.json(
        "budgets", "set", "--scope", "user", "--id", user_id, "--period", "total", "--usd", "25"
    )
    assert isinstance(budget, list) and budget[0]["amount_usd"] == 25.0
    cli.ok("limits", "set", "--scope", "key", "--id", key["id"], "--rpm", "60", "--max-concurrent", "2")

    now = datetime.now(UTC)
    write_spend(
        cli.db_url,
        [
            SpendEntry(
                "r1",
                now - timedelta(hours=1),
                key["id"],
                user_id,
                team_id,
                model="claude-sonnet-4-5",
                input_tokens=100,
                output_tokens=20,
                cost_micro=1_250_000,
            ),
            SpendEntry(
                "r2",
                now - timedelta(hours=2),
                key["id"],
                user_id,
                team_id,
                model="claude-opus-4-1",
                output_tokens=5,
                cost_micro=2_000_000,
            ),
        ],
    )
    budgets = cli.json("budgets", "list")
    assert (
        isinstance(budgets, list) and budgets[0]["spent_usd"] == 3.25 and budgets[0]["remaining_usd"] == 21.75
    )
    budgets_table = cli.ok("budgets", "list")
    assert "25.00" in budgets_table and "3.25" in budgets_table and "21.75" in budgets_table

    revoked = cli.ok("keys", "revoke", key["id"])
    assert key["id"] in revoked
    assert cli.json("keys", "list") == []
    assert len(cli.json("keys", "list", "--all")) == 1  # type: ignore[arg-type]
    assert "already revoked" in cli.fails("keys", "revoke", key["id"])

    # Spend stays attributed after the key is revoked; every format carries the same figures.
    spend_table = cli.ok("spend", "--by", "model", "--since", "7d")
    head, rule, *rows = spend_table.splitlines()
    assert head.split()[:2] == ["MODEL", "REQUESTS"] and set(rule) <= {"-", " "}
    assert rows[0].split()[0] == "claude-opus-4-1" and rows[0].split()[-1] == "2.00"
    assert rows[-1].split()[0] == "total" and rows[-1].split()[-1] == "3.25"
    spend_csv = list(csv.DictReader(io.StringIO(cli.ok("spend", "--by", "key", "--format", "csv"))))
    assert spend_csv == [
        {
            "group": key["id"],
            "requests": "2",
            "attempts": "2",
            "input_tokens": "100",
            "output_tokens": "25",
            "cache_write_5m_tokens": "0",
            "cache_write_1h_tokens": "0",
            "cache_read_tokens": "0",
            "cost_usd": "3.25",
        }
    ]
    report = cli.json("spend", "--by", "team", "--since", "24h")
    assert isinstance(report, dict) and report["by"] == "team"
    assert report["data"][0]["group"] == team_id and report["total"]["cost_usd"] == 3.25
    assert cli.json("spend", "--since", "30m")["data"] == []  # type: ignore[index]
    by_day = cli.json("spend", "--by", "day", "--since", (now - timedelta(days=2)).date().isoformat())
    assert sum(r["requests"] for r in by_day["data"]) == 2  # type: ignore[index]


def test_key_regions_on_create_update_and_in_listings(cli: CLI) -> None:
    done = cli.run("keys", "create", "--name", "eu", "--regions", "eu,europe-west1", "--regions", "eu-west-1")
    assert done.returncode == 0, done.stderr
    key = cli.json("keys", "list")[0]  # type: ignore[index]
    assert key["allowed_regions"] == ["eu", "europe-west1", "eu-west-1"]
    table = cli.ok("keys", "list")
    assert "REGIONS" in table.splitlines()[0].split() and "eu,europe-west1,eu-west-1" in table
    listed_csv = list(csv.DictReader(io.StringIO(cli.ok("keys", "list", "--format", "csv"))))
    assert listed_csv[0]["allowed_regions"] == "eu;europe-west1;eu-west-1"

    updated = cli.json("keys", "update", key["id"], "--regions", "us", "--model", "m1", "--name", "us")
    assert updated[0]["allowed_regions"] == ["us"] and updated[0]["allowed_models"] == ["m1"]  # type: ignore[index]
    assert updated[0]["name"] == "us"  # type: ignore[index]
    kept = cli.json("keys", "update", key["id"], "--tag", "x")
    assert kept[0]["allowed_regions"] == ["us"] and kept[0]["tags"] == ["x"]  # type: ignore[index]
    cleared = cli.json("keys", "update", key["id"], "--no-regions", "--no-models")
    assert cleared[0]["allowed_regions"] is None and cleared[0]["allowed_models"] is None  # type: ignore[index]
    assert key["id"] in cli.ok("keys", "update", key["id"], "--regions", "global")


def test_team_regions_and_providers_on_create_update_and_in_listings(cli: CLI) -> None:
    team = cli.json("teams", "create", "emea", "--regions", "eu", "--providers", "bedrock,vertex")
    assert team[0]["allowed_regions"] == ["eu"] and team[0]["preferred_providers"] == ["bedrock", "vertex"]  # type: ignore[index]
    team_id = team[0]["id"]  # type: ignore[index]
    head, _, row = cli.ok("teams", "list").splitlines()
    assert head.split()[3:5] == ["REGIONS", "PROVIDERS"] and "bedrock,vertex" in row.split()
    updated = cli.json("teams", "update", team_id, "--providers", "anthropic", "--name", "europe")
    assert updated[0]["name"] == "europe" and updated[0]["preferred_providers"] == ["anthropic"]  # type: ignore[index]
    assert updated[0]["allowed_regions"] == ["eu"]  # type: ignore[index]
    cleared = cli.json("teams", "update", team_id, "--no-regions", "--no-providers")
    assert cleared[0]["allowed_regions"] is None and cleared[0]["preferred_providers"] is None  # type: ignore[index]
    teams_csv = list(csv.DictReader(io.StringIO(cli.ok("teams", "list", "--format", "csv"))))
    assert (teams_csv[0]["allowed_regions"], teams_csv[0]["preferred_providers"]) == ("", "")
    assert "Deleted team" in cli.ok("teams", "delete", team_id)


def test_log_bodies_on_keys_and_teams(cli: CLI) -> None:
    team = cli.json("teams", "create", "loud", "--log-bodies")[0]  # type: ignore[index]
    assert team["log_bodies"] is True
    assert cli.json("teams", "create", "quiet")[0]["log_bodies"] is False  # type: ignore[index]
    assert cli.json("teams", "update", team["id"], "--name", "louder")[0]["log_bodies"] is True  # type: ignore[index]
    assert cli.json("teams", "update", team["id"], "--no-log-bodies")[0]["log_bodies"] is False  # type: ignore[index]
    head, _, *rows = cli.ok("teams", "list").splitlines()
    assert "BODIES" in head.split() and all(" no " in row for row in rows)

    created = json.loads(cli.ok("keys", "create", "--log-bodies", "--format", "json"))
    assert created["log_bodies"] is True
    assert json.loads(cli.ok("keys", "create", "--format", "json"))["log_bodies"] is False
    assert cli.json("keys", "update", created["id"], "--tag", "x")[0]["log_bodies"] is True  # type: ignore[index]
    assert cli.json("keys", "update", created["id"], "--no-log-bodies")[0]["log_bodies"] is False  # type: ignore[index]
    assert cli.json("keys", "update", created["id"], "--log-bodies")[0]["log_bodies"] is True  # type: ignore[index]
    listed = list(csv.DictReader(io.StringIO(cli.ok("keys", "list", "--format", "csv"))))
    assert sorted(r["log_bodies"] for r in listed) == ["false", "true"]
    assert "BODIES" in cli.ok("keys", "list").splitlines()[0].split()


def test_clearing_and_setting_a_list_at_once_is_refused(cli: CLI) -> None:
    done = cli.run("teams", "update", "team_x", "--regions", "eu", "--no-regions")
    assert done.returncode == 2 and "not allowed with" in done.stderr


def test_spend_by_deployment_shows_attempts(cli: CLI) -> None:
    now = datetime.now(UTC)
    cli.ok("teams", "list")  # creates and migrates the store
    write_spend(
        cli.db_url,
        [
            SpendEntry("a", now, "key_a", deployment="vertex/europe-west1", cost_micro=1_000_000),
            SpendEntry("b", now, "key_a", deployment="bedrock/eu-west-1", attempts=3, cost_micro=500_000),
        ],
    )
    head, _, *rows = cli.ok("spend", "--by", "deployment", "--since", "1h").splitlines()
    assert head.split()[:3] == ["DEPLOYMENT", "REQUESTS", "ATTEMPTS"]
    assert rows[0].split()[:3] == ["vertex/europe-west1", "1", "1"]
    assert rows[1].split()[:3] == ["bedrock/eu-west-1", "1", "3"]
    assert rows[-1].split()[:3] == ["total", "2", "4"]
    report = cli.json("spend", "--by", "deployment", "--since", "1h")
    assert [(r["group"], r["attempts"]) for r in report["data"]] == [  # type: ignore[index]
        ("vertex/europe-west1", 1),
        ("bedrock/eu-west-1", 3),
    ]
    assert report["total"]["attempts"] == 4  # type: ignore[index]
    spend_csv = list(csv.DictReader(io.StringIO(cli.ok("spend", "--by", "deployment", "--format", "csv"))))
    assert [(r["group"], r["attempts"]) for r in spend_csv] == [
        ("vertex/europe-west1", "1"),
        ("bedrock/eu-west-1", "3"),
    ]


def test_rotate_prints_the_new_key_once(cli: CLI) -> None:
    done = cli.run("keys", "create", "--admin", "--format", "json")
    created = json.loads(done.stdout)
    assert created["key"].startswith("cg-") and created["is_admin"] is True and created["name"] == "cli"
    assert KEY_WARNING in done.stderr
    rotated = cli.run("keys", "rotate", created["id"])
    assert rotated.returncode == 0, rotated.stderr
    new_key = rotated.stdout.splitlines()[-1]
    assert new_key.startswith("cg-") and new_key != created["key"] and KEY_WARNING in rotated.stderr
    listed = cli.ok("keys", "list", "--all", "--format", "json")
    assert created["key"] not in listed and new_key not in listed
    assert "cannot be rotated" in cli.fails("keys", "rotate", created["id"])
    rows = list(
        csv.DictReader(io.StringIO(cli.ok("keys", "rotate", json.loads(listed)[0]["id"], "--format", "csv")))
    )
    assert rows[0]["key"].startswith("cg-")


def test_users_update_delete_and_teams_delete(cli: CLI) -> None:
    team_id = cli.json("teams", "create", "t")[0]["id"]  # type: ignore[index]
    user_id = cli.json("users", "create", "bob", "--email", "b@example.com")[0]["id"]  # type: ignore[index]
    moved = cli.json("users", "update", user_id, "--team", team_id, "--name", "robert", "--tag", "x")
    assert moved[0]["team_id"] == team_id and moved[0]["name"] == "robert" and moved[0]["tags"] == ["x"]  # type: ignore[index]
    cleared = cli.json("users", "update", user_id, "--no-team", "--no-email")
    assert cleared[0]["team_id"] is None and cleared[0]["email"] is None and cleared[0]["name"] == "robert"  # type: ignore[index]
    assert "Deleted team" in cli.ok("teams", "delete", team_id)
    assert cli.ok("teams", "list").strip() == "(none)"
    assert "Deleted user" in cli.ok("users", "delete", user_id)
    assert cli.json("users", "list") == []


def test_limits_and_budgets_list_and_delete(cli: CLI) -> None:
    team_id = cli.json("teams", "create", "t")[0]["id"]  # type: ignore[index]
    cli.ok("limits", "set", "--scope", "team", "--id", team_id, "--input-tpm", "1000")
    limits = list(csv.DictReader(io.StringIO(cli.ok("limits", "list", "--scope", "team", "--format", "csv"))))
    assert limits == [
        {
            "scope": "team",
            "scope_id": team_id,
            "requests_per_minute": "",
            "input_tokens_per_minute": "1000",
            "output_tokens_per_minute": "",
            "max_concurrent": "",
        }
    ]
    assert cli.ok("limits", "list", "--scope", "key").strip() == "(none)"
    assert "Removed" in cli.ok("limits", "delete", "--scope", "team", "--id", team_id)
    assert "no limits" in cli.fails("limits", "delete", "--scope", "team", "--id", team_id)
    budget = cli.json(
        "budgets", "set", "--scope", "team", "--id", team_id, "--period", "total", "--usd", "0.5"
    )
    assert budget[0]["period"] == "total"  # type: ignore[index]
    assert [b["id"] for b in cli.json("budgets", "list", "--scope", "team")] == [budget[0]["id"]]  # type: ignore[index,union-attr]
    assert "Deleted budget" in cli.ok("budgets", "delete", budget[0]["id"])  # type: ignore[index]
    assert "no budget" in cli.fails("budgets", "delete", budget[0]["id"])  # type: ignore[index]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("teams", "delete", "team_missing"), "no team 'team_missing'"),
        (("users", "create", "x", "--team", "team_missing"), "team_missing"),
        (("users", "delete", "user_missing"), "no user"),
        (("users", "update", "user_missing", "--name", "y"), "user_missing"),
        (("keys", "create", "--user", "user_missing"), "user_missing"),
        (("keys", "revoke", "key_missing"), "no key"),
        (("keys", "rotate", "key_missing"), "no key"),
        (("keys", "create", "--expires-in-days", "-1"), "--expires-in-days"),
        (("budgets", "set", "--scope", "team", "--id", "team_missing", "--usd", "5"), "team_missing"),
        (("budgets", "set", "--scope", "team", "--id", "x", "--usd", "lots"), "--usd"),
        (("budgets", "set", "--scope", "team", "--id", "x", "--usd", "-5"), "negative"),
        (("limits", "set", "--scope", "key", "--id", "key_missing", "--rpm", "5"), "key_missing"),
        (("limits", "set", "--scope", "key", "--id", "k"), "at least one"),
        (("limits", "set", "--scope", "key", "--id", "k", "--rpm", "0"), "at least 1"),
        (("spend", "--since", "last week"), "--since"),
        (("spend", "--since", "1d", "--until", "2d"), "--until"),
        (("keys", "create", "--regions", "EU"), "--regions: 'EU' is not a region"),
        (("keys", "create", "--regions", "eu,"), "--regions: a region cannot be empty"),
        (("keys", "update", "key_missing", "--regions", "eu west"), "--regions"),
        (("keys", "update", "key_missing", "--regions", "eu"), "key_missing"),
        (("teams", "create", "t", "--providers", "azure"), "--providers: 'azure' is not a provider"),
        (("teams", "create", "t", "--regions", "x" * 65), "at most 64"),
        (("teams", "update", "team_missing", "--providers", "vertex"), "team_missing"),
    ],
)
def test_errors_exit_1_with_a_message(cli: CLI, argv: tuple[str, ...], message: str) -> None:
    assert message in cli.fails(*argv)


def test_listed_in_the_main_help(cli: CLI) -> None:
    listed = cli.ok("--help")
    for command in ("teams", "users", "keys", "budgets", "limits", "spend"):
        assert f"    {command} " in listed


def test_duplicate_names_exit_1(cli: CLI) -> None:
    cli.ok("teams", "create", "dup")
    assert "already exists" in cli.fails("teams", "create", "dup")
    cli.ok("users", "create", "ada")
    assert "already exists" in cli.fails("users", "create", "ada")
