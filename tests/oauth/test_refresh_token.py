"""Refresh token grant — RFC 6749 §6 with rotation and reuse detection (RFC 9700 §4.14.2).

Sessions come from the JWT bearer grant (the federated-login path: rotation on,
12h absolute lifetime, 1h idle timeout).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from tests.conftest import ISSUER, Factory, Registered
from tests.oauth.test_jwt_bearer import Upstream, claims_of, introspect, login, portal
from tokentrail.audit import Event
from tokentrail.clock import FrozenClock
from tokentrail.config import Settings
from tokentrail.services import Services, build_services
from tokentrail.storage import tables as t
from tokentrail.web.app import create_app


@pytest.fixture
def idp(services: Services) -> Upstream:
    up = Upstream()
    up.trust(services)
    return up


@pytest.fixture
def app_client(make: Factory) -> Registered:
    return portal(make)


@pytest.fixture
def session(
    http: TestClient, idp: Upstream, app_client: Registered, clock: FrozenClock
) -> dict[str, Any]:
    """The token response of a fresh login."""
    r = login(http, app_client, idp.assertion(clock.now()))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def refresh(http: TestClient, client: Registered, token: str, **extra: str) -> Any:
    assert client.secret is not None
    return http.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": token, **extra},
        auth=(client.client_id, client.secret),
    )


def _ok(r: Any) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _error(r: Any, error: str = "invalid_grant") -> str:
    assert r.status_code == 400, r.text
    assert r.json()["error"] == error
    return str(r.json()["error_description"])


def _revocation_rows(services: Services) -> int:
    with services.store.read() as tx:
        return int(tx.conn.execute(sa.select(sa.func.count()).select_from(t.revocations)).scalar())


# --- rotation ------------------------------------------------------------------


def test_refresh_issues_a_new_access_and_refresh_token(
    http: TestClient, app_client: Registered, session: dict[str, Any]
) -> None:
    """A refresh returns a new access token and a different refresh token."""
    body = _ok(refresh(http, app_client, session["refresh_token"]))
    assert body["token_type"] == "Bearer"
    assert body["refresh_token"] != session["refresh_token"]
    assert body["access_token"] != session["access_token"]
    assert body["scope"] == "profile orders"


def test_rotated_out_token_introspects_inactive(
    http: TestClient, app_client: Registered, session: dict[str, Any]
) -> None:
    """After a refresh the old refresh token is inactive and the new one active."""
    body = _ok(refresh(http, app_client, session["refresh_token"]))
    assert introspect(http, app_client, session["refresh_token"]) == {"active": False}
    active = introspect(http, app_client, body["refresh_token"])
    assert active["active"] is True
    assert active["tt_path"] == "federated-login"


def test_every_use_rotates(
    http: TestClient, app_client: Registered, session: dict[str, Any]
) -> None:
    """Each refresh yields a refresh token never seen before, and each works once."""
    seen = {session["refresh_token"]}
    current = session["refresh_token"]
    for _ in range(4):
        current = _ok(refresh(http, app_client, current))["refresh_token"]
        assert current not in seen
        seen.add(current)


def test_refreshed_access_token_hangs_under_the_new_refresh_token(
    http: TestClient, app_client: Registered, session: dict[str, Any], services: Services
) -> None:
    """The refreshed access token's parent is the new refresh token, in the same session."""
    first = claims_of(session["access_token"])
    body = _ok(refresh(http, app_client, session["refresh_token"]))
    claims = claims_of(body["access_token"])
    session_id, upstream_id = first["tt_anc"][1], first["tt_anc"][2]
    assert claims["tt_anc"][1:] == [session_id, upstream_id]
    assert claims["tt_anc"][0] != first["tt_anc"][0]
    assert claims["sub"] == first["sub"]
    assert claims["aud"] == first["aud"]
    with services.store.read() as tx:
        new_rt = tx.get_node(claims["tt_anc"][0])
        old_rt = tx.get_node(first["tt_anc"][0])
    assert new_rt is not None
    assert old_rt is not None
    assert new_rt.parents == (session_id,)
    assert old_rt.used_at is not None


def test_refresh_writes_a_token_refreshed_record(
    http: TestClient, app_client: Registered, session: dict[str, Any], services: Services
) -> None:
    """A refresh records token.refreshed for the new access token."""
    body = _ok(refresh(http, app_client, session["refresh_token"]))
    jti = claims_of(body["access_token"])["jti"]
    with services.store.read() as tx:
        records = tx.audit_records(event=Event.TOKEN_REFRESHED)
    assert [r.node_id for r in records] == [jti]
    assert records[0].data["path"] == "federated-login"


