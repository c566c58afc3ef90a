"""The client credentials grant (RFC 6749 §4.4): paths, scope, audience and RFC 9068 tokens."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from joserfc import jwt
from joserfc.errors import BadSignatureError
from joserfc.jwk import KeySet
from starlette.testclient import TestClient

from tests.conftest import ISSUER, Factory, Registered
from tests.oauth.helpers import audit, claims_of
from tokentrail.clock import FrozenClock
from tokentrail.model import NodeKind
from tokentrail.services import Services

PATH = "workload-client-credentials"
API = "https://api.example"
BILLING = "https://billing.example"


def _token(http: TestClient, c: Registered, **form: Any) -> Any:
    assert c.secret
    return http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", **form},
        auth=(c.client_id, c.secret),
    )


def _ok(r: Any) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


@pytest.fixture
def two_aud(make: Factory) -> Registered:
    return make.client(audiences=[API, BILLING], scopes=["read", "write", "admin"])


# --- the response -----------------------------------------------------------------


def test_response_is_a_bearer_token_without_refresh(http: TestClient, make: Factory) -> None:
    """RFC 6749 §4.4.3: a Bearer access token with expires_in and no refresh token."""
    body = _ok(_token(http, make.client()))
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 300
    assert "refresh_token" not in body
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}


# --- scope ----------------------------------------------------------------------------


def test_no_scope_requested_grants_every_registered_scope(http: TestClient, make: Factory) -> None:
    """Without a scope parameter the token carries all of the client's scopes."""
    body = _ok(_token(http, make.client(scopes=["read", "write"])))
    assert body["scope"] == "read write"
    assert claims_of(body["access_token"])["scope"] == "read write"


def test_requested_subset_of_scopes_is_granted(http: TestClient, two_aud: Registered) -> None:
    """A requested subset of the client's scopes is exactly what the token carries."""
    body = _ok(_token(http, two_aud, scope="write read"))
    assert body["scope"] == "write read"
    assert claims_of(body["access_token"])["scope"] == "write read"


def test_repeated_scope_token_is_granted_once(http: TestClient, two_aud: Registered) -> None:
    """A scope token named twice appears once in the token."""
    body = _ok(_token(http, two_aud, scope="read read"))
    assert body["scope"] == "read"


def test_unregistered_scope_is_invalid_scope(http: TestClient, make: Factory) -> None:
    """Asking for a scope the client does not hold answers invalid_scope naming it."""
    r = _token(http, make.client(scopes=["read"]), scope="read admin")
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_scope"
    assert "admin" in r.json()["error_description"]


def test_client_without_scopes_gets_a_token_without_scope(http: TestClient, make: Factory) -> None:
    """A client with no scopes gets a token with no scope claim."""
    body = _ok(_token(http, make.client(scopes=[])))
    assert "scope" not in body
    assert "scope" not in claims_of(body["access_token"])


def test_empty_scope_parameter_counts_as_absent(http: TestClient, make: Factory) -> None:
    """RFC 6749 §3.1: an empty scope parameter is treated as omitted."""
    body = _ok(_token(http, make.client(scopes=["read"]), scope=""))
    assert body["scope"] == "read"


# --- audience -------------------------------------------------------------------------


def test_default_audience_is_the_first_registered(http: TestClient, two_aud: Registered) -> None:
    """Without resource or audience the token is for the client's first audience only."""
    body = _ok(_token(http, two_aud))
    assert claims_of(body["access_token"])["aud"] == API


def test_resource_parameter_selects_the_audience(http: TestClient, two_aud: Registered) -> None:
    """RFC 8707: resource selects which registered audience the token is for."""
    body = _ok(_token(http, two_aud, resource=BILLING))
    assert claims_of(body["access_token"])["aud"] == BILLING


def test_audience_parameter_selects_the_audience(http: TestClient, two_aud: Registered) -> None:
    """The audience parameter selects a registered audience like resource does."""
    body = _ok(_token(http, two_aud, audience=BILLING))
    assert claims_of(body["access_token"])["aud"] == BILLING


