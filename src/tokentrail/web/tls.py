"""Where a client certificate comes from (RFC 8705): the TLS connection, or a trusted proxy.

Two deployments, described in docs/mtls.md:

* **tokentrail terminates TLS** (``tokentrail serve --tls-cert --tls-key``). The
  server context requests a client certificate (``CERT_OPTIONAL``) and Python's
  ``ssl`` verifies it during the handshake against the trust anchors
  (``mtls_ca_file``) plus every registered self-signed client certificate, read
  from the database at start-up: a self-signed registration made later is
  trusted by the TLS layer only after a restart. uvicorn does not hand the peer
  certificate to the application, so :func:`protocol_class` subclasses its HTTP
  protocol: on ``connection_made`` it reads the certificate from the
  ``ssl_object`` and adds it to every request's scope as the ASGI TLS extension
  (``scope["extensions"]["tls"]["client_cert_chain"]``), together with the
  TCP peer address as uvicorn saw it before any ``X-Forwarded-For`` rewriting.
* **Behind a TLS-terminating proxy**: the proxy forwards the certificate in the
  ``mtls_proxy_header`` header. The header is believed only when the TCP peer is
  one of ``mtls_trusted_proxies``; from those peers it is the *only* source.
  From any other address it is ignored, logged and audited (at most once a
  minute per address, so a flood cannot flood the ledger).

Either way :class:`ClientCertificateMiddleware` resolves the certificate once
per request and :func:`client_cert` hands it to the OAuth endpoints. Nothing
here authenticates anybody: :mod:`tokentrail.oauth.mtls` decides whether the
certificate matches a client.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import logging
import os
import ssl
import tempfile
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from tokentrail import crypto
from tokentrail.audit import Event
from tokentrail.model import AuthMethod
from tokentrail.services import Services

log = logging.getLogger("tokentrail.mtls")

#: Where the middleware leaves the request's client certificate (PEM) in the scope.
SCOPE_KEY = "tokentrail.client_cert"
#: Scope extension carrying the TCP peer (host, port) as the server accepted it.
PEER_EXTENSION = "tokentrail.transport_peer"
_TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}
_AUDIT_INTERVAL = 60.0
#: Addresses remembered for audit rate limiting (the memory is bounded, not the ledger).
_AUDIT_PEERS = 4096

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


# --- the certificate of the TLS connection ------------------------------------------


def connection_extensions(transport: asyncio.BaseTransport) -> dict[str, Any]:
    """Scope extensions for every request on ``transport``: peer address and TLS details."""
    peer = transport.get_extra_info("peername")
    extensions: dict[str, Any] = {
        PEER_EXTENSION: (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else None
    }
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is not None:
        der = ssl_object.getpeercert(binary_form=True)
        subject = None
        chain: list[str] = []
        if der:
            chain.append(ssl.DER_cert_to_PEM_cert(der))
            subject = crypto.certificate_facts(der).subject_dn
        # ASGI TLS extension; the handshake verified the certificate, so no error.
        extensions["tls"] = {
            "server_cert": None,
            "client_cert_chain": chain,
            "client_cert_name": subject,
            "client_cert_error": None,
            "tls_version": _TLS_VERSIONS.get(str(ssl_object.version())),
            "cipher_suite": None,
        }
    return extensions


class _ConnectionScope:
    """Adds what the connection knows to the scope of each request it carries."""

    def __init__(self, app: Any, extensions: dict[str, Any]) -> None:
        self._app = app
        self._extensions = extensions

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            scope["extensions"] = {**(scope.get("extensions") or {}), **self._extensions}
        await self._app(scope, receive, send)


class _ConnectionInfo:
    """Mixin for uvicorn HTTP protocols: wrap the app per connection with its extensions."""

    app: Any

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self.app = _ConnectionScope(self.app, connection_extensions(transport))


class ConnectionInfoH11Protocol(_ConnectionInfo, H11Protocol):
    """uvicorn's h11 protocol, exposing the client certificate and TCP peer."""


def protocol_class() -> type[asyncio.Protocol]:
    """The HTTP protocol for uvicorn: httptools when installed (like uvicorn's auto), else h11."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # pragma: no cover - uvicorn without httptools
        return ConnectionInfoH11Protocol

    class ConnectionInfoHttpToolsProtocol(_ConnectionInfo, HttpToolsProtocol):
        """uvicorn's httptools protocol, exposing the client certificate and TCP peer."""

    return ConnectionInfoHttpToolsProtocol


# --- one certificate per request ------------------------------------------------------


def forwarded_certificate(value: str) -> str | None:
    """The PEM certificate in a proxy's header: URL-encoded PEM (nginx
    ``$ssl_client_escaped_cert``, AWS ALB) or base64 DER (Traefik, several load
    balancers). Anything else is returned as-is for the matcher to refuse."""
    text = unquote(value).strip()
    if not text:
        return None
    if text.startswith("-----BEGIN"):
        return text
    try:
        return crypto.der_to_pem(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError):
        return text