# --- reuse detection ----------------------------------------------------------


def test_reusing_a_rotated_token_is_refused(
    http: TestClient, app_client: Registered, session: dict[str, Any]
) -> None:
    """Presenting an already rotated refresh token is invalid_grant."""
    _ok(refresh(http, app_client, session["refresh_token"]))
    assert "already used" in _error(refresh(http, app_client, session["refresh_token"]))


def test_reuse_revokes_the_whole_family(
    http: TestClient, app_client: Registered, session: dict[str, Any], services: Services
) -> None:
    """Reuse revokes the session: the newest refresh token and every access token die."""
    second = _ok(refresh(http, app_client, session["refresh_token"]))
    third = _ok(refresh(http, app_client, second["refresh_token"]))
    refresh(http, app_client, session["refresh_token"])  # the thief, or the victim
    for token in (
        session["access_token"],
        second["access_token"],
        third["access_token"],
        third["refresh_token"],
    ):
        assert introspect(http, app_client, token) == {"active": False}
    session_id = claims_of(session["access_token"])["tt_anc"][1]
    with services.store.read() as tx:
        rev = tx.get_revocation(session_id)
    assert rev is not None
    assert rev.actor == "tokentrail:detection"


def test_newest_token_cannot_refresh_after_reuse(
    http: TestClient, app_client: Registered, session: dict[str, Any]
) -> None:
    """After reuse detection the legitimate holder's newest token is refused too."""
    newest = _ok(refresh(http, app_client, session["refresh_token"]))["refresh_token"]
    refresh(http, app_client, session["refresh_token"])
    assert "revoked" in _error(refresh(http, app_client, newest))


def test_reuse_writes_a_detection_record(
    http: TestClient, app_client: Registered, session: dict[str, Any], services: Services
) -> None:
    """Reuse writes detection.refresh_reuse naming the family and the reused token."""
    first = claims_of(session["access_token"])
    _ok(refresh(http, app_client, session["refresh_token"]))
    refresh(http, app_client, session["refresh_token"])
    with services.store.read() as tx:
        records = tx.audit_records(event=Event.REFRESH_REUSE_DETECTED)
        revoked = tx.audit_records(event=Event.NODE_REVOKED)
    assert len(records) == 1
    assert records[0].node_id == first["tt_anc"][0]
    assert records[0].client_id == app_client.client_id
    assert records[0].data["revoke"] == first["tt_anc"][1]
    assert records[0].data["response"] == "revoke_family"
    assert [r.node_id for r in revoked] == [first["tt_anc"][1]]
    assert session["refresh_token"] not in repr(records)


def test_reuse_revocation_is_one_row(
    http: TestClient, app_client: Registered, session: dict[str, Any], services: Services
) -> None:
    """Containing reuse writes one revocation (the session), whatever the family size."""
    current = session["refresh_token"]
    for _ in range(5):
        current = _ok(refresh(http, app_client, current))["refresh_token"]
    before = _revocation_rows(services)
    refresh(http, app_client, session["refresh_token"])
    assert _revocation_rows(services) == before + 1


def test_second_reuse_after_containment_is_plainly_refused(
    http: TestClient, app_client: Registered, session: dict[str, Any], services: Services
) -> None:
    """Once the family is revoked, further replays are refused without new detections."""
    _ok(refresh(http, app_client, session["refresh_token"]))
    refresh(http, app_client, session["refresh_token"])
    assert "revoked" in _error(refresh(http, app_client, session["refresh_token"]))
    with services.store.read() as tx:
        assert len(tx.audit_records(event=Event.REFRESH_REUSE_DETECTED)) == 1


def test_reuse_leaves_other_sessions_alive(
    http: TestClient,
    idp: Upstream,
    app_client: Registered,
    session: dict[str, Any],
    clock: FrozenClock,
) -> None:
    """Reuse in one family does not touch another session of the same person."""
    other = _ok(login(http, app_client, idp.assertion(clock.now())))
    _ok(refresh(http, app_client, session["refresh_token"]))
    refresh(http, app_client, session["refresh_token"])
    assert introspect(http, app_client, other["access_token"])["active"] is True
    _ok(refresh(http, app_client, other["refresh_token"]))


# --- who may refresh, and when --------------------------------------------------


def test_refresh_by_another_client_is_refused(
    http: TestClient, make: Factory, session: dict[str, Any]
) -> None:
    """A refresh token presented by a client it was not issued to is invalid_grant."""
    other = portal(make)
    _error(refresh(http, other, session["refresh_token"]))


