from cloudgate.routing.affinity import AffinityMap, carries_thinking, session_key


def test_session_header_wins_else_the_prompt_prefix():
    body = {"system": "s", "messages": [{"role": "user", "content": "hi"}]}
    assert session_key("abc", body) == "s:abc"
    longer = {**body, "messages": [*body["messages"], {"role": "assistant", "content": "yo"}]}
    assert session_key(None, body) == session_key(None, longer), "later turns keep the key"
    other = {"system": "t", "messages": body["messages"]}
    assert session_key(None, body) != session_key(None, other)
    assert session_key(None, {"messages": []}) is None


def test_entries_expire_and_the_least_recent_go_first():
    now = [0.0]
    amap = AffinityMap(ttl=10, clock=lambda: now[0], limit=2)
    amap.remember("a", "d1", "vertex")
    amap.remember("b", "d2", "vertex")
    amap.remember("c", "d3", "bedrock")
    assert amap.get("a") is None and amap.get("b").deployment == "d2"
    now[0] = 11
    assert amap.get("c") is None and len(amap) == 1


def test_thinking_blocks_are_found_in_assistant_turns_only():
    plain = {"messages": [{"role": "user", "content": [{"type": "text", "text": "thinking"}]}]}
    assert not carries_thinking(plain)
    thought = {
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "..", "signature": "sig"}]},
        ],
    }
    assert carries_thinking(thought)
