"""Client authentication at the token endpoint: RFC 6749 §2.3.1 and RFC 7523 §2.2."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
from joserfc.jwk import ECKey
from starlette.testclient import TestClient

from tests.conftest import Factory, Registered
from tests.oauth.helpers import (
    ISSUER,
    TOKEN_URL,
    assertion,
    assertion_form,
    audit,
    b64,
    basic,
    ec_key,
    public_jwks,
)
from tokentrail.clock import FrozenClock
from tokentrail.model import AuthMethod
from tokentrail.services import Services

CC = {"grant_type": "client_credentials"}


def _token_node_parent(services: Services, token: str) -> tuple[str, ...]:
    payload = token.split(".")[1]
    jti = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["jti"]
    with services.store.read() as tx:
        node = tx.get_node(jti)
    assert node is not None
    return node.parents


def _assert_invalid_client(r: Any) -> None:
    assert r.status_code == 401, r.text
    assert r.json()["error"] == "invalid_client"
    assert r.headers["www-authenticate"].startswith("Basic")
    assert r.headers["cache-control"] == "no-store"


@pytest.fixture
def jwt_key() -> ECKey:
    return ec_key("client-key-1")


@pytest.fixture
def jwt_client(make: Factory, jwt_key: ECKey) -> Registered:
    return make.client(auth=AuthMethod.PRIVATE_KEY_JWT, jwks=public_jwks(jwt_key))


# --- client_secret_basic ----------------------------------------------------------


def test_basic_with_right_secret_gets_a_token(http: TestClient, make: Factory) -> None:
    """A client_secret_basic client with its secret in the Basic header gets a token."""
    c = make.client()
    assert c.secret
    r = http.post("/oauth/token", data=CC, auth=(c.client_id, c.secret))
    assert r.status_code == 200, r.text
    assert r.json()["token_type"] == "Bearer"


def test_basic_halves_are_form_urlencoded(
    http: TestClient, make: Factory, services: Services
) -> None:
    """RFC 6749 §2.3.1: client_id and secret are form-urlencoded before Base64, and decoded."""
    c = make.client()
    assert c.secret
    every_char = "".join(f"%{b:02X}" for b in c.secret.encode())
    user = quote(c.client_id, safe="").replace("_", "%5F")
    r = http.post("/oauth/token", data=CC, headers=basic(user, every_char))
    assert r.status_code == 200, r.text
    assert _token_node_parent(services, r.json()["access_token"]) == (c.credential_id,)


def test_basic_plus_decodes_to_space(http: TestClient, make: Factory) -> None:
    """A '+' in the Basic halves is a form-encoded space, so a secret with '+' for '_' fails."""
    c = make.client()
    assert c.secret
    r = http.post("/oauth/token", data=CC, headers=basic(c.client_id, c.secret + "+"))
    _assert_invalid_client(r)


def test_basic_wrong_secret_is_invalid_client(http: TestClient, make: Factory) -> None:
    """A wrong secret answers 401 invalid_client with a WWW-Authenticate header."""
    c = make.client()
    r = http.post("/oauth/token", data=CC, auth=(c.client_id, "tts_wrong"))
    _assert_invalid_client(r)


def test_basic_unknown_client_is_invalid_client(http: TestClient, make: Factory) -> None:
    """An unknown client id answers 401 invalid_client."""
    make.team()
    r = http.post("/oauth/token", data=CC, auth=("cl_nobody", "tts_whatever"))
    _assert_invalid_client(r)


def test_basic_secret_of_another_client_is_refused(http: TestClient, make: Factory) -> None:
    """One client's secret does not authenticate another client."""
    a, b = make.client(), make.client()
    assert b.secret
    r = http.post("/oauth/token", data=CC, auth=(a.client_id, b.secret))
    _assert_invalid_client(r)


def test_basic_with_matching_body_client_id_is_accepted(http: TestClient, make: Factory) -> None:
    """A body client_id equal to the Basic user is allowed alongside the header."""
    c = make.client()
    assert c.secret
    r = http.post(
        "/oauth/token", data={**CC, "client_id": c.client_id}, auth=(c.client_id, c.secret)
    )
    assert r.status_code == 200, r.text


def test_basic_with_other_body_client_id_is_invalid_request(
    http: TestClient, make: Factory
) -> None:
    """A body client_id that differs from the Basic user is invalid_request."""
    c, other = make.client(), make.client()
    assert c.secret
    r = http.post(
        "/oauth/token", data={**CC, "client_id": other.client_id}, auth=(c.client_id, c.secret)
    )
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_request"