def test_refusal_to_another_client_does_not_consume_the_token(
    http: TestClient, make: Factory, app_client: Registered, session: dict[str, Any]
) -> None:
    """A stolen token tried by another client stays usable by its owner and detects no reuse."""
    refresh(http, portal(make), session["refresh_token"])
    _ok(refresh(http, app_client, session["refresh_token"]))


def test_unknown_refresh_token_is_refused(
    http: TestClient, app_client: Registered, session: dict[str, Any]
) -> None:
    """A refresh token the server never issued is invalid_grant."""
    _error(refresh(http, app_client, "ttr_" + "A" * 43))


def test_access_token_as_refresh_token_is_refused(
    http: TestClient, app_client: Registered, session: dict[str, Any]
) -> None:
    """An access token is not a refresh token."""
    _error(refresh(http, app_client, session["access_token"]))


def test_missing_refresh_token_is_invalid_request(
    http: TestClient, app_client: Registered, session: dict[str, Any]
) -> None:
    """The grant without refresh_token is invalid_request."""
    assert app_client.secret is not None
    r = http.post(
        "/oauth/token",
        data={"grant_type": "refresh_token"},
        auth=(app_client.client_id, app_client.secret),
    )
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_request"


def test_idle_refresh_token_expires(
    http: TestClient, app_client: Registered, session: dict[str, Any], clock: FrozenClock
) -> None:
    """A refresh token unused for longer than the idle timeout (1h) is invalid_grant."""
    clock.advance(3600)
    assert "expired" in _error(refresh(http, app_client, session["refresh_token"]))


def test_expired_refresh_token_introspects_inactive(
    http: TestClient, app_client: Registered, session: dict[str, Any], clock: FrozenClock
) -> None:
    """Introspection says inactive once the idle timeout has passed."""
    clock.advance(3601)
    assert introspect(http, app_client, session["refresh_token"]) == {"active": False}


def test_regular_use_slides_the_idle_timeout(
    http: TestClient, app_client: Registered, session: dict[str, Any], clock: FrozenClock
) -> None:
    """Refreshing within the idle timeout keeps the session going past one idle period."""
    clock.advance(3000)
    current = _ok(refresh(http, app_client, session["refresh_token"]))["refresh_token"]
    clock.advance(3000)
    _ok(refresh(http, app_client, current))


def test_absolute_lifetime_ends_the_session(
    http: TestClient, app_client: Registered, session: dict[str, Any], clock: FrozenClock
) -> None:
    """However often it is refreshed, a session ends at its absolute lifetime (12h)."""
    current = session["refresh_token"]
    for _ in range(14):  # 14 x 50 min = 11h40
        clock.advance(3000)
        current = _ok(refresh(http, app_client, current))["refresh_token"]
    clock.advance(1200)  # 12h00
    _error(refresh(http, app_client, current))


def test_access_token_never_outlives_the_session(
    http: TestClient, app_client: Registered, session: dict[str, Any], clock: FrozenClock
) -> None:
    """Near the end of the session, a refreshed access token expires with it."""
    current = session["refresh_token"]
    for _ in range(14):
        clock.advance(3000)
        current = _ok(refresh(http, app_client, current))["refresh_token"]
    clock.advance(1100)  # 100 s of session left; the path allows 300 s tokens
    body = _ok(refresh(http, app_client, current))
    assert body["expires_in"] == 100


# --- scope ----------------------------------------------------------------------


def test_scope_can_narrow(
    http: TestClient, app_client: Registered, session: dict[str, Any]
) -> None:
    """A refresh may ask for fewer scopes than granted."""
    body = _ok(refresh(http, app_client, session["refresh_token"], scope="orders"))
    assert body["scope"] == "orders"
    assert claims_of(body["access_token"])["scope"] == "orders"


def test_narrowing_keeps_the_original_grant_for_the_next_refresh(
    http: TestClient, app_client: Registered, session: dict[str, Any]
) -> None:
    """RFC 6749 §6: the new refresh token carries the original scope, not the narrowed one."""
    narrowed = _ok(refresh(http, app_client, session["refresh_token"], scope="orders"))
    body = _ok(refresh(http, app_client, narrowed["refresh_token"]))
    assert body["scope"] == "profile orders"


def test_scope_cannot_widen(
    http: TestClient, app_client: Registered, session: dict[str, Any]
) -> None:
    """Asking for a scope beyond the original grant is invalid_scope."""
    description = _error(
        refresh(http, app_client, session["refresh_token"], scope="orders admin"), "invalid_scope"
    )
    assert "widen" in description


