import os
import socket
import subprocess
import sys
from pathlib import Path

import requests

from cloudgate.emulator import EmulatorConfig, create_emulator_app
from cloudgate.util.server import free_port, serving
from tests.cli.helpers import wait_until_up


def _cloudgate(*args: str, env: dict[str, str] | None = None, **kw) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cloudgate.cli.main", *args],
        env={"PATH": os.environ["PATH"], **(env or {})},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def test_bad_settings_exit_with_a_message(tmp_path: Path):
    bad = tmp_path / "c.yaml"
    bad.write_text("gateway:\n  port: many\n")
    proc = _cloudgate("serve", "--config", str(bad))
    _, err = proc.communicate(timeout=30)
    assert proc.returncode != 0 and "gateway.port" in err and "Traceback" not in err


def test_refuses_keyless_mode_off_loopback(tmp_path: Path):
    proc = _cloudgate(
        "serve", "--host", "0.0.0.0", "--port", str(free_port()), env={"CLOUDGATE_ALLOW_KEYLESS": "1"}
    )
    _, err = proc.communicate(timeout=30)
    assert proc.returncode != 0 and "only allowed with a loopback host" in err and "Traceback" not in err


def test_serves_requests_from_a_settings_file(tmp_path: Path):
    with serving(create_emulator_app(EmulatorConfig(static_tokens=["tok"]))) as emulator:
        port = free_port()
        config = tmp_path / "cloudgate.yaml"
        config.write_text(
            f"data_dir: {tmp_path / 'data'}\n"
            f"gateway:\n  port: {port}\n  keys: [k]\n"
            f"vertex:\n  project_id: p\n  base_url: {emulator.url}/v1\n  access_token: tok\n"
        )
        proc = _cloudgate("serve", "--config", str(config))
        try:
            wait_until_up(f"http://127.0.0.1:{port}/health", proc)
            resp = requests.post(
                f"http://127.0.0.1:{port}/v1/messages",
                json={
                    "model": "claude-haiku-4-5",
                    "max_tokens": 20,
                    "messages": [{"role": "user", "content": "hi"}],
                },
                headers={"x-api-key": "k"},
                timeout=10,
            )
            assert resp.status_code == 200 and resp.json()["content"][0]["text"]
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=20)
        # One structured line per request in the log.
        assert '"status":200' in err and '"upstream_model":"claude-haiku-4-5@20251001"' in err


def test_workers_must_be_positive():
    for value in ("0", "-2"):
        proc = _cloudgate("serve", "--workers", value, "--port", str(free_port()))
        _, err = proc.communicate(timeout=30)
        assert proc.returncode != 0 and f"--workers must be 1 or more, not {value}" in err
        assert "Traceback" not in err


def test_port_in_use_is_one_clear_error(tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _cloudgate(
            "serve", "--workers", "2", "--port", str(port), env={"CLOUDGATE_DATA_DIR": str(tmp_path)}
        )
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert (
        err.strip().splitlines()[-1]
        == f"cloudgate: cannot listen on 127.0.0.1:{port}: address already in use"
    )
    assert "Traceback" not in err


def test_the_open_files_limit_is_raised_to_the_hard_limit():
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = min(256, hard)

    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))

    code = (
        "import resource\n"
        "from cloudgate.cli.serve import raise_open_files_limit\n"
        "before = resource.getrlimit(resource.RLIMIT_NOFILE)[0]\n"
        "raise_open_files_limit()\n"
        "print(before, resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], preexec_fn=lower, capture_output=True, text=True, timeout=60, check=True
    )
    before, after = map(int, done.stdout.split())
    assert before == low
    assert after == (hard if hard != resource.RLIM_INFINITY else max(low, 1 << 20))


def test_the_upstream_connection_cap_is_a_setting():
    from cloudgate.config import load_settings
    from cloudgate.gateway import create_gateway_app

    def transport_limit(**gateway: object) -> int:
        settings = load_settings(env={}, overrides={"gateway": {"keys": ["cg-test"], **gateway}})
        return int(create_gateway_app(settings, governance=False).state.transport._limit)

    assert transport_limit(max_upstream_connections=3) == 3
    assert transport_limit() == 10_000
