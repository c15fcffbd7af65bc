"""A 20-turn session keeps one deployment while it is healthy, so its cache reads keep growing."""

from __future__ import annotations

import itertools
import re

from tests.gateway.test_app import post

from cloudgate.emulator import EmulatorConfig, Fault

_LOCATION = re.compile(r"/locations/([^/]+)/")
SYSTEM = "You are a careful assistant. " * 60  # long enough for the emulator's cache minimum


def _turn(history: list[dict], text: str) -> dict:
    history.append(
        {"role": "user", "content": [{"type": "text", "text": text, "cache_control": {"type": "ephemeral"}}]}
    )
    return {
        "model": "claude-sonnet-4-5-20250929",
        "max_tokens": 30,
        "system": [{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}],
        "messages": history,
    }


def _drop_markers(history: list[dict]) -> None:
    # Claude Code keeps a marker on the newest user turn only.
    for message in history:
        if message["role"] == "user" and isinstance(message["content"], list):
            for block in message["content"]:
                block.pop("cache_control", None)


def test_a_session_keeps_its_deployment_and_its_cache(make_stack) -> None:
    gw = make_stack(
        emulator=EmulatorConfig(min_cacheable_tokens=64),
        settings={
            "routing": {
                "deployments": [
                    {"provider": "vertex", "region": "us-east5"},
                    {"provider": "vertex", "region": "europe-west1"},
                    {"provider": "vertex", "region": "asia-southeast1"},
                ],
                "cooldown_failures": 1,
            }
        },
    )
    history: list[dict] = []
    reads: list[int] = []
    for turn in range(20):
        body = _turn(history, f"turn {turn}: tell me more about item {turn}")
        resp = post(gw, "/v1/messages", body, x_claude_code_session_id="session-1")
        assert resp.status_code == 200, resp.text
        answer = resp.json()
        reads.append(answer["usage"]["cache_read_input_tokens"])
        _drop_markers(history)
        history.append({"role": "assistant", "content": answer["content"]})
    places = [m.group(1) for r in gw.upstream_calls if (m := _LOCATION.search(r.path))]
    assert len(places) == 20 and len(set(places)) == 1, places
    home = places[0]
    assert reads[0] == 0
    assert all(later > earlier for earlier, later in itertools.pairwise(reads)), reads

    # Its deployment fails: the session moves once, warms a new cache there, and stays.
    gw.emulator.state.faults.add(Fault(kind="server_error", status=503, location=home))
    moved_reads = []
    for turn in range(20, 25):
        body = _turn(history, f"turn {turn}")
        resp = post(gw, "/v1/messages", body, x_claude_code_session_id="session-1")
        assert resp.status_code == 200, resp.text
        moved_reads.append(resp.json()["usage"]["cache_read_input_tokens"])
        _drop_markers(history)
        history.append({"role": "assistant", "content": resp.json()["content"]})
    places = [m.group(1) for r in gw.upstream_calls if (m := _LOCATION.search(r.path))]
    after = places[20:]
    assert after[0] == home and len(set(after[1:])) == 1 and after[1] != home, after
    assert moved_reads[0] == 0 and all(b > a for a, b in itertools.pairwise(moved_reads)), moved_reads

    # Another session spreads independently: affinity is per session, not global.
    other = {
        "model": "claude-sonnet-4-5-20250929",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "x"}],
    }
    assert post(gw, "/v1/messages", other, x_claude_code_session_id="session-2").status_code == 200
