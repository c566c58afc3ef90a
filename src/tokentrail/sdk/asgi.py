"""ASGI middleware: every request must present a valid tokentrail access token.

Pure ASGI (works under Starlette, FastAPI or any ASGI server)::

    app = TokenAuthMiddleware(app, verifier=verifier, public_url="https://api.example.com",
                              skip_paths={"/healthz"})

It reads ``Authorization: Bearer|DPoP <token>`` and the ``DPoP`` proof header,
verifies them with :meth:`Verifier.averify_request
<tokentrail.sdk.verifier.Verifier.averify_request>`, and hands the application
the :class:`~tokentrail.sdk.verifier.VerifiedToken` as ``scope["state"]["token"]``
(Starlette's ``request.state.token``) and ``scope["tokentrail.token"]``. A
refused request gets the error's status (401, or 400/403/503) with the
``WWW-Authenticate`` challenge of RFC 6750 §3 / RFC 9449 §7.1 (``algs``) and a
small JSON body; the application is not called. WebSocket handshakes are
checked the same way and closed with code 1008 on failure.

The URL a DPoP proof's ``htu`` must name is ``public_url`` + the request path
(set ``public_url`` behind a proxy); without it the URL is rebuilt from the
request's scheme and ``Host`` header. The client certificate for
certificate-bound tokens comes from ``client_cert(scope)``, by default the ASGI
TLS extension; behind a TLS-terminating proxy pass a function that reads the
forwarded certificate, and trust it only from the proxy.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from tokentrail.sdk.errors import VerificationError
from tokentrail.sdk.verifier import Verifier

__all__ = ["SCOPE_KEY", "TokenAuthMiddleware", "request_url", "tls_client_cert"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Where the verified token is put in the ASGI scope (also ``scope["state"]["token"]``).
SCOPE_KEY = "tokentrail.token"
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def tls_client_cert(scope: Scope) -> str | None:
    """The PEM client certificate from the ASGI TLS extension, if the server provides it."""
    tls = scope.get("extensions", {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or ()
    return str(chain[0]) if chain else None


def _header(scope: Scope, name: bytes) -> list[str]:
    return [v.decode("latin-1") for k, v in scope.get("headers", ()) if k.lower() == name]


def request_url(scope: Scope, public_url: str | None = None) -> str:
    """The URL the client addressed: what a DPoP proof's ``htu`` names (without query)."""
    raw = scope.get("raw_path")
    path: str = raw.decode("latin-1") if raw else scope.get("root_path", "") + scope["path"]
    path = path.split("?", 1)[0]
    if public_url is not None:
        return public_url.rstrip("/") + path
    scheme = {"ws": "http", "wss": "https"}.get(scope.get("scheme", "http"), scope.get("scheme"))
    hosts = _header(scope, b"host")
    if hosts:
        host = hosts[0]
    else:
        name, port = scope.get("server") or ("localhost", None)
        default = _DEFAULT_PORTS.get(str(scheme))
        host = name if port in (None, default) else f"{name}:{port}"
    return f"{scheme}://{host}{path}"


class TokenAuthMiddleware:
    """Refuses requests without a valid access token; see the module documentation."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        verifier: Verifier,
        public_url: str | None = None,
        skip_paths: Iterable[str] = (),
        skip_prefixes: Iterable[str] = (),
        client_cert: Callable[[Scope], str | None] = tls_client_cert,
    ) -> None:
        self.app = app
        self._verifier = verifier
        self._public_url = public_url
        self._skip = frozenset(skip_paths)
        self._skip_prefixes = tuple(skip_prefixes)
        self._client_cert = client_cert

    def _skipped(self, path: str) -> bool:
        return path in self._skip or (
            bool(self._skip_prefixes) and path.startswith(self._skip_prefixes)
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket") or self._skipped(scope["path"]):
            await self.app(scope, receive, send)
            return
        try:
            token = await self._verifier.averify_request(
                authorization=_header(scope, b"authorization"),
                dpop=_header(scope, b"dpop"),
                method=scope.get("method", "GET"),
                url=request_url(scope, self._public_url),
                client_cert_pem=self._client_cert(scope),
            )
        except VerificationError as exc:
            if kind == "websocket":
                await send({"type": "websocket.close", "code": 1008, "reason": exc.error or ""})
            else:
                await _deny(exc, send)
            return
        scope[SCOPE_KEY] = token
        scope.setdefault("state", {})["token"] = token
        await self.app(scope, receive, send)


async def _deny(exc: VerificationError, send: Send) -> None:
    body = json.dumps(exc.body()).encode("utf-8")
    headers = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
    headers += [
        (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in exc.headers().items()
    ]
    headers.append((b"content-length", str(len(body)).encode("ascii")))
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
