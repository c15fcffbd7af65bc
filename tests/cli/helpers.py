"""Helpers for tests that run `cloudgate` as a real subprocess."""

from __future__ import annotations

import subprocess
import time

import requests


def wait_until_up(url: str, proc: subprocess.Popen[str], timeout: float = 20.0) -> None:
    """Poll `url` until it answers 2xx; fail if the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(url, timeout=1).ok:
                return
        except requests.ConnectionError:
            pass
        if proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"process exited with {proc.returncode}: {err[-2000:]}")
        assert time.monotonic() < deadline, f"{url} did not come up in {timeout}s"
        time.sleep(0.1)
