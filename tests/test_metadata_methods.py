"""RFC 8414 metadata advertises only the client authentication each endpoint accepts."""

from __future__ import annotations

from starlette.testclient import TestClient


def test_introspection_does_not_advertise_public_clients(http: TestClient) -> None:
    """Introspection refuses public clients, so its metadata omits the method "none"."""
    meta = http.get("/.well-known/oauth-authorization-server").json()
    assert "none" in meta["token_endpoint_auth_methods_supported"]
    assert "none" not in meta["introspection_endpoint_auth_methods_supported"]
