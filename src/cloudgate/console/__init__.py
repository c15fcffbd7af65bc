"""The web console for administrators, served by the gateway at `/ui` (see docs/user-guide.md)."""

from cloudgate.console.app import PREFIX, ROUTES, Console, Route

__all__ = ["PREFIX", "ROUTES", "Console", "Route"]
