"""DPoP at the token endpoint — RFC 9449 §4-§8, with proofs made by joserfc."""

from __future__ import annotations

from typing import Any

import pytest
from joserfc import jws
from starlette.testclient import TestClient

from tests.conftest import ISSUER, Factory
from tests.dpop_proofs import hmac_proof, new_key, none_proof, proof, thumbprint
from tokentrail.clock import FrozenClock
from tokentrail.model import AuthMethod, ClientKind
from tokentrail.services import Services

TOKEN_URL = f"{ISSUER}/oauth/token"


def _token(http: TestClient, reg: Any, dpop: str | None, **form: str) -> Any:
    headers = {"DPoP": dpop} if dpop is not None else {}
    return http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", **form},
        auth=(reg.client_id, reg.secret),
        headers=headers,
    )


@pytest.fixture
def dpop_client(make: Factory) -> Any:
    return make.client(paths=["workload-dpop"])


class TestBoundIssuance:
    def test_valid_proof_binds_token_to_key(
        self, http: TestClient, dpop_client: Any, clock: FrozenClock
    ) -> None:
        """A valid proof yields token_type DPoP and cnf.jkt = the key's thumbprint."""
        key = new_key()
        r = _token(http, dpop_client, proof(key, "POST", TOKEN_URL, iat=clock.now()))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["token_type"] == "DPoP"
        intro = http.post(
            "/oauth/introspect",
            data={"token": body["access_token"]},
            auth=(dpop_client.client_id, dpop_client.secret),
        ).json()
        assert intro["active"] is True
        assert intro["token_type"] == "DPoP"
        assert intro["cnf"] == {"jkt": thumbprint(key)}

    @pytest.mark.parametrize("kind", ["OKP", "RSA"])
    def test_other_asymmetric_algorithms(
        self, http: TestClient, dpop_client: Any, clock: FrozenClock, kind: str
    ) -> None:
        """EdDSA and RS256 proofs are accepted too."""
        key = new_key(kind)
        r = _token(http, dpop_client, proof(key, "POST", TOKEN_URL, iat=clock.now()))
        assert r.status_code == 200, r.text

    def test_path_requiring_dpop_refuses_bearer_request(
        self, http: TestClient, dpop_client: Any
    ) -> None:
        """Without a proof, a DPoP-only client gets invalid_dpop_proof naming the path."""
        r = _token(http, dpop_client, None)
        assert r.status_code == 400
        assert r.json()["error"] == "invalid_dpop_proof"
        assert "workload-dpop" in r.json()["error_description"]
        assert r.headers["WWW-Authenticate"].startswith("DPoP ")

    def test_proof_on_bearer_path_still_binds(
        self, http: TestClient, make: Factory, clock: FrozenClock
    ) -> None:
        """A client on a bearer path may still ask for a bound token."""
        reg = make.client()
        r = _token(http, reg, proof(new_key(), "POST", TOKEN_URL, iat=clock.now()))
        assert r.json()["token_type"] == "DPoP"

    def test_client_on_both_paths_uses_dpop_path_with_proof(
        self, http: TestClient, make: Factory, services: Services, clock: FrozenClock
    ) -> None:
        """With a proof, the DPoP path is chosen; without, the bearer path."""
        reg = make.client(paths=["workload-client-credentials", "workload-dpop"])
        bound = _token(http, reg, proof(new_key(), "POST", TOKEN_URL, iat=clock.now())).json()
        bearer = _token(http, reg, None).json()
        claims_b = services.authority.tokens.verify(bound["access_token"])
        claims_p = services.authority.tokens.verify(bearer["access_token"])
        assert claims_b["tt_path"] == "workload-dpop"
        assert claims_p["tt_path"] == "workload-client-credentials"


