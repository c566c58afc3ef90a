"""Mutual-TLS client authentication and certificate-bound tokens — RFC 8705.

The certificates are made here with ``cryptography`` (tests/oauth/certs.py). In
process they reach the server the two ways a deployment delivers them: in the
ASGI TLS extension (what ``tokentrail serve --tls-cert`` puts in the scope) and
in a trusted proxy's header. tests/oauth/test_mtls_serve.py runs a real
``tokentrail serve`` with TLS and client certificates.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send
from typer.testing import CliRunner

from tests.conftest import ISSUER, Factory, Registered
from tests.oauth.certs import Cert, issue, make_ca, self_signed
from tests.oauth.helpers import audit, claims_of
from tokentrail import crypto
from tokentrail.audit import Event
from tokentrail.cli import app as cli_app
from tokentrail.clock import FrozenClock
from tokentrail.config import Settings
from tokentrail.errors import InvalidClient
from tokentrail.model import AuthMethod, Client, ClientKind, Credential, CredentialKind
from tokentrail.oauth.mtls import CertificateAuthority
from tokentrail.services import Services, build_services
from tokentrail.web import tls
from tokentrail.web.app import create_app

HEADER = "x-client-cert"
PROXY = ("10.0.0.5", 1234)
MTLS_PATH = "workload-mtls"
DN = "CN=svc-a,O=Acme"
DAY = 86_400


# --- fixtures and helpers ---------------------------------------------------------------


@pytest.fixture
def ca(clock: FrozenClock) -> Cert:
    return make_ca(clock.now())


@pytest.fixture
def settings(tmp_path: Path, db_url: str | None, ca: Cert) -> Settings:
    """Trust ``ca`` for tls_client_auth; believe ``x-client-cert`` from 10.0.0.0/24 only."""
    ca_file = tmp_path / "client-ca.pem"
    ca_file.write_text(ca.pem, encoding="ascii")
    return Settings(
        data_dir=tmp_path / "data",
        db_url=db_url,
        issuer=ISSUER,
        mtls_ca_file=ca_file,
        mtls_proxy_header=HEADER,
        mtls_trusted_proxies=("10.0.0.0/24",),
    )


@pytest.fixture
def proxied(services: Services) -> Iterator[TestClient]:
    """A client whose requests come from the trusted proxy 10.0.0.5."""
    app = create_app(services)
    with TestClient(app, base_url=ISSUER, raise_server_exceptions=False, client=PROXY) as c:
        yield c


class WithTLS:
    """Adds the ASGI TLS extension to each request, as tokentrail's uvicorn protocol does."""

    def __init__(self, app: ASGIApp, cert: Cert | None) -> None:
        self.app = app
        self.cert = cert

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        chain = [self.cert.pem] if self.cert else []
        scope["extensions"] = {**scope.get("extensions", {}), "tls": {"client_cert_chain": chain}}
        await self.app(scope, receive, send)


def tls_client(services: Services, cert: Cert | None, *, peer: str = "192.0.2.9") -> TestClient:
    """A client connected directly over TLS (with ``cert``) from ``peer``."""
    return TestClient(
        WithTLS(create_app(services), cert),
        base_url=ISSUER,
        raise_server_exceptions=False,
        client=(peer, 4433),
    )


def pki_client(services: Services, make: Factory, dn: str = DN) -> Registered:
    make.team()
    issued = services.admin.create_client(
        team="platform-iam",
        name="svc",
        kind=ClientKind.WORKLOAD,
        auth_method=AuthMethod.TLS_CLIENT_AUTH,
        jwks=None,
        paths=[MTLS_PATH],
        scopes=["read"],
        audiences=["https://api.example"],
        actor="test",
        tls_subject_dn=dn,
    )
    assert issued.credential_id is not None
    return Registered(issued.client_id, None, issued.credential_id)


def self_signed_client(services: Services, make: Factory, cert: Cert) -> Registered:
    make.team()
    issued = services.admin.create_client(
        team="platform-iam",
        name="svc",
        kind=ClientKind.WORKLOAD,
        auth_method=AuthMethod.SELF_SIGNED_TLS_CLIENT_AUTH,
        jwks=cert.jwks(),
        paths=[MTLS_PATH],
        scopes=["read"],
        audiences=["https://api.example"],
        actor="test",
    )
    assert issued.credential_id is not None
    return Registered(issued.client_id, None, issued.credential_id)


def token(http: TestClient, client_id: str, cert: Cert | str | None = None) -> httpx.Response:
    """client_credentials for an mTLS client; ``cert`` goes in the proxy header."""
    headers = {}
    if cert is not None:
        headers[HEADER] = cert.escaped if isinstance(cert, Cert) else cert
    return http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": client_id},
        headers=headers,
    )


def refused_because(services: Services) -> str:
    """The audited reason of the latest failed client authentication."""
    records = audit(services, Event.CLIENT_AUTH_FAILED)
    assert records, "no client_auth.failed record"
    return str(records[-1].data["reason"])


def assert_invalid_client(r: httpx.Response) -> None:
    assert r.status_code == 401, r.text
    assert r.json()["error"] == "invalid_client"


# --- tls_client_auth (RFC 8705 §2.1) ---------------------------------------------------


