"""OAuth 2.0 Token Exchange — RFC 8693.

A frontend workload gets an access token (client credentials) and calls an API
workload; the API exchanges that subject token, optionally with its own access
token as the actor token, for a token addressed to a downstream service. The
path workload-token-exchange bounds delegation depth at 2 and lifetime at 5m.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.conftest import Factory, Registered
from tests.oauth.test_jwt_bearer import claims_of, introspect
from tokentrail.audit import Event
from tokentrail.clock import FrozenClock
from tokentrail.services import Services

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"
API = "https://api.example"
DOWNSTREAM = "https://ledger.example"
ELSEWHERE = "https://billing.example"


@dataclass
class Cast:
    frontend: Registered  # gets subject tokens (client credentials only)
    api: Registered  # exchanges them (client credentials + token exchange)
    ledger: Registered  # a further hop (token exchange only)
    outsider: Registered  # may not exchange at all


@pytest.fixture
def cast(make: Factory) -> Cast:
    return Cast(
        frontend=make.client(scopes=["read", "write"], audiences=[API]),
        api=make.client(
            paths=["workload-client-credentials", "workload-token-exchange"],
            scopes=["read", "write", "admin"],
            audiences=[DOWNSTREAM, ELSEWHERE],
        ),
        ledger=make.client(
            paths=["workload-token-exchange"], scopes=["read"], audiences=[ELSEWHERE]
        ),
        outsider=make.client(scopes=["read"], audiences=[DOWNSTREAM]),
    )


def cc_token(http: TestClient, client: Registered, **extra: str) -> str:
    assert client.secret is not None
    r = http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", **extra},
        auth=(client.client_id, client.secret),
    )
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def exchange(
    http: TestClient,
    client: Registered,
    subject_token: str,
    *,
    actor_token: str | None = None,
    **extra: str,
) -> Any:
    assert client.secret is not None
    data = {
        "grant_type": TOKEN_EXCHANGE,
        "subject_token": subject_token,
        "subject_token_type": ACCESS_TOKEN_TYPE,
        **extra,
    }
    if actor_token is not None:
        data |= {"actor_token": actor_token, "actor_token_type": ACCESS_TOKEN_TYPE}
    return http.post("/oauth/token", data=data, auth=(client.client_id, client.secret))


def _ok(r: Any) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _error(r: Any, error: str) -> str:
    assert r.status_code == 400, r.text
    assert r.json()["error"] == error
    return str(r.json().get("error_description", ""))


@pytest.fixture
def subject(http: TestClient, cast: Cast) -> str:
    return cc_token(http, cast.frontend)


# --- success ------------------------------------------------------------------


def test_exchange_returns_issued_token_type(http: TestClient, cast: Cast, subject: str) -> None:
    """The response carries issued_token_type and a Bearer access token (§2.2.1)."""
    body = _ok(exchange(http, cast.api, subject))
    assert body["issued_token_type"] == ACCESS_TOKEN_TYPE
    assert body["token_type"] == "Bearer"
    assert "refresh_token" not in body
    assert 0 < body["expires_in"] <= 300


def test_exchanged_token_keeps_the_subject_and_names_the_actor(
    http: TestClient, cast: Cast, subject: str
) -> None:
    """sub stays the subject token's; act names the exchanging client (§4.1)."""
    claims = claims_of(_ok(exchange(http, cast.api, subject))["access_token"])
    assert claims["sub"] == cast.frontend.client_id
    assert claims["act"] == {"sub": cast.api.client_id}
    assert claims["client_id"] == cast.api.client_id
    assert claims["aud"] == DOWNSTREAM
    assert claims["tt_path"] == "workload-token-exchange"


def test_actor_token_names_the_actor(http: TestClient, cast: Cast, subject: str) -> None:
    """With an actor token, act.sub is the actor token's subject."""
    actor = cc_token(http, cast.api)
    claims = claims_of(_ok(exchange(http, cast.api, subject, actor_token=actor))["access_token"])
    assert claims["act"] == {"sub": cast.api.client_id}


def test_jwt_token_type_is_accepted(http: TestClient, cast: Cast, subject: str) -> None:
    """An access token presented as urn:...:jwt is accepted too."""
    r = exchange(http, cast.api, subject, subject_token_type=JWT_TOKEN_TYPE)
    _ok(r)


def test_requested_token_type_access_token_is_accepted(
    http: TestClient, cast: Cast, subject: str
) -> None:
    """Asking explicitly for an access token works."""
    _ok(exchange(http, cast.api, subject, requested_token_type=ACCESS_TOKEN_TYPE))


