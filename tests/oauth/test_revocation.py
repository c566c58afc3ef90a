"""Token revocation (RFC 7009): kills the token, says nothing about unknown ones, fails loudly."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError
from starlette.testclient import TestClient

from tests.conftest import Factory, Registered
from tests.oauth.helpers import audit, claims_of, get_token, introspect, revocation_count
from tokentrail.audit import Event
from tokentrail.clock import FrozenClock
from tokentrail.services import Services
from tokentrail.storage import tables as t
from tokentrail.storage.store import Tx

INACTIVE = {"active": False}


@pytest.fixture
def worker(make: Factory) -> Registered:
    return make.client()


@pytest.fixture
def gateway(make: Factory) -> Registered:
    return make.client(paths=[], scopes=[], audiences=[])


def _revoke(http: TestClient, caller: Registered, token: str, **extra: str) -> Any:
    assert caller.secret
    return http.post(
        "/oauth/revoke", data={"token": token, **extra}, auth=(caller.client_id, caller.secret)
    )


def _storage_down(*_: Any, **__: Any) -> Any:
    raise OperationalError("INSERT INTO revocations ...", {}, Exception("disk I/O error"))


def test_revoking_an_access_token_makes_it_inactive(
    http: TestClient, worker: Registered, gateway: Registered
) -> None:
    """After RFC 7009 revocation the token introspects inactive."""
    token = get_token(http, worker)
    r = _revoke(http, worker, token)
    assert r.status_code == 200
    assert r.content == b""
    assert r.headers["cache-control"] == "no-store"
    assert introspect(http, gateway, token) == INACTIVE


def test_revocation_records_one_row_and_an_audit_record(
    http: TestClient, worker: Registered, services: Services
) -> None:
    """Revoking writes one revocation for the token's node and a node.revoked record."""
    token = get_token(http, worker)
    _revoke(http, worker, token)
    jti = claims_of(token)["jti"]
    with services.store.read() as tx:
        rev = tx.get_revocation(jti)
    assert rev is not None
    assert rev.actor == f"client:{worker.client_id}"
    assert revocation_count(services) == 1
    [record] = audit(services, "node.revoked")
    assert record.node_id == jti


def test_revoking_a_token_leaves_its_credential_and_siblings_alive(
    http: TestClient, worker: Registered, gateway: Registered
) -> None:
    """Revoking one access token does not revoke the credential or other tokens."""
    first, second = get_token(http, worker), get_token(http, worker)
    _revoke(http, worker, first)
    assert introspect(http, gateway, second)["active"] is True
    assert get_token(http, worker)


def test_revoking_twice_answers_200_both_times(
    http: TestClient, worker: Registered, services: Services
) -> None:
    """A second revocation of the same token is a quiet 200 and records nothing new."""
    token = get_token(http, worker)
    assert _revoke(http, worker, token).status_code == 200
    assert _revoke(http, worker, token).status_code == 200
    assert revocation_count(services) == 1
    assert len(audit(services, "node.revoked")) == 1


def test_revoking_an_expired_token_answers_200(
    http: TestClient, worker: Registered, clock: FrozenClock
) -> None:
    """An expired token can still be revoked without error."""
    token = get_token(http, worker)
    clock.advance(3600)
    assert _revoke(http, worker, token).status_code == 200


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "a.b.c",
        "ttr_" + "A" * 43,
        "ttr_",
        "é.é.é",
        "eyJhbGciOiJub25lIn0.e30.",
        "x" * 5000,
    ],
    ids=["word", "fake-jwt", "unknown-refresh", "bare-prefix", "non-ascii", "alg-none", "long"],
)
def test_unknown_or_garbage_token_answers_200_and_revokes_nothing(
    http: TestClient, worker: Registered, services: Services, token: str
) -> None:
    """RFC 7009 §2.2: an invalid token is answered 200, and nothing is revoked."""
    get_token(http, worker)
    r = _revoke(http, worker, token)
    assert r.status_code == 200, r.text
    assert revocation_count(services) == 0


