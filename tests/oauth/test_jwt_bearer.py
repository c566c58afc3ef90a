"""JWT bearer grant — RFC 7523 §2.1: an upstream login becomes a session.

A trusted upstream identity provider signs an assertion about a person; the
client trades it for an access token and a refresh token whose lineage is
upstream credential (issuer + subject) -> session -> refresh token -> access token.
"""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey
from starlette.testclient import TestClient

from tests.conftest import Factory, Registered
from tokentrail.audit import Event
from tokentrail.clock import MAX_CLOCK_SKEW, FrozenClock
from tokentrail.model import ClientKind, NodeKind
from tokentrail.oauth.grants.jwt_bearer import upstream_node_id
from tokentrail.services import Services

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
IDP = "https://idp.example"
IDP_AUDIENCE = "https://tokentrail.example"
PORTAL_API = "https://portal-api.example"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def claims_of(token: str) -> dict[str, Any]:
    """The payload of a compact JWS, unverified (the server verified it)."""
    payload = token.split(".")[1]
    out: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return out


@dataclass
class Upstream:
    """An upstream identity provider that signs login assertions with an EC key."""

    issuer: str = IDP
    audience: str = IDP_AUDIENCE
    key: ECKey = field(
        default_factory=lambda: ECKey.generate_key("P-256", parameters={"kid": "idp-1"})
    )

    def jwks(self) -> dict[str, Any]:
        return {"keys": [dict(self.key.as_dict(private=False))]}

    def claims(self, now: float, **overrides: Any) -> dict[str, Any]:
        """Default login claims; an override of None drops the claim."""
        body: dict[str, Any] = {
            "iss": self.issuer,
            "sub": "alice@example.com",
            "aud": self.audience,
            "iat": int(now),
            "exp": int(now) + 300,
            "jti": secrets.token_hex(8),
        }
        body.update(overrides)
        return {k: v for k, v in body.items() if v is not None}

    def assertion(self, now: float, **overrides: Any) -> str:
        return jwt.encode({"alg": "ES256", "kid": "idp-1"}, self.claims(now, **overrides), self.key)

    def trust(self, services: Services) -> None:
        services.admin.trust_issuer(
            self.issuer, jwks=self.jwks(), audience=self.audience, actor="test"
        )


def portal(make: Factory, *, scopes: list[str] | None = None) -> Registered:
    """An application client allowed the federated-login path."""
    return make.client(
        paths=["federated-login"],
        kind=ClientKind.APPLICATION,
        scopes=["profile", "orders"] if scopes is None else scopes,
        audiences=[PORTAL_API],
        team="app-team",
    )


def login(http: TestClient, client: Registered, assertion: str, **extra: str) -> Any:
    """POST the JWT bearer grant; returns the response."""
    assert client.secret is not None
    return http.post(
        "/oauth/token",
        data={"grant_type": JWT_BEARER, "assertion": assertion, **extra},
        auth=(client.client_id, client.secret),
    )


def introspect(http: TestClient, caller: Registered, token: str) -> dict[str, Any]:
    assert caller.secret is not None
    r = http.post(
        "/oauth/introspect", data={"token": token}, auth=(caller.client_id, caller.secret)
    )
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


@pytest.fixture
def idp(services: Services) -> Upstream:
    up = Upstream()
    up.trust(services)
    return up


@pytest.fixture
def app_client(make: Factory) -> Registered:
    return portal(make)


def _refused(r: Any, fragment: str) -> None:
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["error"] == "invalid_grant"
    assert fragment in body["error_description"]


# --- success ----------------------------------------------------------------------


def test_login_yields_access_and_refresh_token(
    http: TestClient, idp: Upstream, app_client: Registered, clock: FrozenClock
) -> None:
    """A valid assertion from a trusted issuer yields a Bearer access token and a refresh token."""
    r = login(http, app_client, idp.assertion(clock.now()))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "Bearer"
    assert body["refresh_token"].startswith("ttr_")
    assert body["scope"] == "profile orders"
    assert 0 < body["expires_in"] <= 300
    assert r.headers["cache-control"] == "no-store"


