"""Server metadata (RFC 8414), the JWKS, and signing-key rotation."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from starlette.testclient import TestClient

from tests.conftest import ISSUER, Factory
from tests.oauth.helpers import claims_of, ec_key, get_token, introspect
from tokentrail.clock import FrozenClock
from tokentrail.config import Settings
from tokentrail.oauth.metadata import WELL_KNOWN, metadata_path, server_metadata
from tokentrail.services import Services, build_services
from tokentrail.web.app import create_app

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "k", "oth"}


@pytest.fixture
def meta(http: TestClient) -> dict[str, Any]:
    r = http.get(WELL_KNOWN)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _kid(token: str) -> str:
    header = token.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"])


def _jwks(http: TestClient) -> dict[str, Any]:
    r = http.get("/jwks.json")
    assert r.status_code == 200
    body: dict[str, Any] = r.json()
    return body


# --- RFC 8414 metadata -------------------------------------------------------------------


def test_metadata_issuer_is_the_configured_issuer(meta: dict[str, Any], services: Services) -> None:
    """RFC 8414 §3.3: the issuer member is identical to the configured issuer."""
    assert meta["issuer"] == services.settings.issuer == ISSUER


def test_metadata_is_json(http: TestClient) -> None:
    """The metadata document is served as application/json."""
    assert http.get(WELL_KNOWN).headers["content-type"].startswith("application/json")


def test_metadata_names_every_endpoint_under_the_issuer(meta: dict[str, Any]) -> None:
    """The token, introspection, revocation and JWKS URLs are the issuer plus their paths."""
    assert meta["token_endpoint"] == f"{ISSUER}/oauth/token"
    assert meta["introspection_endpoint"] == f"{ISSUER}/oauth/introspect"
    assert meta["revocation_endpoint"] == f"{ISSUER}/oauth/revoke"
    assert meta["jwks_uri"] == f"{ISSUER}/jwks.json"


@pytest.mark.parametrize(
    "member", ["token_endpoint", "introspection_endpoint", "revocation_endpoint"]
)
def test_advertised_endpoints_answer_oauth(
    http: TestClient, meta: dict[str, Any], member: str
) -> None:
    """Each advertised endpoint is served: an unauthenticated POST gets an OAuth error, not 404."""
    r = http.post(meta[member], data={"grant_type": "client_credentials", "token": "x"})
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"


def test_jwks_uri_serves_the_jwks(http: TestClient, meta: dict[str, Any]) -> None:
    """The jwks_uri answers the key set."""
    assert http.get(meta["jwks_uri"]).json() == _jwks(http)


def test_no_member_is_an_empty_array(meta: dict[str, Any]) -> None:
    """RFC 8414 §2: members with zero elements are omitted."""
    assert all(v != [] for v in meta.values())
    assert all(v is not None for v in meta.values())
    # No authorization endpoint, so no response types: the member is absent, not [].
    assert "response_types_supported" not in meta
    assert "authorization_endpoint" not in meta


def test_server_metadata_drops_empty_arrays() -> None:
    """Building metadata with no grant types omits grant_types_supported instead of []."""
    built = server_metadata(ISSUER, [], "ES256")
    assert "grant_types_supported" not in built
    assert all(v != [] for v in built.values())


def test_every_advertised_grant_type_is_supported(
    http: TestClient, meta: dict[str, Any], make: Factory
) -> None:
    """No grant type the metadata advertises answers unsupported_grant_type."""
    c = make.client()
    assert c.secret
    assert "client_credentials" in meta["grant_types_supported"]
    for grant_type in meta["grant_types_supported"]:
        r = http.post("/oauth/token", data={"grant_type": grant_type}, auth=(c.client_id, c.secret))
        assert r.json().get("error") != "unsupported_grant_type", grant_type


def test_auth_methods_and_algorithms(meta: dict[str, Any]) -> None:
    """The three client-authentication methods are advertised; no symmetric or none algs."""
    methods = set(meta["token_endpoint_auth_methods_supported"])
    assert {"client_secret_basic", "client_secret_post", "private_key_jwt"} <= methods
    for member in (
        "token_endpoint_auth_signing_alg_values_supported",
        "introspection_endpoint_auth_signing_alg_values_supported",
        "revocation_endpoint_auth_signing_alg_values_supported",
    ):
        algs = meta[member]
        assert "none" not in algs
        assert not any(a.startswith("HS") for a in algs)


def test_dpop_algorithms_are_the_accepted_ones(meta: dict[str, Any]) -> None:
    """RFC 9449 §5.1: the metadata lists exactly the asymmetric algorithms DPoP proofs may use."""
    from tokentrail.crypto import DPOP_ALGORITHMS

    algs = meta["dpop_signing_alg_values_supported"]
    assert algs == list(DPOP_ALGORITHMS)
    assert not any(a == "none" or a.startswith("HS") for a in algs)


def test_access_token_alg_matches_the_published_keys(
    http: TestClient, meta: dict[str, Any]
) -> None:
    """The advertised access-token algorithm is the one the published key uses."""
    assert meta["access_token_signing_alg_values_supported"] == ["ES256"]
    assert {k["alg"] for k in _jwks(http)["keys"]} == {"ES256"}


def test_metadata_path_inserts_the_issuer_path() -> None:
    """RFC 8414 §3.1: an issuer with a path has the well-known segment before it."""
    assert metadata_path("https://as.example") == WELL_KNOWN
    assert metadata_path("https://as.example/tenant/one") == f"{WELL_KNOWN}/tenant/one"


def test_issuer_with_a_path_serves_its_metadata_there(
    settings: Settings, clock: FrozenClock
) -> None:
    """With issuer http://testserver/tenant the metadata is at the inserted path and names it."""
    tenant = settings.model_copy(update={"issuer": f"{ISSUER}/tenant"})
    services = build_services(tenant, clock=clock)
    try:
        with TestClient(create_app(services), base_url=ISSUER) as client:
            r = client.get(f"{WELL_KNOWN}/tenant")
            assert r.status_code == 200, r.text
            assert r.json()["issuer"] == f"{ISSUER}/tenant"
    finally:
        services.close()