def test_another_clients_token_is_not_revoked(
    http: TestClient, worker: Registered, gateway: Registered, services: Services
) -> None:
    """RFC 7009 §2.1: a client may revoke only its own tokens; others get 200 and no effect."""
    token = get_token(http, worker)
    r = _revoke(http, gateway, token)
    assert r.status_code == 200
    assert revocation_count(services) == 0
    assert introspect(http, gateway, token)["active"] is True


@pytest.mark.parametrize("hint", ["access_token", "refresh_token", "id_token", "bogus"])
def test_token_type_hint_is_ignored(
    http: TestClient, worker: Registered, gateway: Registered, hint: str
) -> None:
    """Any token_type_hint, right, wrong or unknown, still revokes the access token."""
    token = get_token(http, worker)
    assert _revoke(http, worker, token, token_type_hint=hint).status_code == 200
    assert introspect(http, gateway, token) == INACTIVE


def test_revocation_requires_client_authentication(
    http: TestClient, worker: Registered, gateway: Registered
) -> None:
    """An unauthenticated revocation request is 401 and the token stays active."""
    token = get_token(http, worker)
    r = http.post("/oauth/revoke", data={"token": token})
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"
    assert introspect(http, gateway, token)["active"] is True


def test_revocation_with_wrong_secret_is_refused(
    http: TestClient, worker: Registered, gateway: Registered
) -> None:
    """A wrong secret at the revocation endpoint is 401 and revokes nothing."""
    token = get_token(http, worker)
    r = http.post("/oauth/revoke", data={"token": token}, auth=(worker.client_id, "tts_wrong"))
    assert r.status_code == 401
    assert introspect(http, gateway, token)["active"] is True


def test_storage_failure_answers_503(
    http: TestClient,
    worker: Registered,
    gateway: Registered,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A revocation the store cannot record is 503 temporarily_unavailable, never a false 200."""
    token = get_token(http, worker)
    monkeypatch.setattr(Tx, "revoke", _storage_down)
    r = _revoke(http, worker, token)
    assert r.status_code == 503
    assert r.json()["error"] == "temporarily_unavailable"
    assert r.headers["cache-control"] == "no-store"
    monkeypatch.undo()
    assert introspect(http, gateway, token)["active"] is True


def test_failed_audit_write_rolls_the_revocation_back(
    http: TestClient,
    worker: Registered,
    gateway: Registered,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """If the audit record cannot be written the revocation is not half-recorded: 503, no row."""
    token = get_token(http, worker)
    real = Tx.append_audit

    def append_audit(self: Tx, event: str, **kw: Any) -> None:
        if event == Event.NODE_REVOKED:
            _storage_down()
        real(self, event, **kw)

    monkeypatch.setattr(Tx, "append_audit", append_audit)
    r = _revoke(http, worker, token)
    assert r.status_code == 503
    monkeypatch.undo()
    assert revocation_count(services) == 0
    assert introspect(http, gateway, token)["active"] is True


def test_token_whose_node_was_compacted_answers_200(
    http: TestClient, worker: Registered, services: Services, clock: FrozenClock
) -> None:
    """A validly signed token whose node is gone (compacted after expiry) is unknown: 200."""
    token = get_token(http, worker)
    clock.advance(7 * 86_400)
    with services.store.write() as tx:
        tx.conn.execute(sa.delete(t.nodes).where(t.nodes.c.id == claims_of(token)["jti"]))
    r = _revoke(http, worker, token)
    assert r.status_code == 200, r.text
    assert revocation_count(services) == 0


def test_deeply_nested_json_token_answers_200(
    http: TestClient, worker: Registered, services: Services
) -> None:
    """A token whose header JSON is nested too deep to parse is unknown: 200, not a 500."""
    deep = base64.urlsafe_b64encode(b"[" * 1500 + b"]" * 1500).rstrip(b"=").decode()
    r = _revoke(http, worker, f"{deep}.e30.AAAA")
    assert r.status_code == 200, r.text
    assert revocation_count(services) == 0