def test_access_token_claims_name_the_person_and_path(
    http: TestClient, idp: Upstream, app_client: Registered, clock: FrozenClock
) -> None:
    """The access token's sub is the upstream subject, and it records the federated-login path."""
    body = login(http, app_client, idp.assertion(clock.now())).json()
    claims = claims_of(body["access_token"])
    assert claims["sub"] == "alice@example.com"
    assert claims["client_id"] == app_client.client_id
    assert claims["aud"] == PORTAL_API
    assert claims["tt_path"] == "federated-login"


def test_lineage_is_upstream_session_refresh_access(
    http: TestClient,
    idp: Upstream,
    app_client: Registered,
    clock: FrozenClock,
    services: Services,
) -> None:
    """The chain is upstream credential -> session -> refresh token -> access token."""
    body = login(http, app_client, idp.assertion(clock.now())).json()
    claims = claims_of(body["access_token"])
    upstream_id = upstream_node_id(IDP, "alice@example.com")
    with services.store.read() as tx:
        at = tx.get_node(claims["jti"])
        assert at is not None
        rt = tx.get_node(at.parents[0])
        assert rt is not None
        session = tx.get_node(rt.parents[0])
        assert session is not None
        upstream = tx.get_node(session.parents[0])
        assert upstream is not None
    assert [at.kind, rt.kind, session.kind, upstream.kind] == [
        NodeKind.ACCESS_TOKEN,
        NodeKind.REFRESH_TOKEN,
        NodeKind.SESSION,
        NodeKind.CREDENTIAL,
    ]
    assert upstream.id == upstream_id
    assert upstream.meta == {
        "issuer": IDP,
        "subject": "alice@example.com",
        "kind": "upstream_login",
    }
    assert claims["tt_anc"] == [rt.id, session.id, upstream_id]
    assert session.path_id == rt.path_id == at.path_id == "federated-login"


def test_upstream_node_id_is_deterministic() -> None:
    """The upstream credential id depends only on issuer and subject."""
    a = upstream_node_id(IDP, "alice@example.com")
    assert a == upstream_node_id(IDP, "alice@example.com")
    assert a.startswith("up_")
    assert a != upstream_node_id(IDP, "bob@example.com")
    assert a != upstream_node_id("https://other-idp.example", "alice@example.com")


def test_two_logins_of_one_person_share_the_upstream_node(
    http: TestClient,
    idp: Upstream,
    app_client: Registered,
    clock: FrozenClock,
    services: Services,
) -> None:
    """Two logins make two sessions under the same upstream credential node."""
    first = claims_of(login(http, app_client, idp.assertion(clock.now())).json()["access_token"])
    second = claims_of(login(http, app_client, idp.assertion(clock.now())).json()["access_token"])
    assert first["tt_anc"][1] != second["tt_anc"][1]
    assert first["tt_anc"][2] == second["tt_anc"][2] == upstream_node_id(IDP, "alice@example.com")
    with services.store.read() as tx:
        assert tx.count_descendants(upstream_node_id(IDP, "alice@example.com")) == 6


def test_revoking_the_upstream_credential_ends_every_session(
    http: TestClient,
    idp: Upstream,
    app_client: Registered,
    clock: FrozenClock,
    services: Services,
) -> None:
    """Revoking the upstream node kills every session's access and refresh tokens."""
    a = login(http, app_client, idp.assertion(clock.now())).json()
    b = login(http, app_client, idp.assertion(clock.now())).json()
    services.admin.revoke(
        upstream_node_id(IDP, "alice@example.com"), reason="sign out everywhere", actor="test"
    )
    for token in (a["access_token"], a["refresh_token"], b["access_token"], b["refresh_token"]):
        assert introspect(http, app_client, token) == {"active": False}


def test_login_after_upstream_revocation_is_refused(
    http: TestClient,
    idp: Upstream,
    app_client: Registered,
    clock: FrozenClock,
    services: Services,
) -> None:
    """A revoked upstream credential yields invalid_grant, never tokens that are dead on arrival."""
    assert login(http, app_client, idp.assertion(clock.now())).status_code == 200
    services.admin.revoke(
        upstream_node_id(IDP, "alice@example.com"), reason="account compromised", actor="test"
    )
    r = login(http, app_client, idp.assertion(clock.now()))
    _refused(r, "revoked")


