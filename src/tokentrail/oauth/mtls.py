"""Mutual-TLS client authentication — RFC 8705 §2.

The certificate arrives with the connection (tokentrail terminating TLS) or
from a trusted TLS-terminating proxy (see :mod:`tokentrail.web.tls`); by the
time it reaches :class:`CertificateAuthority` it is a PEM string, and this
module decides which of a client's live credentials it satisfies:

* ``tls_client_auth`` (§2.1): the certificate chains to a configured trust
  anchor (``mtls_ca_file``), is valid now, and its subject DN equals the DN
  registered on the credential (§2.1.2 ``tls_client_auth_subject_dn``,
  compared in canonical RFC 4514 form);
* ``self_signed_tls_client_auth`` (§2.2): the certificate is, byte for byte,
  one registered in the credential's JWKS (``x5c``) and is within its validity
  period. No chain is built (§2.2: PKIX path validation is skipped).

Each refusal raises :class:`~tokentrail.errors.InvalidClient` with a precise
``detail`` for the audit ledger; the caller only ever sees ``invalid_client``.
"""

from __future__ import annotations

from pathlib import Path

from tokentrail import crypto
from tokentrail.clock import Clock
from tokentrail.errors import InvalidClient
from tokentrail.model import AuthMethod, Client, Credential, CredentialKind


def _refuse(detail: str) -> InvalidClient:
    return InvalidClient("client authentication failed", detail=detail)


class CertificateAuthority:
    """The :class:`~tokentrail.oauth.client_auth.CertificateMatcher` of tokentrail."""

    def __init__(self, clock: Clock, trust: crypto.ClientCertificateTrust | None = None) -> None:
        self._clock = clock
        self._trust = trust

    @classmethod
    def from_ca_file(cls, clock: Clock, ca_file: Path | None) -> CertificateAuthority:
        """Trust the PEM bundle ``ca_file`` for ``tls_client_auth`` (none: only self-signed)."""
        if ca_file is None:
            return cls(clock)
        try:
            data = ca_file.read_bytes()
        except OSError as exc:
            raise ValueError(f"cannot read mtls_ca_file {ca_file}: {exc.strerror}") from exc
        try:
            return cls(clock, crypto.ClientCertificateTrust.from_pem(data))
        except ValueError as exc:
            raise ValueError(f"mtls_ca_file {ca_file}: {exc}") from exc

    @property
    def trust(self) -> crypto.ClientCertificateTrust | None:
        return self._trust

    def match(self, client: Client, live: list[Credential], pem: str) -> Credential | None:
        try:
            der = crypto.pem_to_der(pem)
        except ValueError as exc:
            raise _refuse("the client certificate is not a PEM certificate") from exc
        now = self._clock.now()
        if client.auth_method is AuthMethod.SELF_SIGNED_TLS_CLIENT_AUTH:
            return self._self_signed(live, der, now)
        if client.auth_method is AuthMethod.TLS_CLIENT_AUTH:
            return self._pki(live, der, now)
        return None

    def _self_signed(self, live: list[Credential], der: bytes, now: float) -> Credential:
        """RFC 8705 §2.2: the presented certificate is one the client registered."""
        for cred in live:
            if cred.kind is not CredentialKind.SELF_SIGNED_TLS_CLIENT_AUTH or cred.jwks is None:
                continue
            if der in crypto.registered_certificates(cred.jwks):
                facts = crypto.certificate_facts(der)
                if now < facts.not_before:
                    raise _refuse("the registered certificate is not yet valid")
                if now > facts.not_after:
                    raise _refuse("the registered certificate has expired")
                return cred
        raise _refuse("the certificate is not one the client registered")

    def _pki(self, live: list[Credential], der: bytes, now: float) -> Credential:
        """RFC 8705 §2.1: a trusted chain, and the subject DN the client registered."""
        if self._trust is None:
            raise _refuse("tls_client_auth needs trust anchors: mtls_ca_file is not set")
        try:
            subject = self._trust.verify(der, at=now)
        except ValueError as exc:
            raise _refuse(str(exc)) from exc
        for cred in live:
            if cred.kind is CredentialKind.TLS_CLIENT_AUTH and cred.tls_subject_dn == subject:
                return cred
        raise _refuse(f"subject DN {subject!r} is not the one the client registered")
