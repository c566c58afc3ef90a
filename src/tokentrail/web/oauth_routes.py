"""The OAuth endpoints over HTTP: a lean body reader, then the endpoint, then JSON.

Bodies are read with a hard size limit (413 beyond it) and parsed with the
standard library's form parser: the hot paths do no framework form handling.
Every failure is an RFC 6749 §5.2 JSON error; nothing reaches the client as a
500 page or a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from tokentrail.errors import OAuthError, RequestTooLarge
from tokentrail.oauth.request import OAuthRequest
from tokentrail.web.responses import error_response, json_response

log = logging.getLogger("tokentrail.http")

Handler = Callable[[OAuthRequest], Any]


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"request body exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(f"request body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def oauth_endpoint(
    handler: Handler,
    *,
    max_body: int,
    issuer: str,
    client_cert: Callable[[Request], str | None] | None = None,
    empty_ok: bool = False,
) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a synchronous OAuth handler as an ASGI endpoint with RFC error handling."""

    async def endpoint(request: Request) -> Response:
        if request.method != "POST":
            return error_response(
                "invalid_request", "this endpoint accepts POST only", 405, {"Allow": "POST"}
            )
        try:
            body = await read_body(request, max_body)
            req = OAuthRequest.parse(
                body,
                content_type=request.headers.get("content-type"),
                authorization=request.headers.get("authorization"),
                dpop=request.headers.getlist("dpop") or None,
                url=issuer + request.url.path,
                client_cert=client_cert(request) if client_cert is not None else None,
                client_ip=request.client.host if request.client else None,
            )
            result = await run_in_threadpool(handler, req)
        except OAuthError as exc:
            return error_response(exc.error, exc.description, exc.status, exc.headers())
        except SQLAlchemyError:
            log.exception("storage failure on %s", request.url.path)
            return error_response(
                "temporarily_unavailable",
                "storage is unavailable; retry later",
                503,
                {"Retry-After": "1"},
            )
        except Exception:
            log.exception("unexpected failure on %s", request.url.path)
            return error_response("server_error", "internal error", 500)
        if empty_ok and result is None:
            return Response(status_code=200, headers={"Cache-Control": "no-store"})
        return json_response(result)

    return endpoint
