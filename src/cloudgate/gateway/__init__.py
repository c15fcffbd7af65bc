"""The ASGI gateway: front doors for each wire format, one forwarding path, request records."""

from cloudgate.gateway.app import GatewayApp, create_gateway_app

__all__ = ["GatewayApp", "create_gateway_app"]