def test_scope_cannot_widen_to_a_client_scope_outside_the_grant(
    http: TestClient, idp: Upstream, app_client: Registered, clock: FrozenClock
) -> None:
    """A scope the client holds but the session was not granted is invalid_scope."""
    narrow = _ok(login(http, app_client, idp.assertion(clock.now()), scope="profile"))
    _error(refresh(http, app_client, narrow["refresh_token"], scope="orders"), "invalid_scope")


def test_refused_widening_does_not_consume_the_token(
    http: TestClient, app_client: Registered, session: dict[str, Any], services: Services
) -> None:
    """A refused refresh leaves the token usable and detects no reuse."""
    refresh(http, app_client, session["refresh_token"], scope="admin")
    _ok(refresh(http, app_client, session["refresh_token"]))
    with services.store.read() as tx:
        assert tx.audit_records(event=Event.REFRESH_REUSE_DETECTED) == []


def test_malformed_scope_is_invalid_scope(
    http: TestClient, app_client: Registered, session: dict[str, Any]
) -> None:
    """A scope string with empty tokens is invalid_scope."""
    _error(
        refresh(http, app_client, session["refresh_token"], scope="profile  orders"),
        "invalid_scope",
    )


# --- revocation and policy changes ---------------------------------------------


def test_refresh_after_rfc7009_revocation_is_refused(
    http: TestClient, app_client: Registered, session: dict[str, Any]
) -> None:
    """Revoking a refresh token (RFC 7009) ends the session: refresh is invalid_grant."""
    assert app_client.secret is not None
    r = http.post(
        "/oauth/revoke",
        data={"token": session["refresh_token"], "token_type_hint": "refresh_token"},
        auth=(app_client.client_id, app_client.secret),
    )
    assert r.status_code == 200
    assert "revoked" in _error(refresh(http, app_client, session["refresh_token"]))
    assert introspect(http, app_client, session["access_token"]) == {"active": False}


def test_refresh_after_upstream_revocation_is_refused(
    http: TestClient, app_client: Registered, session: dict[str, Any], services: Services
) -> None:
    """Revoking the upstream credential kills the refresh tokens under it."""
    upstream_id = claims_of(session["access_token"])["tt_anc"][2]
    services.admin.revoke(upstream_id, reason="sign out everywhere", actor="test")
    assert "revoked" in _error(refresh(http, app_client, session["refresh_token"]))


_MINIMAL_MAP = """
version: 1
teams:
  - id: app-team
  - id: identity-ops
  - id: secops
paths:
  - id: {path_id}
    principal: human
    grant: jwt_bearer
    inputs: [upstream_assertion]
    output: session
    max_ttl: 5m
    owners:
      credential_issuance: identity-ops
      authentication: app-team
      recovery: identity-ops
      detection: secops
"""


def _services_with_map(
    tmp_path: Path, settings: Settings, clock: FrozenClock, path_id: str
) -> Services:
    """Services on the same data, restarted with a map whose only path is ``path_id``
    (declared without refresh)."""
    paths_file = tmp_path / "changed-paths.yaml"
    paths_file.write_text(_MINIMAL_MAP.format(path_id=path_id))
    return build_services(settings.model_copy(update={"paths_file": paths_file}), clock=clock)


def test_refresh_refused_when_the_path_no_longer_allows_refresh(
    tmp_path: Path,
    settings: Settings,
    clock: FrozenClock,
    app_client: Registered,
    session: dict[str, Any],
) -> None:
    """After the map drops the path's refresh policy, refresh tokens under it are refused."""
    changed = _services_with_map(tmp_path, settings, clock, "federated-login")
    try:
        with TestClient(create_app(changed), base_url=ISSUER) as c:
            assert "no longer allows refresh" in _error(
                refresh(c, app_client, session["refresh_token"])
            )
    finally:
        changed.close()


def test_refresh_refused_when_the_path_is_no_longer_declared(
    tmp_path: Path,
    settings: Settings,
    clock: FrozenClock,
    app_client: Registered,
    session: dict[str, Any],
) -> None:
    """After the map drops the path altogether, its refresh tokens are refused and audited."""
    changed = _services_with_map(tmp_path, settings, clock, "federated-login-v2")
    try:
        with TestClient(create_app(changed), base_url=ISSUER) as c:
            r = refresh(c, app_client, session["refresh_token"])
        assert r.status_code == 400, r.text
        assert r.json()["error"] == "unauthorized_client"
        assert "no longer declared" in r.json()["error_description"]
        with changed.store.read() as tx:
            assert tx.audit_records(event=Event.ISSUANCE_REFUSED)
    finally:
        changed.close()