def test_several_resources_give_a_list_audience(
    http: TestClient, two_aud: Registered, services: Services
) -> None:
    """Two resource parameters give a token whose aud lists both."""
    body = _ok(_token(http, two_aud, resource=[API, BILLING]))
    claims = claims_of(body["access_token"])
    assert claims["aud"] == [API, BILLING]
    with services.store.read() as tx:
        node = tx.get_node(claims["jti"])
    assert node is not None
    assert node.meta["aud"] == [API, BILLING]


def test_unregistered_resource_is_invalid_target(http: TestClient, two_aud: Registered) -> None:
    """A resource the client may not reach answers invalid_target naming it."""
    r = _token(http, two_aud, resource="https://payroll.example")
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_target"
    assert "payroll" in r.json()["error_description"]


def test_one_bad_resource_among_good_is_invalid_target(
    http: TestClient, two_aud: Registered
) -> None:
    """One unregistered resource among registered ones refuses the whole request."""
    r = _token(http, two_aud, resource=[API, "https://payroll.example"])
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_target"


def test_unregistered_audience_is_invalid_target(http: TestClient, two_aud: Registered) -> None:
    """An audience parameter the client may not reach answers invalid_target."""
    r = _token(http, two_aud, audience="https://payroll.example")
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_target"


def test_client_without_audiences_is_invalid_target(http: TestClient, make: Factory) -> None:
    """A client registered with no audience cannot get a token for anyone."""
    r = _token(http, make.client(audiences=[]))
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_target"


def test_refused_scope_or_target_mints_nothing(
    http: TestClient, two_aud: Registered, services: Services
) -> None:
    """A request refused for scope or target writes no token.issued record."""
    _token(http, two_aud, scope="delete")
    _token(http, two_aud, resource="https://payroll.example")
    assert audit(services, "token.issued") == []


# --- declared paths -----------------------------------------------------------------


def test_client_without_paths_is_unauthorized_client(
    http: TestClient, make: Factory, services: Services
) -> None:
    """No declared path for the client: unauthorized_client naming why, and an audit record."""
    c = make.client(paths=[])
    r = _token(http, c)
    assert r.status_code == 400
    body = r.json()
    assert body["error"] == "unauthorized_client"
    assert "no declared issuance path" in body["error_description"]
    assert "client_credentials" in body["error_description"]
    assert c.client_id in body["error_description"]
    [record] = audit(services, "issuance.refused")
    assert record.client_id == c.client_id
    assert record.data["reason"] == body["error_description"]
    assert audit(services, "token.issued") == []


def test_client_whose_paths_are_for_other_grants_is_unauthorized(
    http: TestClient, make: Factory, services: Services
) -> None:
    """A client allowed only a token-exchange path cannot use client_credentials."""
    c = make.client(paths=["workload-token-exchange"])
    r = _token(http, c)
    assert r.status_code == 400
    assert r.json()["error"] == "unauthorized_client"
    assert len(audit(services, "issuance.refused")) == 1


def test_refusal_names_the_owning_team(http: TestClient, make: Factory, services: Services) -> None:
    """The issuance.refused record carries the client's team."""
    make.team("app-team")
    c = make.client(paths=[], team="app-team")
    _token(http, c)
    [record] = audit(services, "issuance.refused")
    assert record.team_id == "app-team"


def test_issued_token_node_records_its_path(
    http: TestClient, make: Factory, services: Services, clock: FrozenClock
) -> None:
    """The minted node records its path, kind, client, team, parent and expiry."""
    c = make.client()
    body = _ok(_token(http, c, scope="read"))
    jti = claims_of(body["access_token"])["jti"]
    with services.store.read() as tx:
        node = tx.get_node(jti)
    assert node is not None
    assert node.kind is NodeKind.ACCESS_TOKEN
    assert node.path_id == PATH
    assert node.client_id == c.client_id
    assert node.subject == c.client_id
    assert node.team_id == "platform-iam"
    assert node.parents == (c.credential_id,)
    assert node.ancestors == (c.credential_id,)
    assert node.expires_at == int(clock.now()) + 300
    assert node.meta["scope"] == ["read"]