def _peer_ip(peer: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not isinstance(peer, tuple | list) or not peer:
        return None
    try:
        ip = ipaddress.ip_address(str(peer[0]))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class ClientCertificateMiddleware:
    """Resolves the client certificate of each HTTP request into ``scope[SCOPE_KEY]``."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        header: str | None,
        trusted_proxies: Sequence[str] = (),
        on_ignored: Callable[[str], None] | None = None,
    ) -> None:
        self.app = app
        self._header = header.lower().encode("latin-1") if header else None
        self._trusted: list[Network] = [
            ipaddress.ip_network(p, strict=False) for p in trusted_proxies
        ]
        self._on_ignored = on_ignored

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[SCOPE_KEY] = await self._certificate(scope)
        await self.app(scope, receive, send)

    def _is_trusted(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
        return ip is not None and any(ip in net for net in self._trusted)

    async def _certificate(self, scope: Scope) -> str | None:
        extensions = scope.get("extensions") or {}
        if self._header is not None:
            values = [v.decode("latin-1") for k, v in scope["headers"] if k == self._header]
            peer = _peer_ip(extensions.get(PEER_EXTENSION) or scope.get("client"))
            if self._is_trusted(peer):
                # From a trusted proxy the header is the only source: the proxy's own
                # TLS certificate (if any) is not the client's.
                if len(values) > 1:
                    log.warning("trusted proxy %s sent %d certificate headers", peer, len(values))
                    return None
                return forwarded_certificate(values[0]) if values else None
            if values:
                log.debug("ignored client-certificate header from untrusted address %s", peer)
                if self._on_ignored is not None:
                    try:
                        await run_in_threadpool(self._on_ignored, str(peer) if peer else "unknown")
                    except Exception:  # the header is ignored either way; keep serving
                        log.exception("could not audit an ignored client-certificate header")
        tls = extensions.get("tls")
        chain = tls.get("client_cert_chain") if isinstance(tls, dict) else None
        if chain:
            return str(next(iter(chain)))
        return None


def scope_client_cert(scope: Scope) -> str | None:
    """The client certificate of a request as resolved by :class:`ClientCertificateMiddleware`."""
    value = scope.get(SCOPE_KEY)
    return value if isinstance(value, str) else None


def client_cert(request: Request) -> str | None:
    return scope_client_cert(request.scope)


def ignored_header_auditor(services: Services) -> Callable[[str], None]:
    """Records a certificate header from an untrusted address (at most once a minute per peer)."""
    last: dict[str, float] = {}
    header = services.settings.mtls_proxy_header

    def audit(peer: str) -> None:
        now = services.clock.now()
        if now - last.get(peer, float("-inf")) < _AUDIT_INTERVAL:
            return
        if len(last) >= _AUDIT_PEERS:
            last.clear()
        last[peer] = now
        log.warning("ignored %s header from untrusted address %s", header, peer)
        with services.store.write() as tx:
            tx.append_audit(
                Event.MTLS_HEADER_IGNORED,
                at=now,
                actor=f"peer:{peer}",
                data={"header": header, "peer": peer},
            )

    return audit


def middleware_options(services: Services) -> dict[str, Any]:
    """Keyword arguments of :class:`ClientCertificateMiddleware` for ``services``."""
    settings = services.settings
    return {
        "header": settings.mtls_proxy_header,
        "trusted_proxies": settings.mtls_trusted_proxies,
        "on_ignored": ignored_header_auditor(services),
    }


# --- serving TLS ----------------------------------------------------------------------


def registered_self_signed(services: Services) -> list[bytes]:
    """DER of every certificate live ``self_signed_tls_client_auth`` credentials register."""
    found: list[bytes] = []
    now = services.clock.now()
    with services.store.read() as tx:
        for client in tx.list_clients():
            if client.auth_method is not AuthMethod.SELF_SIGNED_TLS_CLIENT_AUTH:
                continue
            if client.disabled_at is not None:
                continue
            for cred in tx.client_credentials(client.id, now=now):
                if cred.jwks is not None and tx.first_revoked([cred.id]) is None:
                    found.extend(crypto.registered_certificates(cred.jwks))
    return found


def client_trust_bundle(services: Services) -> tuple[str, int, int]:
    """PEM the TLS layer trusts for client certificates: (bundle, CA count, self-signed count)."""
    anchors = services.mtls.trust.pem_bundle() if services.mtls and services.mtls.trust else ""
    ca_count = anchors.count("-----BEGIN CERTIFICATE-----")
    self_signed = list(dict.fromkeys(registered_self_signed(services)))
    pems = "".join(ssl.DER_cert_to_PEM_cert(d) for d in self_signed)
    return anchors + pems, ca_count, len(self_signed)


def _write_bundle(text: str, stack: ExitStack) -> str:
    fd, name = tempfile.mkstemp(prefix="tokentrail-client-ca-", suffix=".pem")
    stack.callback(os.unlink, name)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(text)
    return name


def server_options(
    services: Services,
    *,
    tls_cert: Path | None,
    tls_key: Path | None,
    stack: ExitStack,
    notice: Callable[[str], None] = log.info,
) -> dict[str, Any]:
    """uvicorn keyword arguments for TLS termination and certificate-aware connections.

    Without TLS and without a proxy header, nothing: uvicorn's own protocol runs.
    """
    opts: dict[str, Any] = {}
    if tls_cert is None and services.settings.mtls_proxy_header is None:
        return opts
    opts["http"] = protocol_class()
    if tls_cert is None:
        return opts
    opts["ssl_certfile"] = str(tls_cert)
    if tls_key is not None:
        opts["ssl_keyfile"] = str(tls_key)
    bundle, cas, self_signed = client_trust_bundle(services)
    if not bundle:
        notice(
            "TLS: no client CA (--tls-client-ca) and no registered self-signed client "
            "certificate: client certificates are not requested"
        )
        return opts
    opts["ssl_ca_certs"] = _write_bundle(bundle, stack)
    opts["ssl_cert_reqs"] = ssl.CERT_OPTIONAL
    notice(
        f"TLS: client certificates requested; trusting {cas} CA certificate(s) and "
        f"{self_signed} registered self-signed certificate(s) (restart to trust new "
        "self-signed registrations)"
    )
    return opts