# --- client_secret_post ---------------------------------------------------------


def test_post_with_right_secret_gets_a_token(http: TestClient, make: Factory) -> None:
    """A client_secret_post client with client_id and client_secret in the body gets a token."""
    c = make.client(auth=AuthMethod.CLIENT_SECRET_POST)
    assert c.secret
    r = http.post("/oauth/token", data={**CC, "client_id": c.client_id, "client_secret": c.secret})
    assert r.status_code == 200, r.text


def test_post_wrong_secret_is_invalid_client(http: TestClient, make: Factory) -> None:
    """client_secret_post with a wrong secret answers 401 invalid_client."""
    c = make.client(auth=AuthMethod.CLIENT_SECRET_POST)
    r = http.post("/oauth/token", data={**CC, "client_id": c.client_id, "client_secret": "x"})
    _assert_invalid_client(r)


def test_post_without_client_id_is_invalid_request(http: TestClient, make: Factory) -> None:
    """client_secret_post without client_id is invalid_request."""
    c = make.client(auth=AuthMethod.CLIENT_SECRET_POST)
    assert c.secret
    r = http.post("/oauth/token", data={**CC, "client_secret": c.secret})
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_request"


# --- the registered method, and only one ----------------------------------------


def test_basic_client_using_post_is_refused(
    http: TestClient, make: Factory, services: Services
) -> None:
    """A client registered for client_secret_basic cannot authenticate with client_secret_post."""
    c = make.client(auth=AuthMethod.CLIENT_SECRET_BASIC)
    assert c.secret
    r = http.post("/oauth/token", data={**CC, "client_id": c.client_id, "client_secret": c.secret})
    _assert_invalid_client(r)
    [record] = audit(services, "client_auth.failed")
    assert "client_secret_basic" in record.data["reason"]


def test_post_client_using_basic_is_refused(http: TestClient, make: Factory) -> None:
    """A client registered for client_secret_post cannot authenticate with Basic."""
    c = make.client(auth=AuthMethod.CLIENT_SECRET_POST)
    assert c.secret
    r = http.post("/oauth/token", data=CC, auth=(c.client_id, c.secret))
    _assert_invalid_client(r)


def test_secret_client_using_assertion_is_refused(
    http: TestClient, make: Factory, clock: FrozenClock, jwt_key: ECKey
) -> None:
    """A secret-based client cannot authenticate with a client assertion."""
    c = make.client()
    r = http.post(
        "/oauth/token", data={**CC, **assertion_form(assertion(jwt_key, c.client_id, clock.now()))}
    )
    _assert_invalid_client(r)


def test_jwt_client_using_secret_is_refused(
    http: TestClient, jwt_client: Registered, make: Factory
) -> None:
    """A private_key_jwt client has no secret; a Basic header for it is refused."""
    other = make.client()
    assert other.secret
    r = http.post("/oauth/token", data=CC, auth=(jwt_client.client_id, other.secret))
    _assert_invalid_client(r)


def test_basic_and_post_together_is_invalid_request(http: TestClient, make: Factory) -> None:
    """RFC 6749 §2.3: using two authentication methods at once is invalid_request."""
    c = make.client()
    assert c.secret
    r = http.post(
        "/oauth/token",
        data={**CC, "client_id": c.client_id, "client_secret": c.secret},
        auth=(c.client_id, c.secret),
    )
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_request"


def test_basic_and_assertion_together_is_invalid_request(
    http: TestClient, make: Factory, jwt_client: Registered, jwt_key: ECKey, clock: FrozenClock
) -> None:
    """A Basic header plus a client assertion is two methods: invalid_request."""
    c = make.client()
    assert c.secret
    token = assertion(jwt_key, jwt_client.client_id, clock.now())
    r = http.post(
        "/oauth/token", data={**CC, **assertion_form(token)}, auth=(c.client_id, c.secret)
    )
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_request"


def test_no_credentials_is_invalid_client(http: TestClient, make: Factory) -> None:
    """A request without any client authentication answers 401 invalid_client."""
    make.client()
    r = http.post("/oauth/token", data=CC)
    _assert_invalid_client(r)


def test_bearer_scheme_is_invalid_client(http: TestClient, make: Factory) -> None:
    """An Authorization header with a scheme other than Basic is invalid_client."""
    make.client()
    r = http.post("/oauth/token", data=CC, headers={"Authorization": "Bearer abc"})
    _assert_invalid_client(r)


