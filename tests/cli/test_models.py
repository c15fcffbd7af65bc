"""`cloudgate models`: the catalog as a table, CSV or JSON; a refreshed catalog validated and saved."""

from __future__ import annotations

import contextlib
import csv
import functools
import http.server
import io
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from cloudgate.catalog import Catalog, default_catalog
from cloudgate.cli.main import main

CLOUDGATE = str(Path(sys.executable).parent / "cloudgate")
SMALL_CATALOG = {
    "version": 1,
    "families": {"sonnet": "claude-sonnet-9"},
    "models": [
        {
            "id": "claude-sonnet-9",
            "name": "Claude Sonnet 9",
            "family": "sonnet",
            "vertex": "claude-sonnet-9@20300101",
            "bedrock": "anthropic.claude-sonnet-9-v1:0",
            "vertex_regions": ["us-east5"],
            "prices": {"input": 2, "output": 10, "cache_read": 0.2},
            "context_window": 1000000,
        }
    ],
}


def test_console_script_json_is_the_whole_catalog() -> None:
    done = subprocess.run(
        [CLOUDGATE, "models", "--format", "json"], capture_output=True, text=True, timeout=60, check=True
    )
    rows = json.loads(done.stdout)
    assert [r["id"] for r in rows] == [e.id for e in default_catalog().entries]
    sonnet = next(r for r in rows if r["id"] == "claude-sonnet-4-5-20250929")
    assert sonnet["vertex"] == "claude-sonnet-4-5@20250929" and sonnet["global"] is True
    assert (sonnet["input"], sonnet["output"], sonnet["cache_read"]) == (3.0, 15.0, 0.3)
    assert sonnet["long_context"] == {
        "beta": "context-1m-2025-08-07",
        "threshold": 200000,
        "input": 6.0,
        "output": 22.5,
    }
    assert sonnet["vertex_regional_premium"] == 0.1
    assert "\x1b[" not in done.stdout


def test_table_has_every_platform_column(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[0]
    for column in (
        "MODEL",
        "VERTEX ID",
        "VERTEX REGIONS",
        "GLOBAL",
        "BEDROCK ID",
        "IN $/MTOK",
        "OUT",
        "CACHE R",
        "REGIONAL +",
        "CONTEXT",
    ):
        assert column in header
    opus41 = next(line for line in lines if line.startswith("claude-opus-4-1-20250805 "))
    assert "us-east5,europe-west1" in opus41 and " no " in opus41
    sonnet45 = next(line for line in lines if line.startswith("claude-sonnet-4-5-20250929 "))
    assert "10%" in sonnet45 and "1M with beta context-1m-2025-08-07" in sonnet45


def test_platform_filter_and_csv(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["models", "--platform", "vertex", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert "bedrock" not in rows[0] and rows[0]["vertex_regions"]
    by_id = {r["id"]: r for r in rows}
    assert by_id["claude-3-5-haiku-20241022"]["global"] == "false"
    assert by_id["claude-3-5-haiku-20241022"]["vertex_regions"] == "us-east5"
    assert main(["models", "--platform", "bedrock", "--format", "csv"]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert header.startswith("id,bedrock,bedrock_on_demand") and "vertex" not in header


def test_refresh_from_a_file_and_save(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "new.yaml"
    source.write_text(yaml.safe_dump(SMALL_CATALOG))
    saved = tmp_path / "conf" / "models.yaml"
    assert main(["models", "--refresh", str(source), "--save", str(saved), "--format", "json"]) == 0
    out = capsys.readouterr()
    rows = json.loads(out.out)
    assert [r["id"] for r in rows] == ["claude-sonnet-9"] and rows[0]["context"] == "1M"
    assert f"catalog_file: {saved}" in out.err
    assert Catalog.from_file(saved).lookup("claude-sonnet-9@20300101") is not None


@contextlib.contextmanager
def serve_dir(root: Path) -> Iterator[str]:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_refresh_from_a_url(tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "models.yaml").write_text(yaml.safe_dump(SMALL_CATALOG))
    monkeypatch.setattr(http.server.SimpleHTTPRequestHandler, "log_message", lambda *a: None)
    with serve_dir(tmp_path) as url:
        assert main(["models", "--refresh", f"{url}/models.yaml", "--format", "csv"]) == 0
        assert "claude-sonnet-9" in capsys.readouterr().out
        assert main(["models", "--refresh", f"{url}/missing.yaml"]) == 1
        assert "answered HTTP 404" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ("models: [", "not valid YAML"),
        ("just: text", "expected a mapping with a 'models' list"),
        ("models:\n  - {id: claude-x}", "'prices' needs at least 'input' and 'output'"),
        ("models: []", "lists no models"),
    ],
)
def test_invalid_catalog_is_refused_and_not_saved(tmp_path: Path, capsys, content: str, error: str) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "bad.yaml"
    source.write_text(content)
    saved = tmp_path / "out.yaml"
    assert main(["models", "--refresh", str(source), "--save", str(saved)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cloudgate: ") and error in err
    assert not saved.exists()


def test_save_needs_refresh(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["models", "--save", "x.yaml"]) == 2
    assert "--save needs --refresh" in capsys.readouterr().err
