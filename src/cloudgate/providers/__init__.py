"""Upstream providers: each builds its wire request, authenticates, sends, and maps errors."""