def test_act_nests_across_hops(http: TestClient, cast: Cast, subject: str) -> None:
    """A second exchange nests the first actor inside the new one."""
    first = _ok(exchange(http, cast.api, subject))["access_token"]
    second = _ok(exchange(http, cast.ledger, first))["access_token"]
    claims = claims_of(second)
    assert claims["sub"] == cast.frontend.client_id
    assert claims["act"] == {"sub": cast.ledger.client_id, "act": {"sub": cast.api.client_id}}


def test_introspection_shows_act_and_lineage(http: TestClient, cast: Cast, subject: str) -> None:
    """Introspecting the exchanged token shows act, its path and both inputs' lineage."""
    actor = cc_token(http, cast.api)
    token = _ok(exchange(http, cast.api, subject, actor_token=actor))["access_token"]
    info = introspect(http, cast.frontend, token)
    assert info["active"] is True
    assert info["act"] == {"sub": cast.api.client_id}
    assert info["tt_path"] == "workload-token-exchange"
    assert set(info["tt_anc"]) == {
        claims_of(subject)["jti"],
        cast.frontend.credential_id,
        claims_of(actor)["jti"],
        cast.api.credential_id,
    }


def test_parents_are_both_inputs(
    http: TestClient, cast: Cast, subject: str, services: Services
) -> None:
    """The exchanged node's parents are the subject token and the actor token."""
    actor = cc_token(http, cast.api)
    token = _ok(exchange(http, cast.api, subject, actor_token=actor))["access_token"]
    with services.store.read() as tx:
        node = tx.get_node(claims_of(token)["jti"])
    assert node is not None
    assert node.parents == (claims_of(subject)["jti"], claims_of(actor)["jti"])
    assert node.meta["act"] == {"sub": cast.api.client_id}


def test_exchange_writes_token_exchanged_record(
    http: TestClient, cast: Cast, subject: str, services: Services
) -> None:
    """An exchange records token.exchanged naming the path."""
    token = _ok(exchange(http, cast.api, subject))["access_token"]
    with services.store.read() as tx:
        records = tx.audit_records(event=Event.TOKEN_EXCHANGED)
    assert [r.node_id for r in records] == [claims_of(token)["jti"]]
    assert records[0].data["path"] == "workload-token-exchange"
    assert records[0].subject == cast.frontend.client_id


def test_exchanged_token_never_outlives_its_subject(
    http: TestClient, cast: Cast, subject: str, clock: FrozenClock
) -> None:
    """An exchange late in the subject token's life expires with the subject token."""
    clock.advance(250)
    body = _ok(exchange(http, cast.api, subject))
    assert claims_of(body["access_token"])["exp"] == claims_of(subject)["exp"]
    assert body["expires_in"] == 50


def test_exchanged_token_never_outlives_its_actor(
    http: TestClient, cast: Cast, clock: FrozenClock
) -> None:
    """The exchanged token expires no later than the actor token."""
    actor = cc_token(http, cast.api)
    clock.advance(200)
    subject = cc_token(http, cast.frontend)
    body = _ok(exchange(http, cast.api, subject, actor_token=actor))
    assert claims_of(body["access_token"])["exp"] == claims_of(actor)["exp"]


# --- cascade through both parents --------------------------------------------------


def test_revoking_the_subject_token_kills_the_exchanged_token(
    http: TestClient, cast: Cast, subject: str, services: Services
) -> None:
    """The exchanged token dies with its subject token."""
    actor = cc_token(http, cast.api)
    token = _ok(exchange(http, cast.api, subject, actor_token=actor))["access_token"]
    services.admin.revoke(claims_of(subject)["jti"], reason="leaked", actor="test")
    assert introspect(http, cast.frontend, token) == {"active": False}
    assert introspect(http, cast.frontend, actor)["active"] is True


def test_revoking_the_actor_token_kills_the_exchanged_token(
    http: TestClient, cast: Cast, subject: str, services: Services
) -> None:
    """The exchanged token dies with its actor token, while the subject token lives."""
    actor = cc_token(http, cast.api)
    token = _ok(exchange(http, cast.api, subject, actor_token=actor))["access_token"]
    services.admin.revoke(claims_of(actor)["jti"], reason="leaked", actor="test")
    assert introspect(http, cast.frontend, token) == {"active": False}
    assert introspect(http, cast.frontend, subject)["active"] is True


def test_rfc7009_revocation_of_the_subject_cascades(
    http: TestClient, cast: Cast, subject: str
) -> None:
    """Revoking the subject token at the revocation endpoint kills what was exchanged from it."""
    token = _ok(exchange(http, cast.api, subject))["access_token"]
    assert cast.frontend.secret is not None
    r = http.post(
        "/oauth/revoke",
        data={"token": subject},
        auth=(cast.frontend.client_id, cast.frontend.secret),
    )
    assert r.status_code == 200
    assert introspect(http, cast.frontend, token) == {"active": False}