# --- the JWKS ------------------------------------------------------------------------------


def test_jwks_holds_only_public_signing_keys(http: TestClient) -> None:
    """Every published key is public (no private members) and marked for signatures."""
    keys = _jwks(http)["keys"]
    assert keys
    for jwk in keys:
        assert not PRIVATE_MEMBERS & set(jwk)
        assert jwk["use"] == "sig"
        assert jwk["kty"] == "EC"
        assert jwk["crv"] == "P-256"
        assert jwk["kid"]


def test_jwks_imports_into_an_independent_library(http: TestClient) -> None:
    """joserfc imports the JWKS as a key set of public keys."""
    keyset = KeySet.import_key_set(_jwks(http))
    assert all(not k.is_private for k in keyset.keys)


# --- signing-key rotation ------------------------------------------------------------------


def test_rotation_keeps_the_old_key_published(
    http: TestClient, services: Services, make: Factory
) -> None:
    """After KeyRing.rotate the JWKS holds the new and the retired key."""
    c = make.client()
    old_kid = _kid(get_token(http, c))
    new_kid = services.keys.rotate(publish_for=3600)
    kids = {k["kid"] for k in _jwks(http)["keys"]}
    assert kids == {old_kid, new_kid}
    assert new_kid != old_kid


def test_tokens_signed_before_rotation_stay_active(
    http: TestClient, services: Services, make: Factory
) -> None:
    """A token signed with the retired key still introspects active."""
    c, rs = make.client(), make.client(paths=[])
    token = get_token(http, c)
    services.keys.rotate(publish_for=3600)
    assert introspect(http, rs, token)["active"] is True


def test_tokens_after_rotation_use_the_new_key(
    http: TestClient, services: Services, make: Factory
) -> None:
    """After rotation new tokens carry the new kid and both generations verify with joserfc."""
    c = make.client()
    before = get_token(http, c)
    new_kid = services.keys.rotate(publish_for=3600)
    after = get_token(http, c)
    assert _kid(after) == new_kid
    keys = KeySet.import_key_set(_jwks(http))
    for token in (before, after):
        assert jwt.decode(token, keys).header["typ"] == "at+jwt"


def test_retired_key_leaves_the_jwks_after_its_window(
    http: TestClient, services: Services, make: Factory, clock: FrozenClock
) -> None:
    """Once its publication window ends the retired key is no longer published."""
    old_kid = _kid(get_token(http, make.client()))
    new_kid = services.keys.rotate(publish_for=600)
    clock.advance(600 + services.settings.key_cache_seconds + 1)
    assert {k["kid"] for k in _jwks(http)["keys"]} == {new_kid}
    assert old_kid != new_kid


def test_revoking_an_old_key_token_after_rotation_works(
    http: TestClient, services: Services, make: Factory
) -> None:
    """A token signed before rotation can still be revoked by its client."""
    c, rs = make.client(), make.client(paths=[])
    assert c.secret
    token = get_token(http, c)
    services.keys.rotate(publish_for=3600)
    r = http.post("/oauth/revoke", data={"token": token}, auth=(c.client_id, c.secret))
    assert r.status_code == 200
    assert introspect(http, rs, token) == {"active": False}


@pytest.fixture
def second_node(settings: Settings, clock: FrozenClock, services: Services) -> Iterator[TestClient]:
    """Another server on the same database and key-encryption key."""
    other = build_services(settings, clock=clock)
    other.keys.jwks()  # loads and caches the keys as a running node would have
    with TestClient(create_app(other), base_url=ISSUER) as client:
        yield client
    other.close()


def test_other_node_accepts_tokens_signed_after_a_rotation(
    http: TestClient, services: Services, make: Factory, second_node: TestClient
) -> None:
    """A node whose key cache predates a rotation elsewhere still accepts the new key's tokens."""
    c, rs = make.client(), make.client(paths=[])
    services.keys.rotate(publish_for=3600)
    token = get_token(http, c)
    assert introspect(second_node, rs, token)["active"] is True


def test_forged_token_with_unknown_kid_is_inactive_on_every_node(
    http: TestClient, make: Factory, second_node: TestClient
) -> None:
    """An unknown kid that no node has published stays inactive after the refresh it causes."""
    c, rs = make.client(), make.client(paths=[])
    stranger = ec_key("no-such-kid")
    forged = jwt.encode(
        {"alg": "ES256", "kid": "no-such-kid", "typ": "at+jwt"},
        claims_of(get_token(http, c)),
        stranger,
    )
    assert introspect(second_node, rs, forged) == {"active": False}