def test_login_writes_session_and_issuance_audit_records(
    http: TestClient,
    idp: Upstream,
    app_client: Registered,
    clock: FrozenClock,
    services: Services,
) -> None:
    """A login records session.created and token.issued naming the path."""
    body = login(http, app_client, idp.assertion(clock.now())).json()
    claims = claims_of(body["access_token"])
    with services.store.read() as tx:
        sessions = tx.audit_records(event=Event.SESSION_CREATED)
        issued = tx.audit_records(event=Event.TOKEN_ISSUED, node_id=claims["jti"])
    assert [s.node_id for s in sessions] == [claims["tt_anc"][1]]
    assert sessions[0].data["issuer"] == IDP
    assert sessions[0].subject == "alice@example.com"
    assert issued[0].data["path"] == "federated-login"
    assert body["refresh_token"] not in json.dumps([s.data for s in sessions])


def test_session_expiry_is_the_path_absolute_lifetime(
    http: TestClient,
    idp: Upstream,
    app_client: Registered,
    clock: FrozenClock,
    services: Services,
) -> None:
    """The session lives the path's 12h absolute lifetime; the refresh token its 1h idle timeout."""
    body = login(http, app_client, idp.assertion(clock.now())).json()
    claims = claims_of(body["access_token"])
    with services.store.read() as tx:
        rt = tx.get_node(claims["tt_anc"][0])
        session = tx.get_node(claims["tt_anc"][1])
    assert session is not None
    assert rt is not None
    assert session.expires_at == clock.now() + 12 * 3600
    assert rt.expires_at == clock.now() + 3600


def test_narrower_scope_can_be_requested(
    http: TestClient, idp: Upstream, app_client: Registered, clock: FrozenClock
) -> None:
    """A login may ask for a subset of the client's scopes."""
    r = login(http, app_client, idp.assertion(clock.now()), scope="profile")
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == "profile"


def test_unknown_scope_is_invalid_scope(
    http: TestClient, idp: Upstream, app_client: Registered, clock: FrozenClock
) -> None:
    """A scope the client does not hold is invalid_scope."""
    r = login(http, app_client, idp.assertion(clock.now()), scope="admin")
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_scope"


def test_refused_scope_does_not_burn_the_assertion(
    http: TestClient, idp: Upstream, app_client: Registered, clock: FrozenClock
) -> None:
    """A request refused for its scope leaves the assertion's jti unused."""
    assertion = idp.assertion(clock.now())
    assert login(http, app_client, assertion, scope="admin").status_code == 400
    assert login(http, app_client, assertion).status_code == 200


def test_assertion_with_audience_list_is_accepted(
    http: TestClient, idp: Upstream, app_client: Registered, clock: FrozenClock
) -> None:
    """An aud array that contains the trusted audience is accepted (RFC 7519 §4.1.3)."""
    r = login(http, app_client, idp.assertion(clock.now(), aud=["x", IDP_AUDIENCE]))
    assert r.status_code == 200, r.text


def test_assertion_within_clock_skew_after_exp_is_accepted(
    http: TestClient, idp: Upstream, app_client: Registered, clock: FrozenClock
) -> None:
    """An assertion that expired less than the allowed skew ago still counts."""
    r = login(http, app_client, idp.assertion(clock.now(), exp=int(clock.now()) - 10))
    assert r.status_code == 200, r.text


def test_same_jti_from_two_issuers_is_not_a_replay(
    http: TestClient,
    idp: Upstream,
    app_client: Registered,
    clock: FrozenClock,
    services: Services,
) -> None:
    """Replay protection is per issuer: another issuer may use the same jti."""
    other = Upstream(issuer="https://other-idp.example")
    other.trust(services)
    assert login(http, app_client, idp.assertion(clock.now(), jti="same")).status_code == 200
    assert login(http, app_client, other.assertion(clock.now(), jti="same")).status_code == 200


# --- refusals -------------------------------------------------------------------


def test_untrusted_issuer_is_refused(
    http: TestClient, idp: Upstream, app_client: Registered, clock: FrozenClock
) -> None:
    """An assertion from an issuer nobody trusted is invalid_grant."""
    stranger = Upstream(issuer="https://evil.example")
    _refused(login(http, app_client, stranger.assertion(clock.now())), "not trusted")


def test_bad_signature_is_refused(
    http: TestClient, idp: Upstream, app_client: Registered, clock: FrozenClock
) -> None:
    """An assertion naming a trusted issuer but signed with another key is invalid_grant."""
    impostor = Upstream()  # same issuer and kid, different key
    _refused(login(http, app_client, impostor.assertion(clock.now())), "signature")


