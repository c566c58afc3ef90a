"""The OAuth endpoints over HTTP, as plain ASGI in front of the Starlette app.

``/oauth/token``, ``/oauth/introspect`` and ``/oauth/revoke`` are what every
client and resource server calls, so they skip Starlette's routing, exception
middleware and ``Request`` objects (docs/benchmarks.md, "The HTTP path"): the
body is read with a hard size limit (413 beyond it), parsed by
:meth:`OAuthRequest.parse`, handed to the endpoint, and answered in JSON. Every
failure is an RFC 6749 §5.2 JSON error; nothing reaches the client as a 500
page or a traceback. Every other path goes on to the Starlette app.

Where the handler runs. Handlers are synchronous and may block (a write waits
for its commit and the shared WAL flush), so by default they run in the thread
pool. A route may instead be tried on the event loop first (``inline``): reads
there cost microseconds on SQLite, and a thread hop costs more than the whole
introspection. The attempt runs under :meth:`Store.no_writes`; the moment the
handler would open a write transaction (an audited failure, a detection), it
is abandoned with :class:`WriteWouldBlock` before anything was written, and the
request runs again, from the start, in the thread pool.

A handler may answer with a :class:`~tokentrail.oauth.grants.Pending`: the
durable half of its response, which goes to the store's group committer
(:mod:`tokentrail.storage.group_commit`) and is awaited without holding a
thread; the client is answered once its transaction is durable.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from tokentrail.errors import OAuthError, RequestTooLarge
from tokentrail.oauth.grants import Pending
from tokentrail.oauth.request import OAuthRequest
from tokentrail.storage.store import Store, WriteWouldBlock
from tokentrail.web.responses import NO_STORE, error_response

log = logging.getLogger("tokentrail.http")

#: What :func:`~tokentrail.web.responses.json_response` sends with a JSON body.
_JSON_HEADERS = [
    (b"content-type", b"application/json"),
    *((k.lower().encode(), v.encode()) for k, v in NO_STORE.items()),
]

Handler = Callable[[OAuthRequest], Any]


def never(_: OAuthRequest) -> bool:
    return False


@dataclass(frozen=True)
class OAuthRoute:
    """One OAuth endpoint: its handler and where the handler may run."""

    handler: Handler
    #: A successful call returns nothing: answer 200 with an empty body (RFC 7009 §2.2).
    empty_ok: bool = False
    #: Whether a request may be tried on the event loop first (see the module notes).
    inline: Callable[[OAuthRequest], bool] = never


async def read_body(request: Request, limit: int) -> bytes:
    """A Starlette request's body, refused beyond ``limit`` bytes (admin API)."""
    return await _receive_body(request.receive, request.headers.get("content-length"), limit)


async def _receive_body(receive: Receive, declared: str | bytes | None, limit: int) -> bytes:
    """The body from ASGI messages: 413 (RequestTooLarge) beyond ``limit`` bytes, by the
    declared length or by what arrives; a disconnect ends it."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"request body exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(f"request body exceeds {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


class OAuthFront:
    """ASGI app: the OAuth routes by exact path, everything else to ``app``."""

    def __init__(
        self,
        app: ASGIApp,
        routes: dict[str, OAuthRoute],
        *,
        store: Store,
        issuer: str,
        max_body: int,
        client_cert: Callable[[Scope], str | None],
    ) -> None:
        self.app = app
        self._routes = routes
        self._store = store
        self._issuer = issuer
        self._max_body = max_body
        self._client_cert = client_cert

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self._routes.get(scope["path"]) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        response = await self._respond(route, scope, receive)
        if isinstance(response, bytes):  # the success body: sent without a Response object
            headers = [*_JSON_HEADERS, (b"content-length", str(len(response)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": response})
            return
        await response(scope, receive, send)

    async def _respond(self, route: OAuthRoute, scope: Scope, receive: Receive) -> Response | bytes:
        if scope["method"] != "POST":
            return error_response(
                "invalid_request", "this endpoint accepts POST only", 405, {"Allow": "POST"}
            )
        path = scope["path"]
        try:
            req = await self._parse(scope, receive)
            result = await self._run(route, req)
        except OAuthError as exc:
            return error_response(exc.error, exc.description, exc.status, exc.headers())
        except SQLAlchemyError:
            log.exception("storage failure on %s", path)
            return error_response(
                "temporarily_unavailable",
                "storage is unavailable; retry later",
                503,
                {"Retry-After": "1"},
            )
        except Exception:
            log.exception("unexpected failure on %s", path)
            return error_response("server_error", "internal error", 500)
        if route.empty_ok and not result:
            return Response(status_code=200, headers={"Cache-Control": "no-store"})
        return json.dumps(result, separators=(",", ":")).encode()

    async def _parse(self, scope: Scope, receive: Receive) -> OAuthRequest:
        content_type = authorization = length = None
        dpop: list[str] = []
        for key, value in scope["headers"]:
            if key == b"content-type":
                content_type = content_type or value.decode("latin-1")
            elif key == b"authorization":
                authorization = authorization or value.decode("latin-1")
            elif key == b"dpop":
                dpop.append(value.decode("latin-1"))
            elif key == b"content-length":
                length = length or value
        body = await _receive_body(receive, length, self._max_body)
        client = scope.get("client")
        return OAuthRequest.parse(
            body,
            content_type=content_type,
            authorization=authorization,
            dpop=dpop or None,
            url=self._issuer + scope["path"],
            client_cert=self._client_cert(scope),
            client_ip=client[0] if client else None,
        )

    async def _run(self, route: OAuthRoute, req: OAuthRequest) -> Any:
        result = await self._call(route, req)
        if isinstance(result, Pending):
            # Its write joins the next group commit; answered once that is durable.
            try:
                body = await self._store.committer.commit(result.write)
            except OAuthError as exc:
                await run_in_threadpool(result.refuse, exc)  # a detection may write
                raise
            return result.finish(body)
        return result

    async def _call(self, route: OAuthRoute, req: OAuthRequest) -> Any:
        if route.inline(req):
            try:
                with self._store.no_writes():
                    return route.handler(req)
            except WriteWouldBlock:
                pass  # nothing was written: run it again where it may block
        return await run_in_threadpool(route.handler, req)
