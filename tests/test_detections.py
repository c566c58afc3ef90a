"""Detections fire at runtime and apply the response their path declares."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.conftest import ISSUER, Factory
from tests.dpop_proofs import new_key, proof
from tokentrail.clock import FrozenClock
from tokentrail.config import Settings
from tokentrail.detections import DEFAULT_RESPONSE
from tokentrail.policy.paths import DetectionKind, Response
from tokentrail.services import Services, build_services
from tokentrail.web.app import create_app


def _records(services: Services, prefix: str = "detection.") -> list[Any]:
    with services.store.read() as tx:
        return [r for r in tx.audit_records(limit=100_000) if r.event.startswith(prefix)]


def _token(http: TestClient, reg: Any, **headers: str) -> Any:
    return http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(reg.client_id, reg.secret),
        headers=headers,
    )


class TestDefaults:
    def test_revoked_token_introspected(
        self, http: TestClient, make: Factory, services: Services
    ) -> None:
        """Presenting a revoked token records revoked_token_use and notifies its owners."""
        reg = make.client()
        at = _token(http, reg).json()["access_token"]
        services.admin.revoke(reg.credential_id, reason="leak", actor="t")
        r = http.post("/oauth/introspect", data={"token": at}, auth=(reg.client_id, reg.secret))
        assert r.status_code == 401  # the client's own credential is dead too
        other = make.client(paths=[])
        r = http.post("/oauth/introspect", data={"token": at}, auth=(other.client_id, other.secret))
        assert r.json() == {"active": False}
        (rec,) = _records(services)
        assert rec.event == "detection.revoked_token_use"
        assert rec.data["response"] == "notify"
        assert rec.data["severity"] == "high"
        with services.store.read() as tx:
            (msg,) = tx.notifications()
        assert msg["recipient"] == "soc@example.com"  # secops contact in the bundled map
        assert msg["payload"]["owner"] == "secops"

    def test_proof_replay(
        self, http: TestClient, make: Factory, services: Services, clock: FrozenClock
    ) -> None:
        """A replayed DPoP proof records proof_replay with the key thumbprint."""
        reg = make.client(paths=["workload-dpop"])
        p = proof(new_key(), "POST", f"{ISSUER}/oauth/token", iat=clock.now())
        assert _token(http, reg, DPoP=p).status_code == 200
        assert _token(http, reg, DPoP=p).json()["error"] == "invalid_dpop_proof"
        (rec,) = _records(services)
        assert rec.event == "detection.proof_replay"
        assert rec.client_id == reg.client_id
        assert "jkt" in rec.data["evidence"]

    def test_auth_failure_burst(self, http: TestClient, make: Factory, services: Services) -> None:
        """Five failed authentications within a minute make one burst detection."""
        reg = make.client()
        for _ in range(6):
            r = http.post(
                "/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=(reg.client_id, "wrong"),
            )
            assert r.status_code == 401
        recs = _records(services)
        assert [r.event for r in recs] == ["detection.client_auth_failures"]

    def test_post_rotation_use(
        self, http: TestClient, make: Factory, services: Services, clock: FrozenClock
    ) -> None:
        """A secret used after its rotation grace period is refused and detected."""
        reg = make.client()
        services.admin.rotate_credential(reg.client_id, grace=60, actor="t")
        clock.advance(61)
        assert _token(http, reg).status_code == 401
        (rec,) = _records(services)
        assert rec.event == "detection.post_rotation_use"
        assert rec.node_id == reg.credential_id

    def test_detection_without_a_path_notifies_the_clients_team(
        self, http: TestClient, make: Factory, services: Services
    ) -> None:
        """A burst of failed authentications is recorded under, and sent to, the client's team."""
        reg = make.client(team="payments")
        for _ in range(5):
            http.post(
                "/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=(reg.client_id, "wrong"),
            )
        (rec,) = _records(services)
        assert rec.team_id == "payments"
        with services.store.read() as tx:
            (msg,) = tx.notifications()
        assert msg["recipient"] == "team:payments"
        assert msg["payload"]["owner"] == "payments"

    def test_defaults_cover_every_kind(self) -> None:
        """Every detection kind has a default response."""
        assert set(DEFAULT_RESPONSE) == set(DetectionKind)


MAP = """
version: 1
teams:
  - {id: platform-iam, contact: iam@example.com}
  - {id: secops, contact: soc@example.com}
paths:
  - id: strict
    principal: workload
    grant: client_credentials
    inputs: [client_secret]
    output: access_token
    max_ttl: 5m
    detection:
      revoked_token_use: RESPONSE
    owners:
      credential_issuance: platform-iam
      authentication: platform-iam
      recovery: platform-iam
      detection: secops
"""


@pytest.mark.parametrize(
    ("response", "revokes"),
    [
        ("record", None),
        ("revoke_node", "token"),
        ("revoke_family", "token"),
        ("revoke_root", "credential"),
    ],
)
def test_path_declared_response(
    tmp_path: Path, db_url: str | None, clock: FrozenClock, response: str, revokes: str | None
) -> None:
    """The path's declared response decides what a detection revokes."""
    paths = tmp_path / "paths.yaml"
    paths.write_text(MAP.replace("RESPONSE", response))
    settings = Settings(data_dir=tmp_path / "d", db_url=db_url, issuer=ISSUER, paths_file=paths)
    services = build_services(settings, clock=clock)
    try:
        make = Factory(services)
        reg = make.client(paths=["strict"])
        node = services.authority.detections.response_for(DetectionKind.REVOKED_TOKEN_USE, "strict")
        assert node is Response(response)
        with TestClient(create_app(services), base_url=ISSUER) as http:
            at = _token(http, reg).json()["access_token"]
            jti = services.authority.tokens.verify(at)["jti"]
            with services.store.read() as tx:
                fired = services.authority.detections.fire(
                    DetectionKind.REVOKED_TOKEN_USE, node=tx.get_node(jti)
                )
        expected = {"token": jti, "credential": reg.credential_id, None: None}[revokes]
        assert fired.revoked == expected
        with services.store.read() as tx:
            msgs = tx.notifications()
        assert (len(msgs) == 0) == (response == "record")
    finally:
        services.close()
