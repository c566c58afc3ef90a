"""Token introspection (RFC 7662): client-authenticated, and one answer for every dead token."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from joserfc import jwt
from starlette.testclient import TestClient

from tests.conftest import ISSUER, Factory, Registered
from tests.oauth.helpers import audit, b64, claims_of, ec_key, get_token, introspect
from tokentrail.clock import FrozenClock
from tokentrail.model import AuthMethod
from tokentrail.services import Services
from tokentrail.storage import tables as t

INACTIVE = {"active": False}


@pytest.fixture
def worker(make: Factory) -> Registered:
    return make.client(scopes=["read", "write"])


@pytest.fixture
def gateway(make: Factory) -> Registered:
    """A resource server's client: it introspects, it holds no paths."""
    return make.client(paths=[], scopes=[], audiences=[])


# --- who may ask -----------------------------------------------------------------------


def test_introspection_without_client_auth_is_invalid_client(
    http: TestClient, worker: Registered
) -> None:
    """RFC 7662 §2.1: an unauthenticated caller gets 401 invalid_client, not an answer."""
    token = get_token(http, worker)
    r = http.post("/oauth/introspect", data={"token": token})
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"
    assert "active" not in r.json()


def test_introspection_with_wrong_secret_is_invalid_client(
    http: TestClient, worker: Registered, gateway: Registered
) -> None:
    """A wrong secret at the introspection endpoint is 401 invalid_client."""
    token = get_token(http, worker)
    r = http.post("/oauth/introspect", data={"token": token}, auth=(gateway.client_id, "tts_x"))
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"


def test_introspection_with_revoked_caller_credential_is_refused(
    http: TestClient, worker: Registered, gateway: Registered, services: Services
) -> None:
    """A caller whose credential was revoked cannot introspect."""
    token = get_token(http, worker)
    services.admin.revoke(gateway.credential_id, reason="decommissioned", actor="test")
    assert gateway.secret
    r = http.post(
        "/oauth/introspect", data={"token": token}, auth=(gateway.client_id, gateway.secret)
    )
    assert r.status_code == 401


def test_introspection_accepts_client_secret_post(
    http: TestClient, worker: Registered, make: Factory
) -> None:
    """A client_secret_post caller may introspect with credentials in the body."""
    rs = make.client(auth=AuthMethod.CLIENT_SECRET_POST, paths=[])
    assert rs.secret
    token = get_token(http, worker)
    r = http.post(
        "/oauth/introspect",
        data={"token": token, "client_id": rs.client_id, "client_secret": rs.secret},
    )
    assert r.status_code == 200, r.text
    assert r.json()["active"] is True


# --- active answers ------------------------------------------------------------------


def test_active_response_lists_the_token_claims_path_and_lineage(
    http: TestClient, worker: Registered, gateway: Registered, clock: FrozenClock
) -> None:
    """An active answer carries the RFC 7662 members plus tt_path and tt_anc, and nothing else."""
    token = get_token(http, worker, scope="read")
    now = int(clock.now())
    result = introspect(http, gateway, token)
    assert result == {
        "active": True,
        "token_type": "Bearer",
        "scope": "read",
        "client_id": worker.client_id,
        "sub": worker.client_id,
        "aud": "https://api.example",
        "iss": ISSUER,
        "exp": now + 300,
        "iat": now,
        "jti": claims_of(token)["jti"],
        "tt_path": "workload-client-credentials",
        "tt_anc": [worker.credential_id],
    }


def test_token_holder_may_introspect_its_own_token(http: TestClient, worker: Registered) -> None:
    """The client a token was issued to may introspect it too."""
    token = get_token(http, worker)
    assert introspect(http, worker, token)["active"] is True


def test_token_is_active_until_its_last_second(
    http: TestClient, worker: Registered, gateway: Registered, clock: FrozenClock
) -> None:
    """One second before exp the token still introspects active."""
    token = get_token(http, worker)
    clock.advance(299)
    assert introspect(http, gateway, token)["active"] is True


def test_token_type_hint_does_not_change_the_answer(
    http: TestClient, worker: Registered, gateway: Registered
) -> None:
    """A wrong token_type_hint does not stop an access token being found."""
    assert gateway.secret
    token = get_token(http, worker)
    r = http.post(
        "/oauth/introspect",
        data={"token": token, "token_type_hint": "refresh_token"},
        auth=(gateway.client_id, gateway.secret),
    )
    assert r.json()["active"] is True


# --- inactive answers: exactly {"active": false} -------------------------------------


def test_expired_token_is_inactive(
    http: TestClient, worker: Registered, gateway: Registered, clock: FrozenClock
) -> None:
    """At exp the token is inactive, and the answer says nothing more."""
    token = get_token(http, worker)
    clock.advance(300)
    assert introspect(http, gateway, token) == INACTIVE


def test_long_expired_token_is_inactive(
    http: TestClient, worker: Registered, gateway: Registered, clock: FrozenClock
) -> None:
    """A token a day past its expiry is inactive."""
    token = get_token(http, worker)
    clock.advance(86_400)
    assert introspect(http, gateway, token) == INACTIVE


