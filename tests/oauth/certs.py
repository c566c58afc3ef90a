"""X.509 material for the mTLS tests, made with ``cryptography``: CAs, client and
server certificates, self-signed client certificates and their JWKS (``x5c``)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from joserfc.jwk import ECKey

DAY = dt.timedelta(days=1)


def _name(cn: str, org: str = "Acme") -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _when(at: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(at, tz=dt.UTC)


@dataclass
class Cert:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode("ascii")

    @property
    def key_pem(self) -> str:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")

    @property
    def thumbprint(self) -> str:
        """RFC 8705 §3.1 ``x5t#S256``."""
        digest = hashlib.sha256(self.der).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    @property
    def escaped(self) -> str:
        """The PEM URL-encoded, as nginx's ``$ssl_client_escaped_cert`` sends it."""
        return quote(self.pem, safe="")

    @property
    def subject(self) -> str:
        return self.cert.subject.rfc4514_string()

    def write(self, folder: Path, stem: str) -> tuple[Path, Path]:
        """Write ``stem.pem`` and ``stem.key``; return both paths."""
        cert_file, key_file = folder / f"{stem}.pem", folder / f"{stem}.key"
        cert_file.write_text(self.pem, encoding="ascii")
        key_file.write_text(self.key_pem, encoding="ascii")
        return cert_file, key_file

    def jwks(self) -> dict[str, Any]:
        """A JWKS holding this certificate's key with the certificate as ``x5c``."""
        jwk = dict(ECKey.import_key(self.key.public_key()).as_dict(private=False))
        jwk["x5c"] = [base64.b64encode(self.der).decode("ascii")]
        return {"keys": [jwk]}


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def make_ca(now: float, cn: str = "Test CA") -> Cert:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_when(now) - DAY)
        .not_valid_after(_when(now) + 365 * DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Cert(cert, key)


def issue(
    ca: Cert,
    cn: str,
    now: float,
    *,
    org: str = "Acme",
    days: int = 30,
    start: float | None = None,
    server_ip: str | None = None,
) -> Cert:
    """A leaf certificate from ``ca``: a client certificate, or a server one for ``server_ip``."""
    key = ec.generate_private_key(ec.SECP256R1())
    begin = _when(start if start is not None else now) - DAY
    eku = ExtendedKeyUsageOID.SERVER_AUTH if server_ip else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn, org))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(begin)
        .not_valid_after(begin + days * DAY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    if server_ip:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(server_ip))]),
            critical=False,
        )
    return Cert(builder.sign(ca.key, hashes.SHA256()), key)


def self_signed(cn: str, now: float, *, days: int = 30, start: float | None = None) -> Cert:
    """A self-signed client certificate (RFC 8705 §2.2)."""
    key = ec.generate_private_key(ec.SECP256R1())
    begin = _when(start if start is not None else now) - DAY
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(begin)
        .not_valid_after(begin + days * DAY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Cert(cert, key)
