"""The ASGI application: one visible route table for everything tokentrail serves."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tokentrail.oauth.metadata import metadata_path, server_metadata
from tokentrail.services import Services
from tokentrail.web.admin_api import admin_routes
from tokentrail.web.oauth_routes import oauth_endpoint
from tokentrail.web.responses import error_response, json_response
from tokentrail.web.sessions_api import session_routes


def create_app(services: Services) -> Starlette:
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

    def revoke(req: Any) -> None:
        services.revocation.handle(req)

    routes = [
        Route(metadata_path(settings.issuer), get_metadata, methods=["GET"]),
        Route("/jwks.json", get_jwks, methods=["GET"]),
        Route("/healthz", health, methods=["GET"]),
        Route(
            "/oauth/token",
            oauth_endpoint(services.token.handle, max_body=limit, issuer=issuer),
            methods=["POST", "GET", "PUT", "DELETE"],
        ),
        Route(
            "/oauth/introspect",
            oauth_endpoint(services.introspection.handle, max_body=limit, issuer=issuer),
            methods=["POST", "GET", "PUT", "DELETE"],
        ),
        Route(
            "/oauth/revoke",
            oauth_endpoint(revoke, max_body=limit, issuer=issuer, empty_ok=True),
            methods=["POST", "GET", "PUT", "DELETE"],
        ),
        *admin_routes(services),
        *session_routes(services),
    ]

    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = "not_found" if exc.status_code == 404 else "invalid_request"
        return error_response(code, str(exc.detail), exc.status_code)

    async def server_error(_: Request, exc: Exception) -> Response:
        return error_response("server_error", "internal error", 500)

    return Starlette(
        routes=routes,
        exception_handlers={HTTPException: http_error, 500: server_error},
    )