def test_revoked_token_is_inactive(
    http: TestClient, worker: Registered, gateway: Registered, services: Services
) -> None:
    """A token whose own node is revoked is inactive."""
    token = get_token(http, worker)
    services.admin.revoke(claims_of(token)["jti"], reason="test", actor="test")
    assert introspect(http, gateway, token) == INACTIVE


def test_token_of_revoked_credential_is_inactive(
    http: TestClient, worker: Registered, gateway: Registered, services: Services
) -> None:
    """Revoking the credential a token came from makes the token inactive (cascade)."""
    token = get_token(http, worker)
    services.admin.revoke(worker.credential_id, reason="leaked", actor="test")
    assert introspect(http, gateway, token) == INACTIVE


def test_revoking_one_token_leaves_its_sibling_active(
    http: TestClient, worker: Registered, gateway: Registered, services: Services
) -> None:
    """Revoking a token does not affect another token from the same credential."""
    first, second = get_token(http, worker), get_token(http, worker)
    services.admin.revoke(claims_of(first)["jti"], reason="test", actor="test")
    assert introspect(http, gateway, first) == INACTIVE
    assert introspect(http, gateway, second)["active"] is True


def test_unknown_refresh_shaped_token_is_inactive(http: TestClient, gateway: Registered) -> None:
    """An opaque token tokentrail never issued is inactive."""
    assert introspect(http, gateway, "ttr_" + "A" * 43) == INACTIVE


def test_token_signed_by_an_unknown_key_is_inactive(
    http: TestClient, worker: Registered, gateway: Registered, clock: FrozenClock
) -> None:
    """A well-formed at+jwt signed by a key tokentrail does not publish is inactive."""
    real = claims_of(get_token(http, worker))
    stranger = ec_key("stranger")
    forged = jwt.encode({"alg": "ES256", "kid": "stranger", "typ": "at+jwt"}, real, stranger)
    assert introspect(http, gateway, forged) == INACTIVE


def test_token_signed_by_a_stranger_under_our_kid_is_inactive(
    http: TestClient, worker: Registered, gateway: Registered
) -> None:
    """A token claiming our kid but signed by another key is inactive."""
    token = get_token(http, worker)
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    stranger = ec_key(header["kid"])
    forged = jwt.encode(header, claims_of(token), stranger)
    assert introspect(http, gateway, forged) == INACTIVE


def test_token_with_alg_none_is_inactive(
    http: TestClient, worker: Registered, gateway: Registered
) -> None:
    """An unsigned copy of a real token (alg none) is inactive."""
    token = get_token(http, worker)
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    header["alg"] = "none"
    unsigned = f"{b64(json.dumps(header).encode())}.{token.split('.')[1]}."
    assert introspect(http, gateway, unsigned) == INACTIVE


def test_token_with_altered_claims_is_inactive(
    http: TestClient, worker: Registered, gateway: Registered
) -> None:
    """A real token whose payload was edited (longer expiry) is inactive."""
    token = get_token(http, worker)
    claims = claims_of(token)
    claims["exp"] += 86_400
    h, _, s = token.split(".")
    assert introspect(http, gateway, f"{h}.{b64(json.dumps(claims).encode())}.{s}") == INACTIVE


def test_token_with_wrong_typ_is_inactive(
    http: TestClient, worker: Registered, gateway: Registered, services: Services
) -> None:
    """A JWT signed with our key but typ JWT is not an access token: inactive."""
    token = get_token(http, worker)
    claims = claims_of(token)
    signer = services.keys.signer()
    header = {"alg": "ES256", "kid": signer.kid, "typ": "JWT"}
    h = b64(json.dumps(header).encode())
    p, s = token.split(".")[1], token.split(".")[2]
    assert claims["jti"]
    assert introspect(http, gateway, f"{h}.{p}.{s}") == INACTIVE


@pytest.mark.parametrize(
    "token",
    [
        "not-a-token",
        "a.b",
        "a.b.c",
        "..",
        "....",
        "é.é.é",
        "eyJhbGciOiJFUzI1NiJ9.e30.",
        "W10.e30.AAAA",
        "bnVsbA.bnVsbA.AAAA",
        "x" * 9000,
        "ttr_",
        "tts_" + "x" * 43,
        "\u202e\u0000",
    ],
    ids=[
        "word",
        "one-dot",
        "three-parts",
        "empty-parts",
        "five-parts",
        "non-ascii",
        "no-signature",
        "array-header",
        "null-header",
        "huge",
        "bare-prefix",
        "client-secret",
        "control-chars",
    ],
)
def test_malformed_token_is_inactive(http: TestClient, gateway: Registered, token: str) -> None:
    """Anything that is not a live token we issued answers exactly {"active": false}."""
    assert gateway.secret
    r = http.post(
        "/oauth/introspect", data={"token": token}, auth=(gateway.client_id, gateway.secret)
    )
    assert r.status_code in (200, 400), r.text
    if r.status_code == 200:
        assert r.json() == INACTIVE
    else:
        assert r.json()["error"] == "invalid_request"