def test_every_issued_token_records_its_path(
    http: TestClient, make: Factory, services: Services
) -> None:
    """Every token of several issuances has a node naming the path and an audit record."""
    c = make.client()
    jtis = {claims_of(_ok(_token(http, c))["access_token"])["jti"] for _ in range(3)}
    with services.store.read() as tx:
        nodes = [tx.get_node(j) for j in jtis]
    assert len(jtis) == 3
    assert all(n is not None and n.path_id == PATH for n in nodes)
    issued = audit(services, "token.issued")
    assert {r.node_id for r in issued} == jtis
    assert all(r.data["path"] == PATH for r in issued)


def test_token_from_revoked_credential_is_refused(
    http: TestClient, make: Factory, services: Services
) -> None:
    """After its credential is revoked the client cannot mint more tokens."""
    c = make.client()
    services.admin.revoke(c.credential_id, reason="leaked", actor="test")
    assert _token(http, c).status_code == 401


# --- the JWT (RFC 9068) ---------------------------------------------------------------


def test_access_token_verifies_against_published_jwks(
    http: TestClient, make: Factory, clock: FrozenClock
) -> None:
    """The token verifies with joserfc against /jwks.json and carries every RFC 9068 claim."""
    c = make.client()
    token = _ok(_token(http, c, scope="read"))["access_token"]
    keys = KeySet.import_key_set(http.get("/jwks.json").json())
    decoded = jwt.decode(token, keys, algorithms=["ES256"])
    assert decoded.header["typ"] == "at+jwt"
    assert decoded.header["alg"] == "ES256"
    assert decoded.header["kid"] in {k["kid"] for k in http.get("/jwks.json").json()["keys"]}
    now = int(clock.now())
    claims = decoded.claims
    assert claims["iss"] == ISSUER
    assert claims["sub"] == c.client_id
    assert claims["client_id"] == c.client_id
    assert claims["aud"] == "https://api.example"
    assert claims["iat"] == now
    assert claims["exp"] == now + 300
    assert claims["jti"].startswith("at_")
    assert claims["scope"] == "read"
    assert claims["tt_path"] == PATH
    assert claims["tt_anc"] == [c.credential_id]


def test_access_token_claims_pass_a_claims_registry(
    http: TestClient, make: Factory, clock: FrozenClock
) -> None:
    """joserfc's claim validation accepts iss, aud, exp and iat at the time of issue."""
    token = _ok(_token(http, make.client()))["access_token"]
    decoded = jwt.decode(token, KeySet.import_key_set(http.get("/jwks.json").json()))
    registry = jwt.JWTClaimsRegistry(
        now=int(clock.now()),
        iss={"essential": True, "value": ISSUER},
        aud={"essential": True, "value": "https://api.example"},
        sub={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
        jti={"essential": True},
    )
    registry.validate(decoded.claims)


def test_each_token_has_a_fresh_jti(http: TestClient, make: Factory) -> None:
    """Two issuances in the same second give tokens with different jti."""
    c = make.client()
    a = claims_of(_ok(_token(http, c))["access_token"])["jti"]
    b = claims_of(_ok(_token(http, c))["access_token"])["jti"]
    assert a != b


def test_tampered_token_fails_joserfc_verification(http: TestClient, make: Factory) -> None:
    """Changing a claim breaks the signature for an independent verifier."""
    token = _ok(_token(http, make.client(), scope="read"))["access_token"]
    header, _payload, sig = token.split(".")
    claims = claims_of(token)
    claims["scope"] = "read write admin"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    keys = KeySet.import_key_set(http.get("/jwks.json").json())
    with pytest.raises(BadSignatureError):
        jwt.decode(f"{header}.{forged}.{sig}", keys)
