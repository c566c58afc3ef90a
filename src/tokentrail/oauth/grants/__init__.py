"""Grants of the token endpoint, one module each."""

from __future__ import annotations

from typing import Any, Protocol

from tokentrail.oauth.binding import Binding
from tokentrail.oauth.client_auth import AuthenticatedClient
from tokentrail.oauth.request import OAuthRequest


class TokenGrant(Protocol):
    """A grant type: validates its parameters and issues through the authority."""

    GRANT_TYPE: str

    def issue(
        self, auth: AuthenticatedClient, req: OAuthRequest, binding: Binding
    ) -> dict[str, Any]: ...