def test_inactive_answer_is_not_cached(http: TestClient, gateway: Registered) -> None:
    """Inactive answers carry Cache-Control: no-store like active ones."""
    assert gateway.secret
    r = http.post(
        "/oauth/introspect", data={"token": "nope"}, auth=(gateway.client_id, gateway.secret)
    )
    assert r.headers["cache-control"] == "no-store"


def test_introspecting_a_revoked_token_changes_no_revocation_state(
    http: TestClient, worker: Registered, gateway: Registered, services: Services
) -> None:
    """Introspecting a dead token changes no revocation state."""
    token = get_token(http, worker)
    services.admin.revoke(worker.credential_id, reason="leaked", actor="test")
    before = len(audit(services, "node.revoked"))
    introspect(http, gateway, token)
    assert len(audit(services, "node.revoked")) == before


@pytest.mark.parametrize("part", [0, 1], ids=["header", "payload"])
def test_deeply_nested_json_token_is_inactive(
    http: TestClient, worker: Registered, gateway: Registered, part: int
) -> None:
    """A token whose header or payload is JSON nested too deep to parse is inactive, not a 500."""
    parts = get_token(http, worker).split(".")
    parts[part] = b64(b"[" * 1500 + b"]" * 1500)
    assert introspect(http, gateway, ".".join(parts)) == INACTIVE


@pytest.mark.parametrize(
    "change",
    [
        {"iss": "https://elsewhere.example"},
        {"client_id": None},
        {"tt_anc": None},
        {"exp": "soon"},
        {"exp": True},
        {"tt_anc": "cred_x"},
        {"jti": 12},
    ],
    ids=["wrong-iss", "no-client-id", "no-tt-anc", "str-exp", "bool-exp", "str-tt-anc", "int-jti"],
)
def test_our_signature_on_bad_claims_is_inactive(
    http: TestClient,
    worker: Registered,
    gateway: Registered,
    services: Services,
    change: dict[str, object],
) -> None:
    """A token signed with our key but with a wrong issuer or malformed claims is inactive."""
    claims = claims_of(get_token(http, worker))
    claims.update(change)
    claims = {k: v for k, v in claims.items() if v is not None}
    token = services.keys.signer().sign(claims)
    assert introspect(http, gateway, token) == INACTIVE


def test_oversized_jwt_is_inactive(
    http: TestClient, worker: Registered, gateway: Registered
) -> None:
    """A JWT-shaped token over 8 KiB is inactive without being verified."""
    h, p, s = get_token(http, worker).split(".")
    assert introspect(http, gateway, f"{h}.{p}{'A' * 8200}.{s}") == INACTIVE


# --- the record of issuance is the authority ---------------------------------------------


def test_our_signature_on_a_token_we_never_issued_is_inactive(
    http: TestClient, worker: Registered, gateway: Registered, services: Services
) -> None:
    """Introspection answers from the record of issuance, not from the signature: a token
    signed with our own key (as a thief of the signing key could make) is inactive when
    it is not byte for byte the token recorded for its jti, or names no recorded node."""
    token = get_token(http, worker, scope="read")
    claims = claims_of(token)
    widened = dict(claims, scope="read write")
    assert introspect(http, gateway, services.keys.signer().sign(widened)) == INACTIVE
    unrecorded = dict(claims, jti="at_never_issued_here")
    assert introspect(http, gateway, services.keys.signer().sign(unrecorded)) == INACTIVE
    assert introspect(http, gateway, token)["active"] is True


def test_the_node_records_the_digest_of_its_token(
    http: TestClient, worker: Registered, services: Services
) -> None:
    token = get_token(http, worker)
    with services.store.read() as tx:
        node = tx.get_node(claims_of(token)["jti"])
    assert node is not None
    digest = hashlib.sha256(token.encode()).digest()
    assert node.meta["token_sha256"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def test_a_token_recorded_without_a_digest_is_checked_by_its_signature(
    http: TestClient, worker: Registered, gateway: Registered, services: Services
) -> None:
    """Nodes written before digests were recorded: the signature decides, as it used to."""
    token = get_token(http, worker)
    jti = claims_of(token)["jti"]
    with services.store.write() as tx:
        node = tx.get_node(jti)
        assert node is not None
        meta = {k: v for k, v in node.meta.items() if k != "token_sha256"}
        tx.conn.execute(t.nodes.update().where(t.nodes.c.id == jti).values(meta=meta))
    assert introspect(http, gateway, token)["active"] is True
    h, p, _ = token.split(".")
    stranger = jwt.encode(
        json.loads(base64.urlsafe_b64decode(h + "==")), claims_of(token), ec_key("x")
    )
    assert introspect(http, gateway, f"{h}.{p}.{stranger.split('.')[2]}") == INACTIVE
    services.admin.revoke(jti, reason="test", actor="test")
    assert introspect(http, gateway, token) == INACTIVE
