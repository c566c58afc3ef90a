"""The ASGI application: one visible route table for everything tokentrail serves."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from tokentrail.oauth.grants.client_credentials import ClientCredentialsGrant
from tokentrail.oauth.metadata import metadata_path, server_metadata
from tokentrail.services import Services
from tokentrail.web.admin_api import admin_routes
from tokentrail.web.feed import Broadcaster, feed_routes
from tokentrail.web.oauth_routes import OAuthFront, OAuthRoute
from tokentrail.web.ops import ops_routes, start_operations
from tokentrail.web.recovery_api import recovery_routes
from tokentrail.web.responses import error_response, json_response
from tokentrail.web.sessions_api import session_routes
from tokentrail.web.tls import ClientCertificateMiddleware, middleware_options, scope_client_cert

log = logging.getLogger("tokentrail")

GRANT_CC = ClientCredentialsGrant.GRANT_TYPE


def create_app(services: Services) -> ASGIApp:

    settings = services.settings
    limit = settings.max_body_bytes
    issuer = settings.issuer
    metadata = server_metadata(settings.issuer, list(services.token.grants), settings.signing_alg)

    async def get_metadata(_: Request) -> Response:
        return json_response(metadata, headers={"Cache-Control": "max-age=300"})

    async def get_jwks(_: Request) -> Response:
        return json_response(services.keys.jwks(), headers={"Cache-Control": "max-age=60"})

    async def health(_: Request) -> Response:
        return json_response({"status": "ok"})

    broadcaster = Broadcaster()

    routes = [
        Route(metadata_path(settings.issuer), get_metadata, methods=["GET"]),
        Route("/jwks.json", get_jwks, methods=["GET"]),
        Route("/healthz", health, methods=["GET"]),
        *admin_routes(services),
        *recovery_routes(services),
        *session_routes(services),
        *ops_routes(services),  # /readyz, /metrics
        *feed_routes(services, broadcaster),  # /revocations, /revocations/feed
    ]

    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = "not_found" if exc.status_code == 404 else "invalid_request"
        # 405 carries Allow (RFC 9110 §15.5.6): keep the headers Starlette set.
        return error_response(code, str(exc.detail), exc.status_code, dict(exc.headers or {}))

    async def server_error(_: Request, exc: Exception) -> Response:
        return error_response("server_error", "internal error", 500)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        """While serving, sign a checkpoint of the audit ledger every interval."""

        async def checkpoints() -> None:
            while True:
                await asyncio.sleep(settings.checkpoint_interval)
                try:
                    await run_in_threadpool(services.ledger.checkpoint)
                except Exception:  # keep serving; the next round retries
                    log.exception("audit checkpoint failed")

        async def notifications() -> None:
            while True:
                await asyncio.sleep(settings.notify_interval)
                try:
                    await run_in_threadpool(services.dispatcher.run_once)
                except Exception:  # keep serving; undelivered messages stay queued
                    log.exception("notification dispatch failed")

        tasks = [asyncio.create_task(checkpoints()), asyncio.create_task(notifications())]
        # The revocation view's follower, the janitor, ending feed streams on shutdown.
        stop_operations = await start_operations(services, broadcaster)
        try:
            yield
        finally:
            await stop_operations()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    rest = Starlette(
        lifespan=lifespan,
        routes=routes,
        exception_handlers={HTTPException: http_error, 500: server_error},
    )
    # On SQLite a lookup is microseconds: cheaper on the event loop than a hop to the
    # thread pool (see web/oauth_routes.py). On PostgreSQL each is a network round trip.
    reads_inline = services.store.dialect == "sqlite"
    oauth = OAuthFront(
        rest,
        {
            "/oauth/token": OAuthRoute(
                services.metrics.instrument_token(services.token.respond, services.token.grants),
                # The client_credentials hot path: reads, then a write (with the DPoP
                # proof's jti, if any) handed to the group committer.
                inline=lambda req: reads_inline and req.get("grant_type") == GRANT_CC,
            ),
            "/oauth/introspect": OAuthRoute(
                services.metrics.instrument_introspection(services.introspection.handle),
                inline=lambda _: reads_inline,
            ),
            "/oauth/revoke": OAuthRoute(
                services.revocation.respond, empty_ok=True, inline=lambda _: reads_inline
            ),
        },
        store=services.store,
        issuer=issuer,
        max_body=limit,
        client_cert=scope_client_cert,
    )
    # RFC 8705: the client certificate of each request, from TLS or a trusted proxy.
    return ClientCertificateMiddleware(oauth, **middleware_options(services))