class TestTlsClientAuth:
    def test_ca_issued_certificate_gets_bound_token(
        self, proxied: TestClient, services: Services, make: Factory, ca: Cert, clock: FrozenClock
    ) -> None:
        """A certificate from the trusted CA with the registered DN gets a token bound to it."""
        reg = pki_client(services, make)
        cert = issue(ca, "svc-a", clock.now())
        r = token(proxied, reg.client_id, cert)
        assert r.status_code == 200, r.text
        assert r.json()["token_type"] == "Bearer"
        assert claims_of(r.json()["access_token"])["cnf"] == {"x5t#S256": cert.thumbprint}

    def test_introspection_returns_certificate_thumbprint(
        self, proxied: TestClient, services: Services, make: Factory, ca: Cert, clock: FrozenClock
    ) -> None:
        """Introspection of a certificate-bound token returns cnf.x5t#S256 (RFC 8705 §3.2)."""
        reg = pki_client(services, make)
        cert = issue(ca, "svc-a", clock.now())
        access = token(proxied, reg.client_id, cert).json()["access_token"]
        r = proxied.post(
            "/oauth/introspect",
            data={"token": access, "client_id": reg.client_id},
            headers={HEADER: cert.escaped},
        )
        assert r.status_code == 200, r.text
        assert r.json()["active"] is True
        assert r.json()["cnf"] == {"x5t#S256": cert.thumbprint}

    def test_token_records_credential_lineage(
        self, proxied: TestClient, services: Services, make: Factory, ca: Cert, clock: FrozenClock
    ) -> None:
        """The token descends from the tls_client_auth credential: revoking it kills the token."""
        reg = pki_client(services, make)
        cert = issue(ca, "svc-a", clock.now())
        access = token(proxied, reg.client_id, cert).json()["access_token"]
        assert reg.credential_id in claims_of(access)["tt_anc"]

    def test_wrong_subject_dn_is_refused(
        self, proxied: TestClient, services: Services, make: Factory, ca: Cert, clock: FrozenClock
    ) -> None:
        """A trusted certificate whose subject is not the registered DN is invalid_client."""
        reg = pki_client(services, make)
        r = token(proxied, reg.client_id, issue(ca, "svc-b", clock.now()))
        assert_invalid_client(r)
        assert "CN=svc-b,O=Acme" in refused_because(services)

    def test_expired_certificate_is_refused(
        self, proxied: TestClient, services: Services, make: Factory, ca: Cert, clock: FrozenClock
    ) -> None:
        """A certificate past its notAfter is refused even with the right DN."""
        reg = pki_client(services, make)
        cert = issue(ca, "svc-a", clock.now(), start=clock.now() - 40 * DAY, days=30)
        assert_invalid_client(token(proxied, reg.client_id, cert))
        assert "not trusted" in refused_because(services)

    def test_certificate_expiring_later_is_refused_then(
        self, proxied: TestClient, services: Services, make: Factory, ca: Cert, clock: FrozenClock
    ) -> None:
        """Validity is checked at the server's current time, not when the certificate was seen."""
        reg = pki_client(services, make)
        cert = issue(ca, "svc-a", clock.now(), days=3)
        assert token(proxied, reg.client_id, cert).status_code == 200
        clock.advance(3 * DAY)
        assert_invalid_client(token(proxied, reg.client_id, cert))

    def test_untrusted_ca_is_refused(
        self, proxied: TestClient, services: Services, make: Factory, clock: FrozenClock
    ) -> None:
        """A certificate with the registered DN from another CA is refused."""
        reg = pki_client(services, make)
        rogue = make_ca(clock.now(), cn="Rogue CA")
        assert_invalid_client(token(proxied, reg.client_id, issue(rogue, "svc-a", clock.now())))
        assert "not trusted" in refused_because(services)

    def test_self_signed_certificate_is_not_pki(
        self, proxied: TestClient, services: Services, make: Factory, clock: FrozenClock
    ) -> None:
        """A self-signed certificate carrying the registered DN does not pass tls_client_auth."""
        reg = pki_client(services, make)
        assert_invalid_client(token(proxied, reg.client_id, self_signed("svc-a", clock.now())))

    def test_no_certificate_is_refused(
        self, proxied: TestClient, services: Services, make: Factory
    ) -> None:
        """An mTLS client naming only its client_id without a certificate is invalid_client."""
        reg = pki_client(services, make)
        assert_invalid_client(token(proxied, reg.client_id))
        assert refused_because(services) == "no client certificate"

    def test_dn_registered_in_another_spelling_matches(
        self, proxied: TestClient, services: Services, make: Factory, ca: Cert, clock: FrozenClock
    ) -> None:
        """The registered DN is compared in canonical RFC 4514 form (case of types, spaces)."""
        reg = pki_client(services, make, dn="cn=svc-a, o=Acme")
        assert token(proxied, reg.client_id, issue(ca, "svc-a", clock.now())).status_code == 200

    def test_revoked_credential_is_refused(
        self, proxied: TestClient, services: Services, make: Factory, ca: Cert, clock: FrozenClock
    ) -> None:
        """Revoking the credential stops its certificate authenticating."""
        reg = pki_client(services, make)
        services.admin.revoke(reg.credential_id, reason="key leaked", actor="test")
        assert_invalid_client(token(proxied, reg.client_id, issue(ca, "svc-a", clock.now())))

    def test_rotation_to_new_dn_keeps_old_during_grace(
        self, proxied: TestClient, services: Services, make: Factory, ca: Cert, clock: FrozenClock
    ) -> None:
        """After rotation to a new DN both certificates work until the grace period ends."""
        reg = pki_client(services, make)
        services.admin.rotate_credential(
            reg.client_id, grace=60, actor="test", tls_subject_dn="CN=svc-a2,O=Acme"
        )
        old, new = issue(ca, "svc-a", clock.now()), issue(ca, "svc-a2", clock.now())
        assert token(proxied, reg.client_id, old).status_code == 200
        assert token(proxied, reg.client_id, new).status_code == 200
        clock.advance(61)
        assert_invalid_client(token(proxied, reg.client_id, old))

    def test_header_that_is_no_certificate_is_refused(
        self, proxied: TestClient, services: Services, make: Factory
    ) -> None:
        """A forwarded value that is not a certificate is invalid_client, never a 500."""
        reg = pki_client(services, make)
        assert_invalid_client(token(proxied, reg.client_id, "not%20a%20certificate"))
        assert "not a PEM certificate" in refused_because(services)


# --- self_signed_tls_client_auth (RFC 8705 §2.2) ----------------------------------------