# --- revocation and rotation of credentials --------------------------------------


def test_revoked_secret_is_refused(http: TestClient, make: Factory, services: Services) -> None:
    """A revoked credential no longer authenticates."""
    c = make.client()
    assert c.secret
    services.admin.revoke(c.credential_id, reason="leaked", actor="test")
    r = http.post("/oauth/token", data=CC, auth=(c.client_id, c.secret))
    _assert_invalid_client(r)


def test_revoking_one_credential_leaves_the_rotated_one_working(
    http: TestClient, make: Factory, services: Services
) -> None:
    """Revoking the old credential during a rotation leaves the new one working."""
    c = make.client()
    new = services.admin.rotate_credential(c.client_id, grace=600, actor="test")
    services.admin.revoke(c.credential_id, reason="leaked", actor="test")
    assert c.secret
    assert new.client_secret
    assert http.post("/oauth/token", data=CC, auth=(c.client_id, c.secret)).status_code == 401
    r = http.post("/oauth/token", data=CC, auth=(c.client_id, new.client_secret))
    assert r.status_code == 200, r.text


def test_rotated_secret_works_during_grace(
    http: TestClient, make: Factory, services: Services, clock: FrozenClock
) -> None:
    """During the grace period both the old and the new secret authenticate."""
    c = make.client()
    new = services.admin.rotate_credential(c.client_id, grace=600, actor="test")
    clock.advance(599)
    assert c.secret
    assert new.client_secret
    old_r = http.post("/oauth/token", data=CC, auth=(c.client_id, c.secret))
    new_r = http.post("/oauth/token", data=CC, auth=(c.client_id, new.client_secret))
    assert (old_r.status_code, new_r.status_code) == (200, 200)
    assert _token_node_parent(services, old_r.json()["access_token"]) == (c.credential_id,)
    assert _token_node_parent(services, new_r.json()["access_token"]) == (new.credential_id,)


def test_rotated_secret_is_refused_after_grace(
    http: TestClient, make: Factory, services: Services, clock: FrozenClock
) -> None:
    """Once the grace period ends the old secret is refused and the new one still works."""
    c = make.client()
    new = services.admin.rotate_credential(c.client_id, grace=600, actor="test")
    clock.advance(600)
    assert c.secret
    assert new.client_secret
    _assert_invalid_client(http.post("/oauth/token", data=CC, auth=(c.client_id, c.secret)))
    r = http.post("/oauth/token", data=CC, auth=(c.client_id, new.client_secret))
    assert r.status_code == 200, r.text


def test_rotation_with_zero_grace_cuts_the_old_secret_at_once(
    http: TestClient, make: Factory, services: Services
) -> None:
    """A rotation with no grace refuses the old secret immediately."""
    c = make.client()
    services.admin.rotate_credential(c.client_id, grace=0, actor="test")
    assert c.secret
    _assert_invalid_client(http.post("/oauth/token", data=CC, auth=(c.client_id, c.secret)))


def test_rotated_jwks_old_key_works_only_during_grace(
    http: TestClient,
    services: Services,
    jwt_client: Registered,
    jwt_key: ECKey,
    clock: FrozenClock,
) -> None:
    """A rotated private_key_jwt key authenticates during the grace period, not after."""
    new_key = ec_key("client-key-2")
    services.admin.rotate_credential(
        jwt_client.client_id, jwks=public_jwks(new_key), grace=300, actor="test"
    )
    cid = jwt_client.client_id
    during = http.post(
        "/oauth/token", data={**CC, **assertion_form(assertion(jwt_key, cid, clock.now()))}
    )
    assert during.status_code == 200, during.text
    clock.advance(300)
    after = http.post(
        "/oauth/token", data={**CC, **assertion_form(assertion(jwt_key, cid, clock.now()))}
    )
    _assert_invalid_client(after)
    fresh = http.post(
        "/oauth/token", data={**CC, **assertion_form(assertion(new_key, cid, clock.now()))}
    )
    assert fresh.status_code == 200, fresh.text


# --- audit of failures -------------------------------------------------------------


def test_failed_auth_is_audited_without_the_secret(
    http: TestClient, make: Factory, services: Services
) -> None:
    """A failed authentication writes client_auth.failed naming the client, never the secret."""
    c = make.client()
    wrong = "tts_" + "S3cr3t" * 8
    http.post("/oauth/token", data=CC, auth=(c.client_id, wrong))
    [record] = audit(services, "client_auth.failed")
    assert record.client_id == c.client_id
    assert record.data["method"] == "client_secret_basic"
    dumped = json.dumps([record.actor, record.data, record.subject, record.node_id])
    assert wrong not in dumped
    assert "S3cr3t" not in dumped


