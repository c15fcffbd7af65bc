"""Choosing where a call goes: model names to upstream ids, regions, projects."""

from cloudgate.routing.router import ONE_M_BETA, Router

__all__ = ["ONE_M_BETA", "Router"]
