"""A first end-to-end pass through the token endpoint, in process."""

from __future__ import annotations

from starlette.testclient import TestClient

from tests.conftest import Factory


def test_client_credentials_then_introspect_then_revoke_credential(
    http: TestClient, make: Factory
) -> None:
    """Revoking a credential makes every token minted from it inactive."""
    worker = make.client()
    gateway = make.client(paths=[])
    assert worker.secret
    assert gateway.secret
    r = http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "read"},
        auth=(worker.client_id, worker.secret),
    )
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    intro = http.post(
        "/oauth/introspect", data={"token": token}, auth=(gateway.client_id, gateway.secret)
    )
    assert intro.json()["active"] is True
    assert intro.json()["tt_anc"] == [worker.credential_id]
    make.services.admin.revoke(worker.credential_id, reason="leaked", actor="test")
    intro = http.post(
        "/oauth/introspect", data={"token": token}, auth=(gateway.client_id, gateway.secret)
    )
    assert intro.json() == {"active": False}