def test_failed_post_auth_does_not_record_the_real_secret(
    http: TestClient, make: Factory, services: Services
) -> None:
    """A method mismatch audit record does not carry the (correct) secret that was sent."""
    c = make.client()
    assert c.secret
    http.post("/oauth/token", data={**CC, "client_id": c.client_id, "client_secret": c.secret})
    [record] = audit(services, "client_auth.failed")
    assert c.secret not in json.dumps([record.actor, record.data])


def test_malformed_basic_header_is_audited(
    http: TestClient, make: Factory, services: Services
) -> None:
    """A Basic header that does not decode is a failed authentication and is audited."""
    make.client()
    r = http.post("/oauth/token", data=CC, headers={"Authorization": "Basic !!!notbase64"})
    _assert_invalid_client(r)
    [record] = audit(services, "client_auth.failed")
    assert record.data["method"] == "client_secret_basic"


def test_missing_credentials_are_audited(http: TestClient, services: Services) -> None:
    """A request presenting no credentials at all is audited as a failed authentication."""
    http.post("/oauth/token", data=CC)
    [record] = audit(services, "client_auth.failed")
    assert record.actor == "anonymous"


def test_successful_auth_writes_no_failure(
    http: TestClient, make: Factory, services: Services
) -> None:
    """A successful authentication leaves no client_auth.failed record."""
    c = make.client()
    assert c.secret
    http.post("/oauth/token", data=CC, auth=(c.client_id, c.secret))
    assert audit(services, "client_auth.failed") == []


# --- private_key_jwt ------------------------------------------------------------------


def test_assertion_authenticates(
    http: TestClient,
    jwt_client: Registered,
    jwt_key: ECKey,
    clock: FrozenClock,
    services: Services,
) -> None:
    """A valid RFC 7523 client assertion signed with the registered key gets a token."""
    token = assertion(jwt_key, jwt_client.client_id, clock.now())
    r = http.post("/oauth/token", data={**CC, **assertion_form(token)})
    assert r.status_code == 200, r.text
    assert _token_node_parent(services, r.json()["access_token"]) == (jwt_client.credential_id,)


@pytest.mark.parametrize("aud", [ISSUER, TOKEN_URL, [ISSUER, "https://other.example"]])
def test_assertion_audience_may_name_issuer_or_token_endpoint(
    http: TestClient,
    jwt_client: Registered,
    jwt_key: ECKey,
    clock: FrozenClock,
    aud: object,
) -> None:
    """The aud claim may be the issuer or the token endpoint, alone or in a list."""
    token = assertion(jwt_key, jwt_client.client_id, clock.now(), aud=aud)
    r = http.post("/oauth/token", data={**CC, **assertion_form(token)})
    assert r.status_code == 200, r.text


def test_assertion_with_matching_client_id_parameter(
    http: TestClient, jwt_client: Registered, jwt_key: ECKey, clock: FrozenClock
) -> None:
    """A client_id parameter equal to the assertion's sub is accepted."""
    token = assertion(jwt_key, jwt_client.client_id, clock.now())
    r = http.post(
        "/oauth/token",
        data={**CC, **assertion_form(token, client_id=jwt_client.client_id)},
    )
    assert r.status_code == 200, r.text


def test_assertion_with_other_client_id_parameter_is_refused(
    http: TestClient, jwt_client: Registered, jwt_key: ECKey, clock: FrozenClock, make: Factory
) -> None:
    """A client_id parameter that differs from the assertion's sub is refused."""
    other = make.client()
    token = assertion(jwt_key, jwt_client.client_id, clock.now())
    r = http.post("/oauth/token", data={**CC, **assertion_form(token, client_id=other.client_id)})
    _assert_invalid_client(r)


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        (lambda now: {"iss": "someone-else"}, "iss and sub"),
        (lambda now: {"aud": "https://elsewhere.example/token"}, "aud"),
        (lambda now: {"aud": None}, "aud"),
        (lambda now: {"exp": None}, "exp missing"),
        (lambda now: {"exp": "tomorrow"}, "exp missing"),
        (lambda now: {"jti": None}, "jti missing"),
        (lambda now: {"jti": ""}, "jti missing"),
        (lambda now: {"exp": int(now) + 3600}, "exp too far"),
        (lambda now: {"nbf": int(now) + 600}, "not yet valid"),
    ],
    ids=["iss", "aud", "no-aud", "no-exp", "str-exp", "no-jti", "empty-jti", "far-exp", "nbf"],
)
def test_assertion_claim_checks(
    http: TestClient,
    jwt_client: Registered,
    jwt_key: ECKey,
    clock: FrozenClock,
    services: Services,
    claims: Callable[[float], dict[str, Any]],
    reason: str,
) -> None:
    """RFC 7523 §3: iss, sub, aud, exp and jti are checked; each failure is invalid_client."""
    token = assertion(jwt_key, jwt_client.client_id, clock.now(), **claims(clock.now()))
    r = http.post("/oauth/token", data={**CC, **assertion_form(token)})
    _assert_invalid_client(r)
    [record] = audit(services, "client_auth.failed")
    assert reason in record.data["reason"]


