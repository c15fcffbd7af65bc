"""Readiness: whether the gateway can serve, which needs its store to answer."""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

STORE_TIMEOUT = 1.0  # seconds: a probe must answer well within the orchestrator's own timeout


async def store_problem(engine: AsyncEngine, timeout: float = STORE_TIMEOUT) -> str | None:  # noqa: ASYNC109
    """None when the store answers `SELECT 1` within `timeout` seconds, else why not."""
    try:
        async with asyncio.timeout(timeout):
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
    except TimeoutError:
        return f"the store did not answer within {timeout:g} s"
    except Exception as exc:  # any driver error means the same thing to a probe
        detail = str(getattr(exc, "orig", None) or exc).splitlines()[0][:200]
        return f"the store is unreachable: {type(exc).__name__}: {detail}"
    return None
