"""Session self-service: a person lists and ends their own sessions with their token.

``GET /sessions`` lists the caller's live sessions; ``POST /sessions/{id}/end``
ends one of them; ``POST /sessions/end-all`` signs out everywhere. The caller
is the ``sub`` of the presented access token (see :mod:`tokentrail.web.bearer`).
Operators do the same for any subject through the admin API.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tokentrail.errors import NotFound, OAuthError
from tokentrail.services import Services
from tokentrail.web.bearer import authenticate_token
from tokentrail.web.responses import error_response, json_response

Op = Callable[[Services, dict[str, Any], Request], Any]


def _endpoint(services: Services, op: Op) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            result = await run_in_threadpool(_run, services, op, request)
        except OAuthError as exc:
            return error_response(exc.error, exc.description, exc.status, exc.headers())
        except NotFound as exc:
            return error_response("not_found", str(exc), 404)
        return json_response(result)

    return endpoint


def _run(services: Services, op: Op, request: Request) -> Any:
    claims = authenticate_token(services, request)
    return op(services, claims, request)


def _list(s: Services, claims: dict[str, Any], _r: Request) -> Any:
    return {"sessions": [x.as_dict() for x in s.sessions.live(claims["sub"])]}


def _end(s: Services, claims: dict[str, Any], request: Request) -> Any:
    session_id = request.path_params["session_id"]
    info = s.sessions.get(session_id)
    if info.subject != claims["sub"]:
        raise NotFound(f"no session {session_id!r}")  # never reveal others' sessions
    ended = s.sessions.end(session_id, actor=f"subject:{claims['sub']}")
    return {"session_id": session_id, "ended": ended}


def _end_all(s: Services, claims: dict[str, Any], _r: Request) -> Any:
    count = s.sessions.end_all(claims["sub"], actor=f"subject:{claims['sub']}")
    return {"ended": count}


def session_routes(services: Services) -> list[Route]:
    return [
        Route("/sessions", _endpoint(services, _list), methods=["GET"]),
        Route("/sessions/end-all", _endpoint(services, _end_all), methods=["POST"]),
        Route("/sessions/{session_id}/end", _endpoint(services, _end), methods=["POST"]),
    ]
