"""Trusted upstream providers: keys from a JWKS URL, rotation, and claimed assurance."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey
from starlette.testclient import TestClient

from tests.conftest import ISSUER, Factory
from tokentrail.clock import FrozenClock
from tokentrail.services import Services
from tokentrail.upstream import claimed_aal, fetch_jwks

IDP = "https://idp.url.example"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


class JwksServer:
    """A real HTTP server on loopback publishing a JWKS that tests can change."""

    def __init__(self) -> None:
        self.document: Any = {"keys": []}
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits += 1
                body = json.dumps(outer.document).encode()
                self.send_response(200 if self.path == "/jwks" else 404)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/jwks"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    server = JwksServer()
    yield server
    server.close()


def _key(kid: str) -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": kid})


def _assertion(key: ECKey, clock: FrozenClock, sub: str = "alice", **extra: Any) -> str:
    now = int(clock.now())
    claims = {
        "iss": IDP,
        "sub": sub,
        "aud": ISSUER,
        "iat": now,
        "exp": now + 120,
        "jti": secrets.token_urlsafe(8),
        **extra,
    }
    return jwt.encode({"alg": "ES256", "kid": key.kid}, claims, key)


def _login(http: TestClient, client: Any, assertion: str) -> Any:
    return http.post(
        "/oauth/token",
        data={"grant_type": JWT_BEARER, "assertion": assertion},
        auth=(client.client_id, client.secret),
    )


class TestJwksUrl:
    def test_trust_by_url_and_login(
        self,
        services: Services,
        make: Factory,
        http: TestClient,
        jwks_server: JwksServer,
        clock: FrozenClock,
    ) -> None:
        """Keys fetched from the provider's URL verify its assertions."""
        key = _key("k1")
        jwks_server.document = {"keys": [key.as_dict(private=False)]}
        services.admin.trust_issuer(IDP, jwks_url=jwks_server.url, audience=ISSUER, actor="t")
        portal = make.client(paths=["federated-login"])
        assert _login(http, portal, _assertion(key, clock)).status_code == 200

    def test_rotation_refetches_once_a_minute(
        self,
        services: Services,
        make: Factory,
        http: TestClient,
        jwks_server: JwksServer,
        clock: FrozenClock,
    ) -> None:
        """An unknown kid triggers a refetch, at most once per interval."""
        old, new = _key("k1"), _key("k2")
        jwks_server.document = {"keys": [old.as_dict(private=False)]}
        services.admin.trust_issuer(IDP, jwks_url=jwks_server.url, audience=ISSUER, actor="t")
        portal = make.client(paths=["federated-login"])
        jwks_server.document = {"keys": [new.as_dict(private=False)]}
        hits = jwks_server.hits
        r = _login(http, portal, _assertion(new, clock))
        assert r.json()["error"] == "invalid_grant"  # fetched too recently to refetch
        assert jwks_server.hits == hits
        clock.advance(61)
        assert _login(http, portal, _assertion(new, clock)).status_code == 200
        assert jwks_server.hits == hits + 1

    def test_bad_urls(self, services: Services, jwks_server: JwksServer) -> None:
        """Unreachable, non-JSON, non-http and private-key documents are refused clearly."""
        with pytest.raises(ValueError, match="http"):
            fetch_jwks("file:///etc/passwd")
        with pytest.raises(ValueError, match="cannot fetch"):
            fetch_jwks(jwks_server.url.replace("/jwks", "/missing"))
        jwks_server.document = {"keys": [_key("x").as_dict(private=True)]}
        with pytest.raises(ValueError, match="private"):
            fetch_jwks(jwks_server.url)
        with pytest.raises(ValueError, match="document or a JWKS URL"):
            services.admin.trust_issuer(IDP, audience=ISSUER, actor="t")
        with pytest.raises(ValueError, match="max_aal"):
            services.admin.trust_issuer(
                IDP,
                jwks={"keys": [_key("y").as_dict(private=False)]},
                audience=ISSUER,
                max_aal=4,
                actor="t",
            )


class TestAssurance:
    @pytest.mark.parametrize(
        ("acr", "aal"),
        [
            ("aal2", 2),
            ("urn:example:AAL3", 3),
            ("http://idmanagement.gov/ns/assurance/aal/2", 2),
            ("phr", 1),
            (None, 1),
        ],
    )
    def test_claimed_aal(self, acr: str | None, aal: int) -> None:
        """acr values naming an AAL are understood; anything else is AAL1."""
        assert claimed_aal({"acr": acr} if acr else {}) == aal

    def test_session_aal_capped_by_provider(
        self, services: Services, make: Factory, http: TestClient, clock: FrozenClock
    ) -> None:
        """A provider trusted up to AAL1 cannot create AAL3 sessions by claiming it."""
        key = _key("k1")
        services.admin.trust_issuer(
            IDP,
            jwks={"keys": [key.as_dict(private=False)]},
            audience=ISSUER,
            max_aal=1,
            actor="t",
        )
        portal = make.client(paths=["federated-login"])
        r = _login(http, portal, _assertion(key, clock, acr="aal3"))
        claims = services.authority.tokens.verify(r.json()["access_token"])
        with services.store.read() as tx:
            session = next(tx.get_node(i) for i in claims["tt_anc"] if i.startswith("ses_"))
        assert session is not None
        assert session.meta["aal"] == 1