class TestSelfSigned:
    def test_registered_certificate_gets_bound_token(
        self, proxied: TestClient, services: Services, make: Factory, clock: FrozenClock
    ) -> None:
        """The registered self-signed certificate authenticates and binds the token."""
        cert = self_signed("device-1", clock.now())
        reg = self_signed_client(services, make, cert)
        r = token(proxied, reg.client_id, cert)
        assert r.status_code == 200, r.text
        assert claims_of(r.json()["access_token"])["cnf"] == {"x5t#S256": cert.thumbprint}

    def test_other_certificate_with_same_subject_is_refused(
        self, proxied: TestClient, services: Services, make: Factory, clock: FrozenClock
    ) -> None:
        """Only the registered certificate itself counts, not its subject."""
        reg = self_signed_client(services, make, self_signed("device-1", clock.now()))
        other = self_signed("device-1", clock.now())
        assert_invalid_client(token(proxied, reg.client_id, other))
        assert refused_because(services) == "the certificate is not one the client registered"

    def test_ca_issued_certificate_is_refused(
        self, proxied: TestClient, services: Services, make: Factory, ca: Cert, clock: FrozenClock
    ) -> None:
        """A CA-issued certificate does not authenticate a self-signed client."""
        reg = self_signed_client(services, make, self_signed("device-1", clock.now()))
        assert_invalid_client(token(proxied, reg.client_id, issue(ca, "device-1", clock.now())))

    def test_expired_certificate_is_refused(
        self, proxied: TestClient, services: Services, make: Factory, clock: FrozenClock
    ) -> None:
        """The registered certificate stops working after its notAfter."""
        cert = self_signed("device-1", clock.now(), days=2)
        reg = self_signed_client(services, make, cert)
        clock.advance(2 * DAY)
        assert_invalid_client(token(proxied, reg.client_id, cert))
        assert refused_because(services) == "the registered certificate has expired"

    def test_not_yet_valid_certificate_is_refused(
        self, proxied: TestClient, services: Services, make: Factory, clock: FrozenClock
    ) -> None:
        """A registered certificate whose notBefore is ahead is refused until then."""
        cert = self_signed("device-1", clock.now(), start=clock.now() + 3 * DAY)
        reg = self_signed_client(services, make, cert)
        assert_invalid_client(token(proxied, reg.client_id, cert))
        assert refused_because(services) == "the registered certificate is not yet valid"

    def test_rotation_registers_new_certificate(
        self, proxied: TestClient, services: Services, make: Factory, clock: FrozenClock
    ) -> None:
        """Rotating with a new JWKS lets the new certificate in."""
        reg = self_signed_client(services, make, self_signed("device-1", clock.now()))
        new = self_signed("device-1", clock.now())
        services.admin.rotate_credential(reg.client_id, jwks=new.jwks(), grace=0, actor="test")
        assert token(proxied, reg.client_id, new).status_code == 200


# --- where the certificate comes from ---------------------------------------------------


class TestCertificateSource:
    def test_tls_connection_certificate_is_used(
        self, services: Services, make: Factory, ca: Cert, clock: FrozenClock
    ) -> None:
        """The certificate in the ASGI TLS extension authenticates a direct connection."""
        reg = pki_client(services, make)
        cert = issue(ca, "svc-a", clock.now())
        with tls_client(services, cert) as client:
            r = token(client, reg.client_id)
        assert r.status_code == 200, r.text
        assert claims_of(r.json()["access_token"])["cnf"] == {"x5t#S256": cert.thumbprint}

    def test_header_from_untrusted_address_is_ignored(
        self, services: Services, make: Factory, ca: Cert, clock: FrozenClock
    ) -> None:
        """A certificate header from an address outside mtls_trusted_proxies does not count."""
        reg = pki_client(services, make)
        with tls_client(services, None, peer="203.0.113.7") as client:
            r = token(client, reg.client_id, issue(ca, "svc-a", clock.now()))
        assert_invalid_client(r)
        assert refused_because(services) == "no client certificate"

    def test_ignored_header_is_audited(
        self, services: Services, make: Factory, ca: Cert, clock: FrozenClock
    ) -> None:
        """The ledger records the untrusted address that sent a certificate header."""
        reg = pki_client(services, make)
        with tls_client(services, None, peer="203.0.113.7") as client:
            token(client, reg.client_id, issue(ca, "svc-a", clock.now()))
        [record] = audit(services, Event.MTLS_HEADER_IGNORED)
        assert record.data == {"header": HEADER, "peer": "203.0.113.7"}
        assert record.actor == "peer:203.0.113.7"

    def test_ignored_header_audited_once_a_minute_per_address(
        self, services: Services, make: Factory, ca: Cert, clock: FrozenClock
    ) -> None:
        """A flood of forged headers from one address writes one record a minute."""
        reg = pki_client(services, make)
        cert = issue(ca, "svc-a", clock.now())
        with tls_client(services, None, peer="203.0.113.7") as client:
            for _ in range(3):
                token(client, reg.client_id, cert)
            clock.advance(61)
            token(client, reg.client_id, cert)
        assert len(audit(services, Event.MTLS_HEADER_IGNORED)) == 2

    def test_forged_header_does_not_replace_connection_certificate(
        self, services: Services, make: Factory, ca: Cert, clock: FrozenClock
    ) -> None:
        """On a direct TLS connection the connection's certificate wins over a forged header."""
        reg = pki_client(services, make)
        real = issue(ca, "svc-a", clock.now())
        with tls_client(services, real) as client:
            r = token(client, reg.client_id, issue(ca, "svc-a", clock.now()))
        assert claims_of(r.json()["access_token"])["cnf"] == {"x5t#S256": real.thumbprint}

    def test_trusted_proxy_without_header_has_no_certificate(
        self, services: Services, make: Factory, ca: Cert, clock: FrozenClock
    ) -> None:
        """From a trusted proxy only the header counts, never the proxy's own TLS certificate."""
        reg = pki_client(services, make)
        with tls_client(services, issue(ca, "svc-a", clock.now()), peer=PROXY[0]) as client:
            assert_invalid_client(token(client, reg.client_id))

    def test_repeated_header_from_proxy_is_refused(
        self, proxied: TestClient, services: Services, make: Factory, ca: Cert, clock: FrozenClock
    ) -> None:
        """Two certificate headers (a proxy that appends instead of replacing) count as none."""
        reg = pki_client(services, make)
        cert = issue(ca, "svc-a", clock.now())
        r = proxied.post(
            "/oauth/token",
            data={"grant_type": "client_credentials", "client_id": reg.client_id},
            headers=[(HEADER, cert.escaped), (HEADER, cert.escaped)],
        )
        assert_invalid_client(r)

    def test_base64_der_header_is_accepted(
        self, proxied: TestClient, services: Services, make: Factory, ca: Cert, clock: FrozenClock
    ) -> None:
        """A proxy may forward the certificate as base64 DER instead of URL-encoded PEM."""
        reg = pki_client(services, make)
        cert = issue(ca, "svc-a", clock.now())
        r = token(proxied, reg.client_id, base64.b64encode(cert.der).decode("ascii"))
        assert r.status_code == 200, r.text

    def test_ipv4_mapped_proxy_address_is_trusted(
        self, services: Services, make: Factory, ca: Cert, clock: FrozenClock
    ) -> None:
        """A dual-stack listener's ::ffff:10.0.0.5 is the trusted proxy 10.0.0.5."""
        reg = pki_client(services, make)
        app = create_app(services)
        with TestClient(app, base_url=ISSUER, client=("::ffff:10.0.0.5", 1)) as client:
            r = token(client, reg.client_id, issue(ca, "svc-a", clock.now()))
        assert r.status_code == 200, r.text

    def test_transport_peer_wins_over_rewritten_client(self) -> None:
        """The TCP peer recorded by the connection decides trust, not a rewritten scope client."""
        mw = tls.ClientCertificateMiddleware(_noop, header=HEADER, trusted_proxies=["10.0.0.5"])
        scope: dict[str, Any] = {
            "type": "http",
            "client": ("10.0.0.5", 1),  # as X-Forwarded-For rewriting might leave it
            "headers": [(HEADER.encode(), b"x")],
            "extensions": {tls.PEER_EXTENSION: ("198.51.100.1", 1)},
        }
        _run(mw, scope)
        assert scope[tls.SCOPE_KEY] is None

    def test_no_header_configured_uses_connection_only(self) -> None:
        """Without mtls_proxy_header every header is ignored, and nothing is audited."""
        seen: list[str] = []
        mw = tls.ClientCertificateMiddleware(_noop, header=None, on_ignored=seen.append)
        scope: dict[str, Any] = {
            "type": "http",
            "client": PROXY,
            "headers": [(HEADER.encode(), b"x")],
        }
        _run(mw, scope)
        assert scope[tls.SCOPE_KEY] is None
        assert seen == []

    def test_unparsable_peer_is_untrusted(self) -> None:
        """A peer that is not an IP address (a Unix socket) is never a trusted proxy."""
        seen: list[str] = []
        mw = tls.ClientCertificateMiddleware(
            _noop, header=HEADER, trusted_proxies=["0.0.0.0/0"], on_ignored=seen.append
        )
        scope: dict[str, Any] = {
            "type": "http",
            "client": ("unix-socket", 0),
            "headers": [(HEADER.encode(), b"x")],
        }
        _run(mw, scope)
        assert scope[tls.SCOPE_KEY] is None
        assert seen == ["unknown"]

    def test_empty_forwarded_value_is_no_certificate(self) -> None:
        """nginx sends an empty header when the client presented no certificate."""
        assert tls.forwarded_certificate("") is None


