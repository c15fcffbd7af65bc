import copy

from cloudgate.config.settings import CachingSettings
from cloudgate.gateway.caching import apply_cache_policy, caching_disabled

EPH = {"type": "ephemeral"}


def _body() -> dict:
    return {
        "system": [{"type": "text", "text": "s", "cache_control": dict(EPH)}],
        "tools": [{"name": "Bash", "input_schema": {}, "cache_control": dict(EPH)}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": dict(EPH)}]},
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t",
                        "content": [{"type": "text", "text": "x", "cache_control": dict(EPH)}],
                    }
                ],
            },
        ],
    }


def _markers(body: dict) -> int:
    return str(body).count("cache_control")


def test_disable_removes_every_marker():
    body = _body()
    assert apply_cache_policy(body, CachingSettings(disable=True), "sonnet")
    assert _markers(body) == 0


def test_family_switches():
    settings = CachingSettings(disable_haiku=True)
    assert caching_disabled(settings, "haiku") and not caching_disabled(settings, "opus")
    body = _body()
    assert not apply_cache_policy(body, settings, "opus")
    assert body == _body()


def test_one_hour_ttl_added_only_where_missing():
    body = _body()
    body["system"][0]["cache_control"]["ttl"] = "5m"
    assert apply_cache_policy(body, CachingSettings(ttl_1h=True), "")
    assert body["system"][0]["cache_control"]["ttl"] == "5m"
    assert body["tools"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert body["messages"][1]["content"][0]["content"][0]["cache_control"]["ttl"] == "1h"


def test_default_policy_touches_nothing():
    body = _body()
    before = copy.deepcopy(body)
    assert not apply_cache_policy(body, CachingSettings(), "sonnet")
    assert body == before
