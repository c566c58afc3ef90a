"""The revocation feed: what a verifier needs to check tokens locally and fail closed.

Two endpoints, both for an access token with the scope ``tokentrail:revocations``
and the audience ``<issuer>/revocations`` (a client-credentials token of a
client registered for them; see docs/scaling.md):

``GET /revocations?since=SEQ&limit=N``
    catch-up as JSON: ``{"revocations": [{"seq", "node_id", "matters_until"}...],
    "next_since", "more", "server_time"}``, read from the table. Everything
    after ``since`` up to ``next_since`` that still matters is in the answer
    (``more``: ask again from ``next_since`` at once); the answer is complete as
    of ``server_time``.

``GET /revocations/feed`` (server-sent events)
    from ``since`` (query) or ``Last-Event-ID`` (header, as an EventSource
    reconnects), one event per revocation: ``id: <seq>`` and ``data:
    {"seq", "node_id", "matters_until"}``, then the live ones as this node's
    revocation view learns them. A keep-alive comment ``: keep-alive
    seq=<seq> staleness=<seconds>`` follows each batch and comes every
    ``feed_keepalive`` seconds, but only while the node's view is current: it
    vouches that the subscriber has every revocation committed up to
    ``staleness`` seconds ago. A node whose view is stale falls silent, and its
    subscribers' views age past their bound. The stream ends when the token
    expires or is revoked, and when the server shuts down; subscribers
    reconnect with a fresh token from their last seq.

Entries are revoked lineage node ids (a credential, a session, a token...), not
the tokens they kill: the feed grows with revocation events only. Entries whose
``matters_until`` has passed are left out.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tokentrail.errors import InvalidRequest, OAuthError
from tokentrail.oauth.access_token import lineage
from tokentrail.revocation_view import FeedEntry
from tokentrail.services import Services
from tokentrail.web.bearer import TokenRequired, authenticate_token
from tokentrail.web.responses import error_response, json_response

#: The scope a feed token must carry.
FEED_SCOPE = "tokentrail:revocations"
#: Entries per catch-up answer by default, and at most.
DEFAULT_LIMIT = 1_000
MAX_LIMIT = 10_000
#: Entries per SSE batch.
BATCH = 500


def feed_audience(issuer: str) -> str:
    """The audience a feed token must carry: ``<issuer>/revocations``."""
    return f"{issuer}/revocations"


class InsufficientScope(OAuthError):
    """RFC 6750 §3.1: the token lacks the feed scope."""

    error = "insufficient_scope"
    status = 403

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{FEED_SCOPE}"'}


class Broadcaster:
    """Wakes every feed stream of one event loop when the revocation view moves on."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Fresh events for a new serving run (each event loop needs its own)."""
        self.event = asyncio.Event()
        #: Set when the server shuts down: streams end so in-flight work can finish.
        self.closing = asyncio.Event()

    def wake(self) -> None:
        event, self.event = self.event, asyncio.Event()
        event.set()


def authorize(services: Services, request: Request) -> dict[str, Any]:
    """The claims of the request's feed token; raises OAuth errors (401, 403)."""
    endpoint = "feed"
    try:
        claims = authenticate_token(services, request)
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if feed_audience(services.settings.issuer) not in audiences:
            raise TokenRequired("the access token is not for the revocation feed (aud)")
        scope = claims.get("scope")
        if not isinstance(scope, str) or FEED_SCOPE not in scope.split():
            raise InsufficientScope(f"the revocation feed requires the scope {FEED_SCOPE}")
    except OAuthError as exc:
        services.metrics.verifications.inc(endpoint, exc.error)
        raise
    services.metrics.verifications.inc(endpoint, "ok")
    return claims


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise InvalidRequest(f"{name} must be a non-negative integer")
    return min(high, max(low, int(raw)))


def _since(request: Request) -> int:
    header = request.headers.get("last-event-id")
    if header:
        if not header.isascii() or not header.isdigit() or len(header) > 18:
            raise InvalidRequest("Last-Event-ID must be a revocation sequence number")
        return int(header)
    return _int_param(request, "since", 0, 0, 2**62)


def _read_page(services: Services, since: int, limit: int) -> tuple[list[FeedEntry], int, float]:
    now = services.clock.now()
    with services.store.read() as tx:
        page, upto = tx.revocation_page(since, limit=limit, live_at=now)
    return [FeedEntry(r.seq, r.node_id, r.matters_until) for r in page], upto, now


def _event(entry: FeedEntry) -> str:
    data = json.dumps(entry.as_dict(), separators=(",", ":"))
    return f"id: {entry.seq}\ndata: {data}\n\n"


def feed_routes(services: Services, broadcaster: Broadcaster) -> list[Route]:
    settings = services.settings
    view = services.revocation_view
    metrics = services.metrics
    keepalive = settings.feed_keepalive

    def guarded(
        endpoint: Callable[[Request], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            try:
                return await endpoint(request)
            except OAuthError as exc:
                return error_response(exc.error, exc.description, exc.status, exc.headers())

        return run

    async def catch_up(request: Request) -> Response:
        await run_in_threadpool(authorize, services, request)
        limit = _int_param(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        since = _int_param(request, "since", 0, 0, 2**62)
        entries, upto, now = await run_in_threadpool(_read_page, services, since, limit)
        return json_response(
            {
                "revocations": [e.as_dict() for e in entries],
                "next_since": upto,
                "more": len(entries) == limit,
                "server_time": now,
            },
            headers={"Cache-Control": "no-store"},
        )

    async def stream(request: Request) -> Response:
        claims = await run_in_threadpool(authorize, services, request)
        since = _since(request)
        own = frozenset(lineage(claims))
        expires = float(claims["exp"])
        return StreamingResponse(
            _events(since, own, expires),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def _events(cursor: int, own: frozenset[str], expires: float) -> AsyncIterator[str]:
        metrics.feed_subscribers.add(1)
        try:
            yield "retry: 1000\n\n"
            vouched = -math.inf
            while not broadcaster.closing.is_set():
                if services.clock.now() >= expires:
                    yield ": token expired; reconnect with a new one\n\n"
                    return
                woken = broadcaster.event
                sent = False
                while cursor < view.seq:
                    found = view.entries_after(cursor, BATCH)
                    if found is None:  # further behind than the view's memory
                        entries, cursor, _ = await run_in_threadpool(
                            _read_page, services, cursor, BATCH
                        )
                    else:
                        before = cursor
                        entries, cursor = found
                        if cursor <= before:  # pragma: no cover - the view moves seq last
                            break
                    if entries:
                        metrics.feed_events.inc(amount=len(entries))
                        yield "".join(_event(e) for e in entries)
                        sent = True
                        if any(e.node_id in own for e in entries):
                            yield ": this feed token was revoked\n\n"
                            return
                now = time.monotonic()
                if view.ready and cursor >= view.seq and (sent or now - vouched >= keepalive):
                    yield f": keep-alive seq={cursor} staleness={view.staleness():.3f}\n\n"
                    vouched = now
                wait = max(0.05, vouched + keepalive - now) if view.ready else keepalive
                closing = asyncio.ensure_future(broadcaster.closing.wait())
                moved = asyncio.ensure_future(woken.wait())
                try:
                    await asyncio.wait(
                        (moved, closing), timeout=wait, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    moved.cancel()
                    closing.cancel()
        finally:
            metrics.feed_subscribers.add(-1)

    return [
        Route("/revocations", guarded(catch_up), methods=["GET"]),
        Route("/revocations/feed", guarded(stream), methods=["GET"]),
    ]
