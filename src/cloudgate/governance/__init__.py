"""Governance: who may call, how much they may spend, how fast, and what it cost."""