class TestBadProofs:
    def _assert_bad(self, r: Any) -> None:
        assert r.status_code == 400, r.text
        assert r.json()["error"] == "invalid_dpop_proof"

    def test_none_algorithm(self, http: TestClient, dpop_client: Any) -> None:
        """An unsigned proof is refused."""
        self._assert_bad(_token(http, dpop_client, none_proof("POST", TOKEN_URL, new_key())))

    def test_hmac_algorithm(self, http: TestClient, dpop_client: Any) -> None:
        """A MACed proof is refused."""
        self._assert_bad(_token(http, dpop_client, hmac_proof("POST", TOKEN_URL)))

    def test_private_key_in_jwk(
        self, http: TestClient, dpop_client: Any, clock: FrozenClock
    ) -> None:
        """A proof whose jwk carries the private key is refused."""
        key = new_key()
        p = proof(key, "POST", TOKEN_URL, iat=clock.now(), jwk=key.as_dict(private=True))
        self._assert_bad(_token(http, dpop_client, p))

    def test_wrong_typ(self, http: TestClient, dpop_client: Any, clock: FrozenClock) -> None:
        """typ must be dpop+jwt."""
        p = proof(new_key(), "POST", TOKEN_URL, iat=clock.now(), typ="JWT")
        self._assert_bad(_token(http, dpop_client, p))

    def test_htm_mismatch(self, http: TestClient, dpop_client: Any, clock: FrozenClock) -> None:
        """The proof must name the request's method."""
        self._assert_bad(
            _token(http, dpop_client, proof(new_key(), "GET", TOKEN_URL, iat=clock.now()))
        )

    def test_htu_mismatch(self, http: TestClient, dpop_client: Any, clock: FrozenClock) -> None:
        """The proof must name the token endpoint."""
        p = proof(new_key(), "POST", f"{ISSUER}/oauth/introspect", iat=clock.now())
        self._assert_bad(_token(http, dpop_client, p))

    def test_htu_normalised(self, http: TestClient, dpop_client: Any, clock: FrozenClock) -> None:
        """Case of scheme and host, a default port and a query do not matter."""
        p = proof(new_key(), "POST", "HTTP://TestServer:80/oauth/token?x=1", iat=clock.now())
        assert _token(http, dpop_client, p).status_code == 200

    @pytest.mark.parametrize("offset", [-3600, 3600])
    def test_iat_outside_window(
        self, http: TestClient, dpop_client: Any, clock: FrozenClock, offset: int
    ) -> None:
        """A proof from far in the past or future is refused."""
        p = proof(new_key(), "POST", TOKEN_URL, iat=clock.now() + offset)
        self._assert_bad(_token(http, dpop_client, p))

    def test_replayed_jti(self, http: TestClient, dpop_client: Any, clock: FrozenClock) -> None:
        """The same proof twice: the second is a replay."""
        p = proof(new_key(), "POST", TOKEN_URL, iat=clock.now())
        assert _token(http, dpop_client, p).status_code == 200
        r = _token(http, dpop_client, p)
        self._assert_bad(r)
        assert "replay" in r.json()["error_description"]

    def test_bad_signature(self, http: TestClient, dpop_client: Any, clock: FrozenClock) -> None:
        """A proof signed by another key than its jwk is refused."""
        p = proof(
            new_key(), "POST", TOKEN_URL, iat=clock.now(), jwk=new_key().as_dict(private=False)
        )
        self._assert_bad(_token(http, dpop_client, p))

    def test_garbage(self, http: TestClient, dpop_client: Any) -> None:
        """A header that is not a JWT is refused cleanly."""
        self._assert_bad(_token(http, dpop_client, "not.a.jwt"))
        self._assert_bad(_token(http, dpop_client, "x"))

    def test_nested_signed_payload(self, http: TestClient, dpop_client: Any) -> None:
        """A correctly signed proof whose payload is JSON nested too deep is a 400, not a 500."""
        key = new_key()
        header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": key.as_dict(private=False)}
        p = jws.serialize_compact(header, b"[" * 2000 + b"]" * 2000, key, algorithms=["ES256"])
        r = _token(http, dpop_client, p)
        self._assert_bad(r)
        assert "nested" in r.json()["error_description"]

    def test_two_dpop_headers(self, http: TestClient, dpop_client: Any, clock: FrozenClock) -> None:
        """RFC 9449 §4.3: exactly one DPoP header."""
        p = proof(new_key(), "POST", TOKEN_URL, iat=clock.now())
        r = http.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(dpop_client.client_id, dpop_client.secret),
            headers=[("DPoP", p), ("DPoP", p)],
        )
        assert r.status_code == 400
        assert r.json()["error"] == "invalid_request"