def test_revoking_the_root_credential_kills_every_hop(
    http: TestClient, cast: Cast, subject: str, services: Services
) -> None:
    """Revoking the frontend's credential kills the subject token and two hops of exchanges."""
    first = _ok(exchange(http, cast.api, subject))["access_token"]
    second = _ok(exchange(http, cast.ledger, first))["access_token"]
    services.admin.revoke(cast.frontend.credential_id, reason="secret leaked", actor="test")
    for token in (subject, first, second):
        assert introspect(http, cast.api, token) == {"active": False}


def test_revoking_the_actor_credential_kills_the_exchanged_token(
    http: TestClient, cast: Cast, subject: str, services: Services
) -> None:
    """Revoking the actor's credential kills tokens exchanged with its actor token."""
    actor = cc_token(http, cast.api)
    token = _ok(exchange(http, cast.api, subject, actor_token=actor))["access_token"]
    services.admin.revoke(cast.api.credential_id, reason="secret leaked", actor="test")
    assert introspect(http, cast.frontend, token) == {"active": False}
    assert introspect(http, cast.frontend, subject)["active"] is True


# --- delegation depth ------------------------------------------------------------


def test_delegation_depth_two_is_allowed(http: TestClient, cast: Cast, subject: str) -> None:
    """Two hops of exchange stay within the path's bound of 2."""
    first = _ok(exchange(http, cast.api, subject))["access_token"]
    _ok(exchange(http, cast.ledger, first))


def test_delegation_depth_beyond_the_bound_is_refused(
    http: TestClient, cast: Cast, subject: str, services: Services
) -> None:
    """A third hop exceeds max_delegation_depth 2 and is refused, naming the bound."""
    first = _ok(exchange(http, cast.api, subject))["access_token"]
    second = _ok(exchange(http, cast.ledger, first))["access_token"]
    description = _error(exchange(http, cast.api, second), "invalid_request")
    assert "depth 3" in description
    assert "bound 2" in description
    with services.store.read() as tx:
        assert len(tx.audit_records(event=Event.TOKEN_EXCHANGED)) == 2


# --- scope and audience -------------------------------------------------------------


def test_scope_can_narrow(http: TestClient, cast: Cast, subject: str) -> None:
    """A subset of the subject token's scope may be requested."""
    body = _ok(exchange(http, cast.api, subject, scope="read"))
    assert body["scope"] == "read"


def test_default_scope_is_the_subject_scope(http: TestClient, cast: Cast, subject: str) -> None:
    """Without a scope request the exchanged token carries the subject token's scope."""
    assert _ok(exchange(http, cast.api, subject))["scope"] == "read write"


def test_scope_cannot_exceed_the_subject_token(http: TestClient, cast: Cast, subject: str) -> None:
    """A scope the client holds but the subject token lacks is invalid_scope."""
    _error(exchange(http, cast.api, subject, scope="read admin"), "invalid_scope")


def test_scope_cannot_exceed_a_narrow_subject(http: TestClient, cast: Cast) -> None:
    """An exchange of a read-only subject token cannot ask for write."""
    narrow = cc_token(http, cast.frontend, scope="read")
    _error(exchange(http, cast.api, narrow, scope="write"), "invalid_scope")
    assert _ok(exchange(http, cast.api, narrow))["scope"] == "read"


def test_scope_cannot_exceed_the_exchanging_client(
    http: TestClient, cast: Cast, subject: str
) -> None:
    """The exchanged scope is also bounded by the exchanging client's scopes."""
    assert _ok(exchange(http, cast.ledger, subject))["scope"] == "read"
    _error(exchange(http, cast.ledger, subject, scope="write"), "invalid_scope")


def test_audience_can_be_requested(http: TestClient, cast: Cast, subject: str) -> None:
    """An audience among the client's allowed audiences may be requested."""
    token = _ok(exchange(http, cast.api, subject, audience=ELSEWHERE))["access_token"]
    assert claims_of(token)["aud"] == ELSEWHERE


def test_resource_can_be_requested(http: TestClient, cast: Cast, subject: str) -> None:
    """A resource (RFC 8707) among the client's allowed audiences may be requested."""
    token = _ok(exchange(http, cast.api, subject, resource=ELSEWHERE))["access_token"]
    assert claims_of(token)["aud"] == ELSEWHERE


def test_foreign_audience_is_invalid_target(http: TestClient, cast: Cast, subject: str) -> None:
    """An audience the client may not address is invalid_target (§2.2.2)."""
    r = exchange(http, cast.api, subject, audience="https://attacker.example")
    assert "attacker" in _error(r, "invalid_target")