async def _noop(scope: Scope, receive: Receive, send: Send) -> None:
    return None


def _run(app: Any, scope: dict[str, Any]) -> None:
    import asyncio

    async def receive() -> Any:
        return {"type": "http.request"}

    async def send(_: Any) -> None:
        return None

    asyncio.run(app(scope, receive, send))


# --- the connection protocol ------------------------------------------------------------


class _FakeSSL:
    def __init__(self, der: bytes | None) -> None:
        self.der = der

    def getpeercert(self, binary_form: bool = False) -> bytes | None:
        assert binary_form
        return self.der

    def version(self) -> str:
        return "TLSv1.3"


class _FakeTransport:
    def __init__(self, ssl_object: _FakeSSL | None) -> None:
        self.info = {"peername": ("192.0.2.1", 5555), "ssl_object": ssl_object}

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.info.get(name, default)


class TestConnectionExtensions:
    def test_tls_connection_exposes_certificate(self, clock: FrozenClock) -> None:
        """A TLS connection's client certificate becomes the ASGI TLS extension."""
        cert = self_signed("device-1", clock.now())
        ext = tls.connection_extensions(_FakeTransport(_FakeSSL(cert.der)))  # type: ignore[arg-type]
        assert ext["tls"]["client_cert_chain"] == [ssl.DER_cert_to_PEM_cert(cert.der)]
        assert ext["tls"]["client_cert_name"] == "CN=device-1,O=Acme"
        assert ext["tls"]["tls_version"] == 0x0304
        assert ext[tls.PEER_EXTENSION] == ("192.0.2.1", 5555)

    def test_tls_connection_without_certificate(self) -> None:
        """A TLS client that presented no certificate has an empty chain."""
        ext = tls.connection_extensions(_FakeTransport(_FakeSSL(None)))  # type: ignore[arg-type]
        assert ext["tls"]["client_cert_chain"] == []

    def test_plain_connection_has_no_tls_extension(self) -> None:
        """Plain HTTP adds only the transport peer."""
        ext = tls.connection_extensions(_FakeTransport(None))  # type: ignore[arg-type]
        assert "tls" not in ext

    def test_protocol_wraps_app_with_connection_extensions(self) -> None:
        """The uvicorn protocol subclass adds the connection's extensions to each scope."""
        import asyncio

        import uvicorn

        config = uvicorn.Config(_noop)
        config.load()
        scope: dict[str, Any] = {"type": "http", "extensions": {"other": {}}}

        async def connect_and_call() -> None:
            proto: Any = tls.protocol_class()(  # type: ignore[call-arg]
                config=config, server_state=_server_state(), app_state={}
            )
            proto.connection_made(_FakeTransport(None))
            await proto.app(scope, None, None)

        asyncio.run(connect_and_call())
        assert scope["extensions"][tls.PEER_EXTENSION] == ("192.0.2.1", 5555)
        assert "other" in scope["extensions"]


def _server_state() -> Any:
    from uvicorn.server import ServerState

    return ServerState()


# --- metadata, registration, configuration ----------------------------------------------


def test_metadata_advertises_certificate_bound_tokens(proxied: TestClient) -> None:
    """RFC 8705 §3.3 metadata and both mTLS methods are advertised."""
    meta = proxied.get("/.well-known/oauth-authorization-server").json()
    assert meta["tls_client_certificate_bound_access_tokens"] is True
    for member in ("token_endpoint", "introspection_endpoint", "revocation_endpoint"):
        methods = meta[f"{member}_auth_methods_supported"]
        assert {"tls_client_auth", "self_signed_tls_client_auth"} <= set(methods)


