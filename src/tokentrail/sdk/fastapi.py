"""FastAPI dependency: a route that needs a valid tokentrail access token (and scopes).

::

    from fastapi import Depends, FastAPI
    from tokentrail.sdk.fastapi import RequireToken

    read = RequireToken(verifier, scopes=["read"])

    @app.get("/items")
    async def items(token: VerifiedToken = Depends(read)) -> ...

The dependency verifies the request's ``Authorization`` and ``DPoP`` headers
with :meth:`Verifier.averify_request <tokentrail.sdk.verifier.Verifier.averify_request>`
(or takes the token :class:`~tokentrail.sdk.asgi.TokenAuthMiddleware` already
verified), keeps it in the request scope so that several dependencies on one
route verify once (a DPoP proof is single-use), then checks the scopes. A
failure is an ``HTTPException`` with the error's status, its
``WWW-Authenticate`` challenge and ``{"error", "error_description"}`` as detail.

This is the only tokentrail module that imports FastAPI (``pip install tokentrail[fastapi]``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from fastapi import HTTPException, Request

from tokentrail.sdk.asgi import SCOPE_KEY, Scope, request_url, tls_client_cert
from tokentrail.sdk.errors import VerificationError
from tokentrail.sdk.verifier import VerifiedToken, Verifier, require_scope

__all__ = ["RequireToken", "http_exception"]


def http_exception(exc: VerificationError) -> HTTPException:
    """The FastAPI error response for a refused token."""
    return HTTPException(status_code=exc.status, detail=exc.body(), headers=exc.headers())


class RequireToken:
    """A dependency returning the request's :class:`VerifiedToken` holding ``scopes``."""

    def __init__(
        self,
        verifier: Verifier,
        scopes: Iterable[str] = (),
        *,
        public_url: str | None = None,
        client_cert: Callable[[Scope], str | None] = tls_client_cert,
    ) -> None:
        self._verifier = verifier
        self._scopes = tuple(scopes)
        self._public_url = public_url
        self._client_cert = client_cert

    async def __call__(self, request: Request) -> VerifiedToken:
        token = request.scope.get(SCOPE_KEY)
        try:
            if not isinstance(token, VerifiedToken):
                token = await self._verifier.averify_request(
                    authorization=request.headers.getlist("authorization"),
                    dpop=request.headers.getlist("dpop"),
                    method=request.method,
                    url=request_url(request.scope, self._public_url),
                    client_cert_pem=self._client_cert(request.scope),
                )
                request.scope[SCOPE_KEY] = token
            return require_scope(token, *self._scopes)
        except VerificationError as exc:
            exc.realm = exc.realm or self._verifier.realm
            exc.algs = exc.algs or self._verifier.algs
            raise http_exception(exc) from exc