class TestNonces:
    @pytest.fixture
    def settings(self, tmp_path: Any, db_url: str | None) -> Any:
        from tokentrail.config import Settings

        return Settings(
            data_dir=tmp_path / "data", db_url=db_url, issuer=ISSUER, dpop_require_nonce=True
        )

    def test_use_dpop_nonce_then_success(
        self, http: TestClient, dpop_client: Any, clock: FrozenClock
    ) -> None:
        """Without a nonce the server answers use_dpop_nonce with DPoP-Nonce; with it, 200."""
        key = new_key()
        r = _token(http, dpop_client, proof(key, "POST", TOKEN_URL, iat=clock.now()))
        assert r.status_code == 400
        assert r.json()["error"] == "use_dpop_nonce"
        nonce = r.headers["DPoP-Nonce"]
        r = _token(http, dpop_client, proof(key, "POST", TOKEN_URL, iat=clock.now(), nonce=nonce))
        assert r.status_code == 200, r.text

    def test_stale_nonce_refused(
        self, http: TestClient, dpop_client: Any, clock: FrozenClock
    ) -> None:
        """A nonce from two epochs ago no longer works."""
        key = new_key()
        nonce = _token(http, dpop_client, proof(key, "POST", TOKEN_URL, iat=clock.now())).headers[
            "DPoP-Nonce"
        ]
        clock.advance(2 * 300 + 1)
        r = _token(http, dpop_client, proof(key, "POST", TOKEN_URL, iat=clock.now(), nonce=nonce))
        assert r.json()["error"] == "use_dpop_nonce"


class TestBoundRefresh:
    """Sessions through the JWT bearer grant, bound to a DPoP key."""

    @pytest.fixture
    def login(self, services: Services, make: Factory, clock: FrozenClock) -> Any:
        from tests.oauth.upstream import Upstream

        return Upstream(services, clock)

    def test_public_client_refresh_needs_same_key(
        self, http: TestClient, make: Factory, login: Any, clock: FrozenClock
    ) -> None:
        """A public client's refresh token works only with the key it was bound to."""
        make.team()
        app = make.client(
            paths=["federated-login"], auth=AuthMethod.NONE, kind=ClientKind.APPLICATION
        )
        key = new_key()
        r = http.post(
            "/oauth/token",
            data={
                "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                "assertion": login.assertion("alice"),
                "client_id": app.client_id,
            },
            headers={"DPoP": proof(key, "POST", TOKEN_URL, iat=clock.now())},
        )
        assert r.status_code == 200, r.text
        assert r.json()["token_type"] == "DPoP"
        refresh = r.json()["refresh_token"]
        same = http.post(
            "/oauth/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": refresh,
                "client_id": app.client_id,
            },
            headers={"DPoP": proof(key, "POST", TOKEN_URL, iat=clock.now())},
        )
        assert same.status_code == 200, same.text
        newest = same.json()["refresh_token"]
        other = http.post(
            "/oauth/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": newest,
                "client_id": app.client_id,
            },
            headers={"DPoP": proof(new_key(), "POST", TOKEN_URL, iat=clock.now())},
        )
        assert other.status_code == 400
        assert other.json()["error"] == "invalid_grant"
        # A bound refresh token shown with another key is in a thief's hands: the
        # binding_mismatch detection revokes the session, so even the right key fails now.
        again = http.post(
            "/oauth/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": newest,
                "client_id": app.client_id,
            },
            headers={"DPoP": proof(key, "POST", TOKEN_URL, iat=clock.now())},
        )
        assert again.json()["error_description"] == "refresh token is revoked"

    def test_public_client_cannot_introspect(self, http: TestClient, make: Factory) -> None:
        """Introspection needs a confidential client."""
        app = make.client(paths=[], auth=AuthMethod.NONE, kind=ClientKind.APPLICATION)
        r = http.post("/oauth/introspect", data={"token": "x", "client_id": app.client_id})
        assert r.status_code == 401

    def test_public_client_cannot_use_client_credentials(
        self, http: TestClient, make: Factory
    ) -> None:
        """client_credentials is for confidential clients only."""
        app = make.client(auth=AuthMethod.NONE, kind=ClientKind.APPLICATION)
        r = http.post(
            "/oauth/token", data={"grant_type": "client_credentials", "client_id": app.client_id}
        )
        assert r.json()["error"] == "unauthorized_client"