def test_foreign_resource_is_invalid_target(http: TestClient, cast: Cast, subject: str) -> None:
    """A resource the client may not address is invalid_target."""
    _error(exchange(http, cast.api, subject, resource=API), "invalid_target")


# --- invalid inputs -------------------------------------------------------------------


def test_garbage_subject_token_is_invalid_request(http: TestClient, cast: Cast) -> None:
    """A subject token that is not one of our access tokens is invalid_request (§2.2.2)."""
    assert "subject_token" in _error(exchange(http, cast.api, "not.a.token"), "invalid_request")


def test_refresh_token_as_subject_is_invalid_request(http: TestClient, cast: Cast) -> None:
    """A string that is not a JWT at all is invalid_request."""
    _error(exchange(http, cast.api, "ttr_abc"), "invalid_request")


def test_revoked_subject_token_is_invalid_request(
    http: TestClient, cast: Cast, subject: str, services: Services
) -> None:
    """A revoked subject token is invalid_request."""
    services.admin.revoke(claims_of(subject)["jti"], reason="leaked", actor="test")
    assert "revoked" in _error(exchange(http, cast.api, subject), "invalid_request")


def test_subject_token_of_revoked_credential_is_invalid_request(
    http: TestClient, cast: Cast, subject: str, services: Services
) -> None:
    """A subject token whose credential was revoked is invalid_request."""
    services.admin.revoke(cast.frontend.credential_id, reason="leaked", actor="test")
    assert "revoked" in _error(exchange(http, cast.api, subject), "invalid_request")


def test_expired_subject_token_is_invalid_request(
    http: TestClient, cast: Cast, subject: str, clock: FrozenClock
) -> None:
    """An expired subject token is invalid_request."""
    clock.advance(301)
    _error(exchange(http, cast.api, subject), "invalid_request")


def test_invalid_actor_token_is_invalid_request(http: TestClient, cast: Cast, subject: str) -> None:
    """An actor token that is not one of our access tokens is invalid_request."""
    r = exchange(http, cast.api, subject, actor_token="a.b.c")
    assert "actor_token" in _error(r, "invalid_request")


def test_revoked_actor_token_is_invalid_request(
    http: TestClient, cast: Cast, subject: str, services: Services
) -> None:
    """A revoked actor token is invalid_request."""
    actor = cc_token(http, cast.api)
    services.admin.revoke(claims_of(actor)["jti"], reason="leaked", actor="test")
    _error(exchange(http, cast.api, subject, actor_token=actor), "invalid_request")


def test_actor_token_of_another_client_is_invalid_request(
    http: TestClient, cast: Cast, subject: str
) -> None:
    """A client cannot name another workload as the actor with that workload's token."""
    someone_else = cc_token(http, cast.outsider)
    r = exchange(http, cast.api, subject, actor_token=someone_else)
    assert "actor_token" in _error(r, "invalid_request")


@pytest.mark.parametrize(
    ("drop", "extra"),
    [
        ("subject_token", {}),
        ("subject_token_type", {}),
        (None, {"subject_token_type": "urn:ietf:params:oauth:token-type:id_token"}),
        (None, {"actor_token": "x.y.z"}),
        (None, {"actor_token_type": ACCESS_TOKEN_TYPE}),
        (None, {"actor_token": "x.y.z", "actor_token_type": "urn:x:saml"}),
        (None, {"requested_token_type": "urn:ietf:params:oauth:token-type:refresh_token"}),
    ],
)
def test_malformed_request_is_invalid_request(
    http: TestClient, cast: Cast, subject: str, drop: str | None, extra: dict[str, str]
) -> None:
    """Missing, mismatched or unsupported token parameters are invalid_request."""
    assert cast.api.secret is not None
    data = {
        "grant_type": TOKEN_EXCHANGE,
        "subject_token": subject,
        "subject_token_type": ACCESS_TOKEN_TYPE,
        **extra,
    }
    if drop is not None:
        del data[drop]
    r = http.post("/oauth/token", data=data, auth=(cast.api.client_id, cast.api.secret))
    _error(r, "invalid_request")


def test_client_without_the_path_is_unauthorized(
    http: TestClient, cast: Cast, subject: str, services: Services
) -> None:
    """A client not allowed an exchange path is unauthorized_client, and it is audited."""
    description = _error(exchange(http, cast.outsider, subject), "unauthorized_client")
    assert "token_exchange" in description
    with services.store.read() as tx:
        refused = tx.audit_records(event=Event.ISSUANCE_REFUSED)
    assert refused[-1].client_id == cast.outsider.client_id
