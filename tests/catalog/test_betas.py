from cloudgate.catalog.betas import BetaTable, default_betas


def test_vertex_rules_follow_claude_codes_vertex_mode():
    vertex = default_betas().for_platform("vertex")
    assert vertex.rejected["context-management-2025-06-27"].fields == ("context_management",)
    assert vertex.rejected["advanced-tool-use-2025-11-20"].replace_with == "tool-search-tool-2025-10-19"
    # Every beta Claude Code 2.1.328 sends in Vertex mode is accepted.
    for beta in (
        "claude-code-20250219",
        "interleaved-thinking-2025-05-14",
        "web-search-2025-03-05",
        "thinking-token-count-2026-05-13",
        "tool-search-tool-2025-10-19",
        "effort-2025-11-24",
    ):
        assert beta in vertex.accepted
    assert not set(vertex.rejected) & vertex.accepted


def test_unknown_platform_has_empty_rules():
    rules = BetaTable.from_data({}).for_platform("nowhere")
    assert rules.rejected == {} and rules.accepted == frozenset()
