"""Credentials for the upstream clouds, fetched off the request path and cached."""
