"""JSON responses shared by the OAuth endpoints and the admin API."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

#: RFC 6749 §5.1: token responses (and errors) must not be cached.
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":")),
        status_code=status,
        media_type="application/json",
        headers={**NO_STORE, **(headers or {})},
    )


def error_response(
    error: str, description: str, status: int, headers: dict[str, str] | None = None
) -> Response:
    body = {"error": error}
    if description:
        body["error_description"] = description
    return json_response(body, status, headers)