class TestRegistration:
    def _create(self, services: Services, make: Factory, **kw: Any) -> Any:
        make.team()
        base: dict[str, Any] = {
            "team": "platform-iam",
            "name": "svc",
            "kind": ClientKind.WORKLOAD,
            "jwks": None,
            "paths": [MTLS_PATH],
            "scopes": [],
            "audiences": ["https://api.example"],
            "actor": "test",
        }
        return services.admin.create_client(**{**base, **kw})

    def test_tls_client_auth_needs_subject_dn(self, services: Services, make: Factory) -> None:
        """tls_client_auth without a subject DN is refused."""
        with pytest.raises(ValueError, match="subject DN"):
            self._create(services, make, auth_method=AuthMethod.TLS_CLIENT_AUTH)

    def test_malformed_subject_dn_is_refused(self, services: Services, make: Factory) -> None:
        """A DN that is not RFC 4514 is refused at registration."""
        with pytest.raises(ValueError, match="RFC 4514"):
            self._create(
                services, make, auth_method=AuthMethod.TLS_CLIENT_AUTH, tls_subject_dn="svc-a"
            )

    def test_subject_dn_only_for_tls_client_auth(self, services: Services, make: Factory) -> None:
        """A subject DN on another method is refused rather than silently ignored."""
        with pytest.raises(ValueError, match="only for tls_client_auth"):
            self._create(
                services, make, auth_method=AuthMethod.CLIENT_SECRET_BASIC, tls_subject_dn=DN
            )

    def test_subject_dn_stored_canonical(self, services: Services, make: Factory) -> None:
        """The credential keeps the canonical DN, and the ledger records it."""
        issued = self._create(
            services,
            make,
            auth_method=AuthMethod.TLS_CLIENT_AUTH,
            tls_subject_dn=" cn=svc-a,  o=Acme",
        )
        with services.store.read() as tx:
            cred = tx.get_credential(issued.credential_id)
        assert cred is not None
        assert cred.kind is CredentialKind.TLS_CLIENT_AUTH
        assert cred.tls_subject_dn == DN
        [record] = audit(services, Event.CREDENTIAL_ISSUED)
        assert record.data["tls_subject_dn"] == DN

    def test_self_signed_needs_jwks(self, services: Services, make: Factory) -> None:
        """self_signed_tls_client_auth without a JWKS is refused."""
        with pytest.raises(ValueError, match="x5c"):
            self._create(services, make, auth_method=AuthMethod.SELF_SIGNED_TLS_CLIENT_AUTH)

    def test_self_signed_key_without_x5c_is_refused(
        self, services: Services, make: Factory, clock: FrozenClock
    ) -> None:
        """Every key of a self-signed client's JWKS must carry its certificate."""
        jwks = self_signed("d", clock.now()).jwks()
        del jwks["keys"][0]["x5c"]
        with pytest.raises(ValueError, match="needs an x5c"):
            self._create(
                services, make, auth_method=AuthMethod.SELF_SIGNED_TLS_CLIENT_AUTH, jwks=jwks
            )

    def test_x5c_of_another_key_is_refused(
        self, services: Services, make: Factory, clock: FrozenClock
    ) -> None:
        """The first x5c certificate must hold the key it is listed with."""
        jwks = self_signed("d", clock.now()).jwks()
        jwks["keys"][0]["x5c"] = self_signed("e", clock.now()).jwks()["keys"][0]["x5c"]
        with pytest.raises(ValueError, match="does not hold the key"):
            self._create(
                services, make, auth_method=AuthMethod.SELF_SIGNED_TLS_CLIENT_AUTH, jwks=jwks
            )

    def test_x5c_not_base64_is_refused(
        self, services: Services, make: Factory, clock: FrozenClock
    ) -> None:
        """x5c entries are standard base64 DER; anything else is refused."""
        jwks = self_signed("d", clock.now()).jwks()
        jwks["keys"][0]["x5c"] = ["%%%"]
        with pytest.raises(ValueError, match="not base64"):
            self._create(
                services, make, auth_method=AuthMethod.SELF_SIGNED_TLS_CLIENT_AUTH, jwks=jwks
            )

    def test_self_signed_registration_audits_thumbprint(
        self, services: Services, make: Factory, clock: FrozenClock
    ) -> None:
        """The ledger names the registered certificate by its x5t#S256."""
        cert = self_signed("d", clock.now())
        self._create(
            services, make, auth_method=AuthMethod.SELF_SIGNED_TLS_CLIENT_AUTH, jwks=cert.jwks()
        )
        [record] = audit(services, Event.CREDENTIAL_ISSUED)
        assert record.data["x5t#S256"] == [cert.thumbprint]

    def test_jwks_refused_for_tls_client_auth(
        self, services: Services, make: Factory, clock: FrozenClock
    ) -> None:
        """A JWKS on a tls_client_auth client is refused."""
        with pytest.raises(ValueError, match="JWKS is only for"):
            self._create(
                services,
                make,
                auth_method=AuthMethod.TLS_CLIENT_AUTH,
                tls_subject_dn=DN,
                jwks=self_signed("d", clock.now()).jwks(),
            )

    def test_rotation_of_tls_client_auth_needs_dn(self, services: Services, make: Factory) -> None:
        """Rotating a tls_client_auth credential needs the (new) subject DN."""
        reg = pki_client(services, make)
        with pytest.raises(ValueError, match="subject DN"):
            services.admin.rotate_credential(reg.client_id, grace=0, actor="test")


def test_cli_creates_tls_client(settings: Settings, services: Services, make: Factory) -> None:
    """`client create --auth tls_client_auth --tls-subject-dn` registers the DN."""
    make.team()
    result = _cli(
        settings,
        "client",
        "create",
        "--team",
        "platform-iam",
        "--name",
        "svc",
        "--auth",
        "tls_client_auth",
        "--tls-subject-dn",
        "cn=svc-a, o=Acme",
        "--path",
        MTLS_PATH,
        "--json",
    )
    assert result.exit_code == 0, result.output
    created = json.loads(result.stdout)
    assert "client_secret" not in created
    with services.store.read() as tx:
        cred = tx.get_credential(created["credential_id"])
    assert cred is not None
    assert cred.tls_subject_dn == DN


def test_cli_creates_self_signed_client(
    settings: Settings, make: Factory, tmp_path: Path, clock: FrozenClock
) -> None:
    """`client create --auth self_signed_tls_client_auth --jwks FILE` registers the x5c."""
    make.team()
    jwks_file = tmp_path / "device.jwks.json"
    jwks_file.write_text(json.dumps(self_signed("d", clock.now()).jwks()), encoding="utf-8")
    result = _cli(
        settings,
        "client",
        "create",
        "--team",
        "platform-iam",
        "--name",
        "device",
        "--auth",
        "self_signed_tls_client_auth",
        "--jwks",
        str(jwks_file),
        "--path",
        MTLS_PATH,
        "--json",
    )
    assert result.exit_code == 0, result.output


def test_cli_rotates_tls_client_to_new_dn(
    settings: Settings, services: Services, make: Factory
) -> None:
    """`client rotate --tls-subject-dn` issues a credential with the new DN."""
    reg = pki_client(services, make)
    result = _cli(
        settings, "client", "rotate", reg.client_id, "--tls-subject-dn", "CN=svc-b,O=Acme", "--json"
    )
    assert result.exit_code == 0, result.output
    new_id = json.loads(result.stdout)["credential_id"]
    with services.store.read() as tx:
        cred = tx.get_credential(new_id)
    assert cred is not None
    assert cred.tls_subject_dn == "CN=svc-b,O=Acme"


