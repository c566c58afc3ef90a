"""One exception tree for tokentrail.

::

    TokentrailError
    ├── OAuthError                 (RFC 6749 §5.2 error response; ``error``, ``status``)
    │   ├── InvalidRequest         400 invalid_request
    │   ├── InvalidClient          401 invalid_client (+ WWW-Authenticate)
    │   ├── InvalidGrant           400 invalid_grant
    │   ├── UnauthorizedClient     400 unauthorized_client
    │   ├── UnsupportedGrantType   400 unsupported_grant_type
    │   ├── InvalidScope           400 invalid_scope
    │   ├── InvalidTarget          400 invalid_target (RFC 8693 §2.2.2)
    │   ├── UnsupportedTokenType   400 unsupported_token_type (RFC 7009 §2.2.1)
    │   ├── RequestTooLarge        413 invalid_request
    │   └── TemporarilyUnavailable 503 temporarily_unavailable
    ├── InvalidToken               opaque: every verification failure looks the same
    ├── PathMapError               the issuance-path map is malformed
    ├── NotFound                   an id names nothing
    ├── Conflict                   the object already exists
    └── Forbidden                  the admin key may not do this

``description`` is public text for the response body; ``detail`` is internal
context for the audit ledger and logs and never reaches a client.
"""

from __future__ import annotations

import re
from typing import Any

_DESCRIPTION_OK = re.compile(r"^[\x20-\x21\x23-\x5B\x5D-\x7E]*$")


class TokentrailError(Exception):
    """Root of every error tokentrail raises on purpose."""


class OAuthError(TokentrailError):
    """An error answered in the RFC 6749 §5.2 format."""

    error = "invalid_request"
    status = 400
    #: A detection this refusal signals (see :mod:`tokentrail.detections`), fired by
    #: the endpoint after the refused transaction has rolled back.
    signal: Any = None

    def __init__(self, description: str = "", *, detail: str = "") -> None:
        # RFC 6749 §5.2: error_description is limited to %x20-21 / %x23-5B / %x5D-7E.
        if not _DESCRIPTION_OK.match(description):
            description = "".join(c if _DESCRIPTION_OK.match(c) else "?" for c in description)
        super().__init__(description or self.error)
        self.description = description
        self.detail = detail

    def body(self) -> dict[str, str]:
        out = {"error": self.error}
        if self.description:
            out["error_description"] = self.description
        return out

    def headers(self) -> dict[str, str]:
        return {}


class InvalidRequest(OAuthError):
    """The request is missing a parameter, repeats one, or is otherwise malformed."""

    error = "invalid_request"


class InvalidClient(OAuthError):
    """Client authentication failed (unknown client, no or wrong credentials)."""

    error = "invalid_client"
    status = 401

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Basic realm="tokentrail", error="invalid_client"'}


class InvalidGrant(OAuthError):
    """The grant or refresh token is invalid, expired, revoked or not the client's."""

    error = "invalid_grant"


class UnauthorizedClient(OAuthError):
    """The client may not use this grant type or issuance path."""

    error = "unauthorized_client"


class UnsupportedGrantType(OAuthError):
    """The grant type is not supported by this server."""

    error = "unsupported_grant_type"


class InvalidScope(OAuthError):
    """The requested scope is invalid, unknown, or exceeds what was granted."""

    error = "invalid_scope"


class InvalidTarget(OAuthError):
    """The requested audience or resource is not one the server will issue for."""

    error = "invalid_target"


class UnsupportedTokenType(OAuthError):
    """RFC 7009 §2.2.1: the server cannot revoke this type of token."""

    error = "unsupported_token_type"


class RequestTooLarge(OAuthError):
    """The request body is larger than the configured limit."""

    error = "invalid_request"
    status = 413


class TemporarilyUnavailable(OAuthError):
    """The server cannot handle the request now (for example, storage failed)."""

    error = "temporarily_unavailable"
    status = 503


class InvalidToken(TokentrailError):
    """A token failed verification. Deliberately says nothing about why."""

    def __init__(self, detail: str = "") -> None:
        super().__init__("invalid token")
        self.detail = detail


class PathMapError(TokentrailError):
    """The issuance-path map is malformed or inconsistent."""


class NotFound(TokentrailError):
    """An identifier names no object."""


class Conflict(TokentrailError):
    """The object already exists or the change contradicts current state."""


class Forbidden(TokentrailError):
    """The caller may not perform this action."""
