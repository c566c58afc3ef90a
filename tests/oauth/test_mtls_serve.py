"""End to end: a real ``tokentrail serve --tls-cert ... --tls-client-ca ...`` process and
an httpx client presenting a client certificate in the TLS handshake (RFC 8705)."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.oauth.certs import Cert, issue, make_ca, self_signed
from tests.oauth.helpers import claims_of
from tokentrail.config import Settings
from tokentrail.model import AuthMethod, ClientKind
from tokentrail.services import build_services

MTLS_PATH = "workload-mtls"


@dataclass
class TlsServer:
    url: str
    ca_file: Path
    folder: Path
    pki_client_id: str
    pki_cert: Cert
    device_client_id: str
    device_cert: Cert

    def client(self, cert: Cert | None) -> httpx.Client:
        """An HTTPS client trusting the server's CA, presenting ``cert`` if given."""
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        if cert is not None:
            cert_file, key_file = cert.write(self.folder, cert.subject.replace(",", "_"))
            ctx.load_cert_chain(str(cert_file), str(key_file))
        return httpx.Client(base_url=self.url, verify=ctx, timeout=10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _register(data: Path, db_url: str | None, pki_dn: str, device: Cert) -> tuple[str, str]:
    """Register a tls_client_auth and a self-signed client before the server starts."""
    s = build_services(Settings(data_dir=data, db_url=db_url))
    try:
        s.admin.create_team("platform-iam", actor="test")
        common = {
            "team": "platform-iam",
            "name": "svc",
            "kind": ClientKind.WORKLOAD,
            "paths": [MTLS_PATH],
            "scopes": ["read"],
            "audiences": ["https://api.example"],
            "actor": "test",
        }
        pki = s.admin.create_client(
            auth_method=AuthMethod.TLS_CLIENT_AUTH, jwks=None, tls_subject_dn=pki_dn, **common
        )
        dev = s.admin.create_client(
            auth_method=AuthMethod.SELF_SIGNED_TLS_CLIENT_AUTH, jwks=device.jwks(), **common
        )
        return pki.client_id, dev.client_id
    finally:
        s.close()


@pytest.fixture
def tls_server(tmp_path: Path, db_url: str | None) -> Iterator[TlsServer]:
    """`tokentrail serve` over HTTPS requesting client certificates; yields how to reach it."""
    now = time.time()
    ca = make_ca(now)
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text(ca.pem, encoding="ascii")
    server_cert, server_key = issue(ca, "tokentrail", now, server_ip="127.0.0.1").write(
        tmp_path, "server"
    )
    pki_cert = issue(ca, "svc-a", now)
    device = self_signed("device-1", now)
    data = tmp_path / "data"
    pki_id, device_id = _register(data, db_url, pki_cert.subject, device)

    port = _free_port()
    log_path = tmp_path / "server.log"
    log = log_path.open("w")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENTRAIL_")}
    db_args = ["--db", db_url] if db_url else []
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from tokentrail.cli import main; main()",
            "serve",
            "--data",
            str(data),
            *db_args,
            "--port",
            str(port),
            "--tls-cert",
            str(server_cert),
            "--tls-key",
            str(server_key),
            "--tls-client-ca",
            str(ca_file),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    server = TlsServer(
        f"https://127.0.0.1:{port}", ca_file, tmp_path, pki_id, pki_cert, device_id, device
    )
    try:
        deadline = time.monotonic() + 60
        with server.client(None) as probe:
            while True:
                assert proc.poll() is None, log_path.read_text()
                try:
                    if probe.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:  # pragma: no cover - only if shutdown hangs
            proc.kill()
            proc.wait()
        log.close()


def _token(http: httpx.Client, client_id: str) -> httpx.Response:
    return http.post(
        "/oauth/token", data={"grant_type": "client_credentials", "client_id": client_id}
    )


def test_ca_issued_client_certificate_gets_bound_token(tls_server: TlsServer) -> None:
    """tls_client_auth over real TLS: the token's cnf.x5t#S256 is the handshake certificate's."""
    with tls_server.client(tls_server.pki_cert) as http:
        r = _token(http, tls_server.pki_client_id)
        assert r.status_code == 200, r.text
        access = r.json()["access_token"]
        intro = http.post(
            "/oauth/introspect", data={"token": access, "client_id": tls_server.pki_client_id}
        )
    assert claims_of(access)["cnf"] == {"x5t#S256": tls_server.pki_cert.thumbprint}
    assert intro.json()["cnf"] == {"x5t#S256": tls_server.pki_cert.thumbprint}


def test_registered_self_signed_certificate_gets_bound_token(tls_server: TlsServer) -> None:
    """self_signed_tls_client_auth over real TLS: the TLS layer trusts the registered cert."""
    with tls_server.client(tls_server.device_cert) as http:
        r = _token(http, tls_server.device_client_id)
    assert r.status_code == 200, r.text
    cnf = claims_of(r.json()["access_token"])["cnf"]
    assert cnf == {"x5t#S256": tls_server.device_cert.thumbprint}


def test_connection_without_certificate_cannot_use_mtls_client(tls_server: TlsServer) -> None:
    """Client certificates are optional in the handshake; an mTLS client without one is refused."""
    with tls_server.client(None) as http:
        r = _token(http, tls_server.pki_client_id)
    assert r.status_code == 401, r.text
    assert r.json()["error"] == "invalid_client"