def test_tampered_payload_is_refused(
    http: TestClient, idp: Upstream, app_client: Registered, clock: FrozenClock
) -> None:
    """Changing the payload of a signed assertion breaks its signature."""
    header, _, sig = idp.assertion(clock.now()).split(".")
    forged = _b64(json.dumps(idp.claims(clock.now(), sub="admin@example.com")).encode())
    _refused(login(http, app_client, f"{header}.{forged}.{sig}"), "signature")


def test_wrong_audience_is_refused(
    http: TestClient, idp: Upstream, app_client: Registered, clock: FrozenClock
) -> None:
    """An assertion addressed to another relying party is invalid_grant."""
    r = login(http, app_client, idp.assertion(clock.now(), aud="https://someone-else.example"))
    _refused(r, "audience")


def test_missing_audience_is_refused(
    http: TestClient, idp: Upstream, app_client: Registered, clock: FrozenClock
) -> None:
    """An assertion without aud is invalid_grant."""
    _refused(login(http, app_client, idp.assertion(clock.now(), aud=None)), "audience")


def test_expired_assertion_is_refused(
    http: TestClient, idp: Upstream, app_client: Registered, clock: FrozenClock
) -> None:
    """An assertion past exp (beyond the allowed skew) is invalid_grant."""
    exp = int(clock.now()) - MAX_CLOCK_SKEW - 1
    _refused(login(http, app_client, idp.assertion(clock.now(), exp=exp)), "expired")


def test_assertion_expires_while_the_clock_moves(
    http: TestClient, idp: Upstream, app_client: Registered, clock: FrozenClock
) -> None:
    """An assertion minted earlier is refused once its exp and the skew have passed."""
    assertion = idp.assertion(clock.now())
    clock.advance(300 + MAX_CLOCK_SKEW)
    _refused(login(http, app_client, assertion), "expired")


def test_exp_too_far_ahead_is_refused(
    http: TestClient,
    idp: Upstream,
    app_client: Registered,
    clock: FrozenClock,
    services: Services,
) -> None:
    """An assertion whose exp lies beyond the accepted lifetime is invalid_grant."""
    limit = services.settings.assertion_max_lifetime + MAX_CLOCK_SKEW
    exp = int(clock.now()) + limit + 1
    _refused(login(http, app_client, idp.assertion(clock.now(), exp=exp)), "too far")


def test_missing_exp_is_refused(
    http: TestClient, idp: Upstream, app_client: Registered, clock: FrozenClock
) -> None:
    """An assertion without exp is invalid_grant."""
    _refused(login(http, app_client, idp.assertion(clock.now(), exp=None)), "exp")


def test_not_yet_valid_assertion_is_refused(
    http: TestClient, idp: Upstream, app_client: Registered, clock: FrozenClock
) -> None:
    """An assertion whose nbf lies beyond the skew is invalid_grant."""
    nbf = int(clock.now()) + MAX_CLOCK_SKEW + 30
    _refused(login(http, app_client, idp.assertion(clock.now(), nbf=nbf)), "not yet valid")


def test_missing_sub_is_refused(
    http: TestClient, idp: Upstream, app_client: Registered, clock: FrozenClock
) -> None:
    """An assertion without sub is invalid_grant."""
    _refused(login(http, app_client, idp.assertion(clock.now(), sub=None)), "sub")


def test_empty_sub_is_refused(
    http: TestClient, idp: Upstream, app_client: Registered, clock: FrozenClock
) -> None:
    """An assertion whose sub is empty is invalid_grant."""
    _refused(login(http, app_client, idp.assertion(clock.now(), sub="")), "sub")


def test_missing_jti_is_refused(
    http: TestClient, idp: Upstream, app_client: Registered, clock: FrozenClock
) -> None:
    """An assertion without jti cannot be protected against replay and is invalid_grant."""
    _refused(login(http, app_client, idp.assertion(clock.now(), jti=None)), "jti")


def test_replayed_jti_is_refused(
    http: TestClient, idp: Upstream, app_client: Registered, clock: FrozenClock
) -> None:
    """The second use of one assertion is invalid_grant."""
    assertion = idp.assertion(clock.now())
    assert login(http, app_client, assertion).status_code == 200
    _refused(login(http, app_client, assertion), "already used")