def test_assertion_sub_naming_another_client_is_refused(
    http: TestClient, jwt_client: Registered, jwt_key: ECKey, clock: FrozenClock, make: Factory
) -> None:
    """An assertion whose iss and sub name another client does not verify with that one's keys."""
    victim = make.client(auth=AuthMethod.PRIVATE_KEY_JWT, jwks=public_jwks(ec_key("victim")))
    token = assertion(jwt_key, victim.client_id, clock.now())
    _assert_invalid_client(http.post("/oauth/token", data={**CC, **assertion_form(token)}))


def test_assertion_expired_is_refused(
    http: TestClient, jwt_client: Registered, jwt_key: ECKey, clock: FrozenClock
) -> None:
    """An assertion presented after its exp (beyond the allowed skew) is refused."""
    token = assertion(jwt_key, jwt_client.client_id, clock.now())
    clock.advance(60 + 61)
    _assert_invalid_client(http.post("/oauth/token", data={**CC, **assertion_form(token)}))


def test_assertion_replayed_jti_is_refused(
    http: TestClient, jwt_client: Registered, jwt_key: ECKey, clock: FrozenClock, services: Services
) -> None:
    """A second use of the same assertion (same jti) is refused."""
    token = assertion(jwt_key, jwt_client.client_id, clock.now())
    first = http.post("/oauth/token", data={**CC, **assertion_form(token)})
    assert first.status_code == 200, first.text
    _assert_invalid_client(http.post("/oauth/token", data={**CC, **assertion_form(token)}))
    [record] = audit(services, "client_auth.failed")
    assert "replayed" in record.data["reason"]


def test_assertion_fresh_jwt_with_reused_jti_is_refused(
    http: TestClient, jwt_client: Registered, jwt_key: ECKey, clock: FrozenClock
) -> None:
    """A new assertion that reuses an earlier jti is refused too."""
    now = clock.now()
    first = assertion(jwt_key, jwt_client.client_id, now, jti="once")
    assert http.post("/oauth/token", data={**CC, **assertion_form(first)}).status_code == 200
    clock.advance(5)
    again = assertion(jwt_key, jwt_client.client_id, clock.now(), jti="once")
    _assert_invalid_client(http.post("/oauth/token", data={**CC, **assertion_form(again)}))


def test_same_jti_from_two_clients_is_not_a_replay(
    http: TestClient, jwt_client: Registered, jwt_key: ECKey, clock: FrozenClock, make: Factory
) -> None:
    """jti uniqueness is per client: another client may use the same value."""
    other_key = ec_key("other")
    other = make.client(auth=AuthMethod.PRIVATE_KEY_JWT, jwks=public_jwks(other_key))
    now = clock.now()
    a = assertion(jwt_key, jwt_client.client_id, now, jti="shared")
    b = assertion(other_key, other.client_id, now, jti="shared")
    assert http.post("/oauth/token", data={**CC, **assertion_form(a)}).status_code == 200
    assert http.post("/oauth/token", data={**CC, **assertion_form(b)}).status_code == 200


def test_assertion_signed_with_wrong_key_is_refused(
    http: TestClient, jwt_client: Registered, clock: FrozenClock, services: Services
) -> None:
    """An assertion signed with a key the client did not register is refused."""
    stranger = ec_key("client-key-1")  # same kid, different key
    token = assertion(stranger, jwt_client.client_id, clock.now())
    _assert_invalid_client(http.post("/oauth/token", data={**CC, **assertion_form(token)}))
    [record] = audit(services, "client_auth.failed")
    assert record.data["reason"] == "assertion signature"