def test_cli_refuses_missing_dn(settings: Settings, make: Factory) -> None:
    """`client create --auth tls_client_auth` without a DN fails with a clear message."""
    make.team()
    result = _cli(
        settings,
        "client",
        "create",
        "--team",
        "platform-iam",
        "--name",
        "svc",
        "--auth",
        "tls_client_auth",
        "--path",
        MTLS_PATH,
    )
    assert result.exit_code == 1
    assert "--tls-subject-dn" in result.stderr


def test_cli_serve_refuses_key_without_certificate(tmp_path: Path) -> None:
    """`serve --tls-key` without `--tls-cert` is a usage error."""
    result = CliRunner().invoke(
        cli_app, ["serve", "--data", str(tmp_path), "--tls-key", str(tmp_path / "k.pem")]
    )
    assert result.exit_code == 1
    assert "--tls-key needs --tls-cert" in result.stderr


def _cli(settings: Settings, *args: str) -> Any:
    opts = ["--data", str(settings.data_dir)]
    if settings.db_url:
        opts += ["--db", settings.db_url]
    return CliRunner().invoke(cli_app, [*args, *opts])


def test_admin_api_creates_tls_client(
    http: TestClient, services: Services, make: Factory, proxied: TestClient, ca: Cert
) -> None:
    """POST /admin/clients with auth tls_client_auth and tls_subject_dn makes a working client."""
    make.team()
    _, secret = services.admin.create_admin_key(
        team="platform-iam", roles=["operator"], name="t", actor="test"
    )
    r = http.post(
        "/admin/clients",
        json={
            "team": "platform-iam",
            "name": "svc",
            "auth": "tls_client_auth",
            "tls_subject_dn": DN,
            "paths": [MTLS_PATH],
            "audiences": ["https://api.example"],
        },
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert r.status_code == 201, r.text
    cert = issue(ca, "svc-a", services.clock.now())
    assert token(proxied, r.json()["client_id"], cert).status_code == 200


def test_admin_api_rotates_self_signed_client(
    http: TestClient, services: Services, make: Factory, proxied: TestClient, clock: FrozenClock
) -> None:
    """POST /admin/clients/{id}/rotate with a new x5c JWKS registers the new certificate."""
    reg = self_signed_client(services, make, self_signed("d", clock.now()))
    _, secret = services.admin.create_admin_key(
        team="platform-iam", roles=["operator"], name="t", actor="test"
    )
    new = self_signed("d", clock.now())
    r = http.post(
        f"/admin/clients/{reg.client_id}/rotate",
        json={"jwks": new.jwks(), "grace_seconds": 0},
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert r.status_code == 201, r.text
    assert token(proxied, reg.client_id, new).status_code == 200


class TestConfiguration:
    def test_bad_trusted_proxy_is_refused(self) -> None:
        """mtls_trusted_proxies entries must be IPs or CIDRs."""
        with pytest.raises(ValueError, match="not an IP or CIDR"):
            Settings(mtls_trusted_proxies=("proxy.internal",))

    def test_bad_header_name_is_refused(self) -> None:
        """mtls_proxy_header must be a header name."""
        with pytest.raises(ValueError, match="header name"):
            Settings(mtls_proxy_header="x client cert")

    def test_header_name_is_lowercased(self) -> None:
        """Header names compare case-insensitively: the setting is stored lowercase."""
        assert Settings(mtls_proxy_header="X-Client-Cert").mtls_proxy_header == "x-client-cert"

    def test_unreadable_ca_file_is_refused(self, tmp_path: Path, clock: FrozenClock) -> None:
        """A missing mtls_ca_file is a clear start-up error."""
        with pytest.raises(ValueError, match="cannot read mtls_ca_file"):
            CertificateAuthority.from_ca_file(clock, tmp_path / "missing.pem")

    def test_ca_file_without_certificates_is_refused(
        self, tmp_path: Path, clock: FrozenClock
    ) -> None:
        """An mtls_ca_file that holds no certificate is a clear start-up error."""
        bad = tmp_path / "ca.pem"
        bad.write_text("not pem", encoding="ascii")
        with pytest.raises(ValueError, match="mtls_ca_file"):
            CertificateAuthority.from_ca_file(clock, bad)

    def test_without_trust_anchors_tls_client_auth_fails(
        self, clock: FrozenClock, ca: Cert
    ) -> None:
        """Without mtls_ca_file no PKI certificate authenticates, and the reason says why."""
        client = Client(
            id="cl_x",
            team_id="t",
            name="x",
            kind=ClientKind.WORKLOAD,
            auth_method=AuthMethod.TLS_CLIENT_AUTH,
            paths=(),
            scopes=(),
            audiences=(),
            created_at=0,
        )
        cred = Credential("cred_x", "cl_x", CredentialKind.TLS_CLIENT_AUTH, None, None, 0, DN)
        with pytest.raises(InvalidClient) as info:
            CertificateAuthority(clock).match(client, [cred], issue(ca, "svc-a", clock.now()).pem)
        assert "mtls_ca_file" in info.value.detail

    def test_matcher_ignores_other_methods(self, clock: FrozenClock, ca: Cert) -> None:
        """A certificate never authenticates a client registered for another method."""
        client = Client(
            id="cl_x",
            team_id="t",
            name="x",
            kind=ClientKind.WORKLOAD,
            auth_method=AuthMethod.CLIENT_SECRET_BASIC,
            paths=(),
            scopes=(),
            audiences=(),
            created_at=0,
        )
        pem = issue(ca, "svc-a", clock.now()).pem
        assert CertificateAuthority(clock).match(client, [], pem) is None


# --- paths that require mTLS binding ----------------------------------------------------

MTLS_SECRET_MAP = """\
version: 1
teams:
  - id: platform-iam
    name: Platform IAM
paths:
  - id: secret-but-mtls
    principal: workload
    grant: client_credentials
    inputs: [client_secret]
    output: access_token
    max_ttl: 5m
    binding: mtls
    owners:
      credential_issuance: platform-iam
      authentication: platform-iam
      recovery: platform-iam
      detection: platform-iam
"""


def test_mtls_path_refuses_request_without_certificate(
    tmp_path: Path, db_url: str | None, clock: FrozenClock
) -> None:
    """A path with binding mtls refuses a client that presents no certificate."""
    paths_file = tmp_path / "paths.yaml"
    paths_file.write_text(MTLS_SECRET_MAP, encoding="utf-8")
    s = build_services(
        Settings(data_dir=tmp_path / "d", db_url=db_url, issuer=ISSUER, paths_file=paths_file),
        clock=clock,
    )
    try:
        Factory(s).team()
        reg = Factory(s).client(paths=["secret-but-mtls"])
        assert reg.secret is not None
        with TestClient(create_app(s), base_url=ISSUER) as http:
            r = http.post(
                "/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=(reg.client_id, reg.secret),
            )
        assert r.status_code == 400, r.text
        assert r.json()["error"] == "invalid_request"
        assert "client certificate" in r.json()["error_description"]
    finally:
        s.close()


# --- serving TLS: options for uvicorn ---------------------------------------------------


class TestServerOptions:
    def test_plain_server_keeps_uvicorn_defaults(self, tmp_path: Path, clock: FrozenClock) -> None:
        """Without TLS or a proxy header, serve runs uvicorn untouched."""
        s = build_services(Settings(data_dir=tmp_path / "d", issuer=ISSUER), clock=clock)
        try:
            with ExitStack() as stack:
                opts = tls.server_options(s, tls_cert=None, tls_key=None, stack=stack)
            assert opts == {}
        finally:
            s.close()

    def test_proxy_mode_uses_connection_protocol(self, services: Services) -> None:
        """Behind a proxy the protocol subclass records the TCP peer; no TLS options."""
        with ExitStack() as stack:
            opts = tls.server_options(services, tls_cert=None, tls_key=None, stack=stack)
        assert set(opts) == {"http"}

    def test_tls_trusts_ca_and_registered_self_signed(
        self, services: Services, make: Factory, ca: Cert, clock: FrozenClock, tmp_path: Path
    ) -> None:
        """The TLS layer requests client certificates and trusts the CA plus self-signed ones."""
        device = self_signed("device-1", clock.now())
        self_signed_client(services, make, device)
        notices: list[str] = []
        with ExitStack() as stack:
            opts = tls.server_options(
                services,
                tls_cert=tmp_path / "server.pem",
                tls_key=tmp_path / "server.key",
                stack=stack,
                notice=notices.append,
            )
            bundle = Path(opts["ssl_ca_certs"]).read_text(encoding="ascii")
            assert ca.pem in bundle
            assert device.pem in bundle
        assert opts["ssl_cert_reqs"] == ssl.CERT_OPTIONAL
        assert not Path(opts["ssl_ca_certs"]).exists()  # removed when serve stops
        assert "1 CA certificate(s) and 1 registered self-signed" in notices[0]

    def test_revoked_self_signed_is_not_trusted_by_tls(
        self, services: Services, make: Factory, clock: FrozenClock
    ) -> None:
        """A revoked self-signed credential's certificate is left out of the TLS trust."""
        device = self_signed("device-1", clock.now())
        reg = self_signed_client(services, make, device)
        services.admin.revoke(reg.credential_id, reason="lost", actor="test")
        assert tls.registered_self_signed(services) == []

    def test_tls_without_anything_to_trust_requests_no_certificates(
        self, tmp_path: Path, clock: FrozenClock
    ) -> None:
        """With no CA and no self-signed client, TLS runs without asking for certificates."""
        s = build_services(Settings(data_dir=tmp_path / "d", issuer=ISSUER), clock=clock)
        notices: list[str] = []
        try:
            with ExitStack() as stack:
                opts = tls.server_options(
                    s,
                    tls_cert=tmp_path / "c.pem",
                    tls_key=None,
                    stack=stack,
                    notice=notices.append,
                )
            assert "ssl_cert_reqs" not in opts
            assert opts["ssl_certfile"] == str(tmp_path / "c.pem")
            assert "not requested" in notices[0]
        finally:
            s.close()


# --- certificate helpers (crypto.py) ----------------------------------------------------


class TestCertificateHelpers:
    @pytest.mark.parametrize(
        ("typed", "canonical"),
        [
            ("cn = svc-a , o = Acme", "CN=svc-a,O=Acme"),
            ("CN=a\\, b,O=Acme", "CN=a\\, b,O=Acme"),
            ("CN=a\\ ,O=Acme", "CN=a\\ ,O=Acme"),
            ("CN=a+UID=7,O=Acme", "CN=a+UID=7,O=Acme"),
        ],
    )
    def test_dn_normalisation(self, typed: str, canonical: str) -> None:
        """Type case and unescaped spaces are normalised; escapes and multi-valued RDNs kept."""
        assert crypto.normalize_dn(typed) == canonical

    def test_empty_dn_is_refused(self) -> None:
        """An empty subject DN is refused."""
        with pytest.raises(ValueError, match="empty"):
            crypto.normalize_dn("")

    def test_empty_trust_bundle_is_refused(self) -> None:
        """A trust store needs at least one anchor."""
        with pytest.raises(ValueError, match="no certificate"):
            crypto.ClientCertificateTrust([])

    @pytest.mark.parametrize("kind", ["rsa", "ed25519"])
    def test_x5c_jwks_with_other_key_types(self, kind: str, clock: FrozenClock) -> None:
        """Self-signed registrations accept RSA and Ed25519 certificates too."""
        jwks = _other_key_jwks(kind, clock.now())
        assert crypto.parse_certificate_jwks(jwks)["keys"][0]["x5c"] == jwks["keys"][0]["x5c"]

    def test_x5c_certificate_with_unsupported_key_is_refused(self, clock: FrozenClock) -> None:
        """A certificate whose key type has no JWK form (DSA) is refused."""
        jwks = _other_key_jwks("dsa", clock.now())
        with pytest.raises(ValueError, match="not supported"):
            crypto.parse_certificate_jwks(jwks)

    def test_x5c_entry_must_be_string(self, clock: FrozenClock) -> None:
        """An x5c entry that is not a string is refused."""
        jwks = self_signed("d", clock.now()).jwks()
        jwks["keys"][0]["x5c"] = [17]
        with pytest.raises(ValueError, match="x5c"):
            crypto.parse_certificate_jwks(jwks)

    def test_registered_certificates_skip_undecodable(self, clock: FrozenClock) -> None:
        """Stored entries that do not decode are skipped rather than failing authentication."""
        good = self_signed("d", clock.now())
        jwks = {"keys": [{"x5c": ["%%%"]}, {"x5c": [17]}, {"kty": "EC"}, *good.jwks()["keys"]]}
        assert crypto.registered_certificates(jwks) == [good.der]

    def test_self_signed_matcher_skips_other_credentials(self, clock: FrozenClock) -> None:
        """Only self-signed credentials are compared with the certificate."""
        cert = self_signed("d", clock.now())
        client = _client(AuthMethod.SELF_SIGNED_TLS_CLIENT_AUTH)
        other = Credential("cred_a", "cl_x", CredentialKind.TLS_CLIENT_AUTH, None, None, 0, DN)
        mine = Credential(
            "cred_b", "cl_x", CredentialKind.SELF_SIGNED_TLS_CLIENT_AUTH, None, cert.jwks(), 0
        )
        assert CertificateAuthority(clock).match(client, [other, mine], cert.pem) is mine


def _client(method: AuthMethod) -> Client:
    return Client(
        id="cl_x",
        team_id="t",
        name="x",
        kind=ClientKind.WORKLOAD,
        auth_method=method,
        paths=(),
        scopes=(),
        audiences=(),
        created_at=0,
    )


def _other_key_jwks(kind: str, now: float) -> dict[str, Any]:
    """A JWKS with a self-signed certificate over an RSA, Ed25519 or DSA key."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import dsa, ed25519, rsa
    from cryptography.x509.oid import NameOID

    key: Any
    algorithm: Any = hashes.SHA256()
    if kind == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif kind == "ed25519":
        key, algorithm = ed25519.Ed25519PrivateKey.generate(), None
    else:
        key = dsa.generate_private_key(key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, kind)])
    start = dt.datetime.fromtimestamp(now, tz=dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=1))
        .sign(key, algorithm)
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    if kind == "dsa":  # no JWK form: borrow an EC key to get past JWKS parsing
        jwk = self_signed("x", now).jwks()["keys"][0]
    elif kind == "rsa":
        from joserfc.jwk import RSAKey

        jwk = dict(RSAKey.import_key(key.public_key()).as_dict(private=False))
    else:
        from joserfc.jwk import OKPKey

        jwk = dict(OKPKey.import_key(key.public_key()).as_dict(private=False))
    jwk["x5c"] = [base64.b64encode(der).decode("ascii")]
    return {"keys": [jwk]}


class TestTlsHelpers:
    def test_lifespan_scope_passes_through(self) -> None:
        """Non-HTTP scopes (lifespan) reach the app without connection extensions."""
        seen: list[dict[str, Any]] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            seen.append(scope)

        wrapped = tls._ConnectionScope(app, {"x": 1})
        _run(wrapped, {"type": "lifespan"})
        assert "extensions" not in seen[0]

    def test_peer_without_address_is_untrusted(self) -> None:
        """A request without a client address cannot come from a trusted proxy."""
        mw = tls.ClientCertificateMiddleware(_noop, header=HEADER, trusted_proxies=["0.0.0.0/0"])
        scope: dict[str, Any] = {"type": "http", "client": None, "headers": []}
        _run(mw, scope)
        assert scope[tls.SCOPE_KEY] is None

    def test_audit_memory_is_bounded(
        self, services: Services, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The per-address rate-limit memory is cleared when full, never grows without bound."""
        monkeypatch.setattr(tls, "_AUDIT_PEERS", 1)
        audit_ignored = tls.ignored_header_auditor(services)
        for peer in ("192.0.2.1", "192.0.2.2", "192.0.2.1"):
            audit_ignored(peer)
        assert len(audit(services, Event.MTLS_HEADER_IGNORED)) == 3

    def test_tls_trust_leaves_out_other_and_disabled_clients(
        self, services: Services, make: Factory, clock: FrozenClock
    ) -> None:
        """Only live self-signed clients' certificates go into the TLS trust."""
        pki_client(services, make)
        cert = self_signed("gone", clock.now())
        disabled = Client(
            id="cl_disabled",
            team_id="platform-iam",
            name="gone",
            kind=ClientKind.WORKLOAD,
            auth_method=AuthMethod.SELF_SIGNED_TLS_CLIENT_AUTH,
            paths=(MTLS_PATH,),
            scopes=(),
            audiences=(),
            created_at=clock.now(),
            disabled_at=clock.now(),
        )
        with services.store.write() as tx:
            tx.insert_client(disabled)
            tx.insert_credential(
                Credential(
                    "cred_disabled",
                    disabled.id,
                    CredentialKind.SELF_SIGNED_TLS_CLIENT_AUTH,
                    None,
                    cert.jwks(),
                    clock.now(),
                )
            )
        assert tls.registered_self_signed(services) == []


def test_serve_starts_uvicorn_with_client_certificates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`serve --tls-cert --tls-key --tls-client-ca` runs uvicorn over HTTPS asking for certs."""
    import uvicorn

    seen: dict[str, Any] = {}

    def fake_run(app: Any, **kwargs: Any) -> None:
        seen.update(kwargs, bundle=Path(kwargs["ssl_ca_certs"]).read_text(encoding="ascii"))

    monkeypatch.setattr(uvicorn, "run", fake_run)
    ca = make_ca(time.time())
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text(ca.pem, encoding="ascii")
    cert, key = issue(ca, "server", time.time(), server_ip="127.0.0.1").write(tmp_path, "srv")
    result = CliRunner().invoke(
        cli_app,
        [
            "serve",
            "--data",
            str(tmp_path / "data"),
            "--port",
            "8443",
            "--tls-cert",
            str(cert),
            "--tls-key",
            str(key),
            "--tls-client-ca",
            str(ca_file),
        ],
        env={k: v for k, v in os.environ.items() if not k.startswith("TOKENTRAIL_")},
    )
    assert result.exit_code == 0, result.output
    assert "listening on https://127.0.0.1:8443" in result.stderr
    assert seen["ssl_certfile"] == str(cert)
    assert seen["ssl_keyfile"] == str(key)
    assert seen["ssl_cert_reqs"] == ssl.CERT_OPTIONAL
    assert seen["bundle"] == ca.pem
    assert issubclass(seen["http"], tls._ConnectionInfo)


def test_explicit_unset_proxy_header_is_none() -> None:
    """Passing mtls_proxy_header=None (as the CLI does) keeps it unset."""
    assert Settings(mtls_proxy_header=None).mtls_proxy_header is None


def test_audit_failure_does_not_fail_the_request() -> None:
    """If the ledger cannot record an ignored header, the request still goes on without it."""

    def broken(peer: str) -> None:
        raise RuntimeError("database down")

    mw = tls.ClientCertificateMiddleware(_noop, header=HEADER, on_ignored=broken)
    scope: dict[str, Any] = {"type": "http", "client": PROXY, "headers": [(HEADER.encode(), b"x")]}
    _run(mw, scope)
    assert scope[tls.SCOPE_KEY] is None