def test_replayed_jti_in_a_new_assertion_is_refused(
    http: TestClient, idp: Upstream, app_client: Registered, clock: FrozenClock
) -> None:
    """A fresh assertion reusing a consumed jti is invalid_grant."""
    assert login(http, app_client, idp.assertion(clock.now(), jti="j-1")).status_code == 200
    clock.advance(5)
    _refused(login(http, app_client, idp.assertion(clock.now(), jti="j-1")), "already used")


def test_unsigned_assertion_is_refused(
    http: TestClient, idp: Upstream, app_client: Registered, clock: FrozenClock
) -> None:
    """An ``alg: none`` assertion is invalid_grant (RFC 8725 §3.1)."""
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(idp.claims(clock.now())).encode())
    _refused(login(http, app_client, f"{header}.{payload}."), "signature")


def test_hmac_signed_assertion_is_refused(
    http: TestClient, idp: Upstream, app_client: Registered, clock: FrozenClock
) -> None:
    """An HS256 assertion is invalid_grant, whatever secret it was made with."""
    key = OctKey.import_key(secrets.token_bytes(32))
    token = jwt.encode({"alg": "HS256"}, idp.claims(clock.now()), key, algorithms=["HS256"])
    _refused(login(http, app_client, token), "signature")


def test_hmac_with_public_key_as_secret_is_refused(
    http: TestClient, idp: Upstream, app_client: Registered, clock: FrozenClock
) -> None:
    """Key confusion: HS256 keyed with the issuer's public JWK is invalid_grant."""
    secret = json.dumps(idp.jwks()["keys"][0]).encode()
    key = OctKey.import_key(secret)
    header = {"alg": "HS256", "kid": "idp-1"}
    token = jwt.encode(header, idp.claims(clock.now()), key, algorithms=["HS256"])
    _refused(login(http, app_client, token), "signature")


@pytest.mark.parametrize(
    "assertion",
    ["not-a-jwt", "a.b.c", _b64(b"{}") + "." + _b64(b"[1]") + ".x", "x." + _b64(b'{"a":1}') + ".y"],
)
def test_malformed_assertion_is_refused(
    http: TestClient, idp: Upstream, app_client: Registered, assertion: str
) -> None:
    """Something that is not a JWT with an iss claim is invalid_grant."""
    _refused(login(http, app_client, assertion), "iss")


def test_non_string_iss_is_refused(http: TestClient, idp: Upstream, app_client: Registered) -> None:
    """An assertion whose iss is not a string is invalid_grant."""
    forged = "x." + _b64(json.dumps({"iss": 42}).encode()) + ".y"
    _refused(login(http, app_client, forged), "iss")


def test_missing_assertion_is_invalid_request(
    http: TestClient, idp: Upstream, app_client: Registered
) -> None:
    """The grant without an assertion parameter is invalid_request."""
    assert app_client.secret is not None
    r = http.post(
        "/oauth/token",
        data={"grant_type": JWT_BEARER},
        auth=(app_client.client_id, app_client.secret),
    )
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_request"


def test_client_without_the_path_is_unauthorized(
    http: TestClient, idp: Upstream, make: Factory, clock: FrozenClock, services: Services
) -> None:
    """A client not allowed a jwt_bearer path is unauthorized_client, and it is audited."""
    worker = make.client()  # workload-client-credentials only
    r = login(http, worker, idp.assertion(clock.now()))
    assert r.status_code == 400
    assert r.json()["error"] == "unauthorized_client"
    assert "jwt_bearer" in r.json()["error_description"]
    with services.store.read() as tx:
        assert tx.audit_records(event=Event.ISSUANCE_REFUSED)


def test_refusals_issue_nothing(
    http: TestClient,
    idp: Upstream,
    app_client: Registered,
    clock: FrozenClock,
    services: Services,
) -> None:
    """A refused assertion leaves no upstream, session or token node behind."""
    login(http, app_client, idp.assertion(clock.now(), aud="https://wrong.example"))
    with services.store.read() as tx:
        assert tx.get_node(upstream_node_id(IDP, "alice@example.com")) is None
        assert tx.audit_records(event=Event.SESSION_CREATED) == []