def _hs256(client_id: str, now: float, key: bytes) -> str:
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64(
        json.dumps(
            {"iss": client_id, "sub": client_id, "aud": TOKEN_URL, "exp": int(now) + 60, "jti": "h"}
        ).encode()
    )
    sig = hmac.new(key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(sig)}"


def test_assertion_with_hmac_alg_is_refused(
    http: TestClient, jwt_client: Registered, jwt_key: ECKey, clock: FrozenClock
) -> None:
    """HS256 keyed with the client's public key (algorithm confusion) is refused."""
    public = json.dumps(jwt_key.as_dict(private=False)).encode()
    for secret in (public, str(jwt_key.as_dict(private=False)["x"]).encode()):
        token = _hs256(jwt_client.client_id, clock.now(), secret)
        _assert_invalid_client(http.post("/oauth/token", data={**CC, **assertion_form(token)}))


def test_assertion_with_none_alg_is_refused(
    http: TestClient, jwt_client: Registered, clock: FrozenClock
) -> None:
    """An unsigned assertion (alg none) is refused."""
    cid = jwt_client.client_id
    header = b64(json.dumps({"alg": "none"}).encode())
    payload = b64(
        json.dumps(
            {"iss": cid, "sub": cid, "aud": TOKEN_URL, "exp": int(clock.now()) + 60, "jti": "n"}
        ).encode()
    )
    for token in (f"{header}.{payload}.", f"{header}.{payload}"):
        _assert_invalid_client(http.post("/oauth/token", data={**CC, **assertion_form(token)}))


@pytest.mark.parametrize("garbage", ["not-a-jwt", "a.b.c", "a.!!!.c", "e30.W10.e30", "e30.IjEi.x"])
def test_assertion_that_is_not_a_jwt_is_refused(
    http: TestClient, jwt_client: Registered, garbage: str
) -> None:
    """A client_assertion that is not a JWT answers invalid_client, not an error page."""
    _assert_invalid_client(http.post("/oauth/token", data={**CC, **assertion_form(garbage)}))


def test_assertion_wrong_type_is_invalid_request(
    http: TestClient, jwt_client: Registered, jwt_key: ECKey, clock: FrozenClock
) -> None:
    """A client_assertion_type other than the RFC 7523 URN is invalid_request."""
    token = assertion(jwt_key, jwt_client.client_id, clock.now())
    r = http.post(
        "/oauth/token",
        data={**CC, "client_assertion_type": "urn:example:saml", "client_assertion": token},
    )
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_request"


def test_assertion_type_without_assertion_is_invalid_request(
    http: TestClient, jwt_client: Registered
) -> None:
    """client_assertion_type without client_assertion is invalid_request."""
    r = http.post(
        "/oauth/token",
        data={
            **CC,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        },
    )
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_request"


def test_revoked_jwks_credential_is_refused(
    http: TestClient,
    jwt_client: Registered,
    jwt_key: ECKey,
    clock: FrozenClock,
    services: Services,
) -> None:
    """A revoked private_key_jwt credential no longer authenticates."""
    services.admin.revoke(jwt_client.credential_id, reason="key leaked", actor="test")
    token = assertion(jwt_key, jwt_client.client_id, clock.now())
    _assert_invalid_client(http.post("/oauth/token", data={**CC, **assertion_form(token)}))


def test_failed_assertion_audit_names_the_asserted_client(
    http: TestClient, jwt_client: Registered, clock: FrozenClock, services: Services
) -> None:
    """A failed assertion is audited under the client its sub names, without the assertion."""
    token = assertion(ec_key(), jwt_client.client_id, clock.now())
    http.post("/oauth/token", data={**CC, **assertion_form(token)})
    [record] = audit(services, "client_auth.failed")
    assert record.client_id == jwt_client.client_id
    assert token not in json.dumps([record.actor, record.data])


@pytest.mark.parametrize("part", [0, 1], ids=["header", "payload"])
def test_assertion_with_deeply_nested_json_is_refused(
    http: TestClient, jwt_client: Registered, jwt_key: ECKey, clock: FrozenClock, part: int
) -> None:
    """An assertion whose JSON is nested too deep to parse is invalid_client, not a 500."""
    parts = assertion(jwt_key, jwt_client.client_id, clock.now()).split(".")
    parts[part] = b64(b"[" * 1500 + b"]" * 1500)
    token = ".".join(parts)
    _assert_invalid_client(http.post("/oauth/token", data={**CC, **assertion_form(token)}))
