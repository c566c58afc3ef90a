"""The token endpoint — RFC 6749 §3.2: grant dispatch after client authentication."""

from __future__ import annotations

from typing import Any

from tokentrail.errors import UnsupportedGrantType
from tokentrail.oauth.authority import Authority
from tokentrail.oauth.client_auth import ClientAuthenticator
from tokentrail.oauth.grants import TokenGrant
from tokentrail.oauth.grants.client_credentials import ClientCredentialsGrant
from tokentrail.oauth.grants.jwt_bearer import JwtBearerGrant
from tokentrail.oauth.grants.refresh_token import RefreshTokenGrant
from tokentrail.oauth.grants.token_exchange import TokenExchangeGrant
from tokentrail.oauth.request import OAuthRequest


class TokenEndpoint:
    def __init__(self, authority: Authority, authenticator: ClientAuthenticator) -> None:
        self._authenticator = authenticator
        grants: list[TokenGrant] = [
            ClientCredentialsGrant(authority),
            JwtBearerGrant(authority),
            RefreshTokenGrant(authority),
            TokenExchangeGrant(authority),
        ]
        self.grants = {g.GRANT_TYPE: g for g in grants}

    def handle(self, req: OAuthRequest) -> dict[str, Any]:
        grant_type = req.require("grant_type")
        grant = self.grants.get(grant_type)
        if grant is None:
            raise UnsupportedGrantType(f"grant_type {grant_type!r} is not supported")
        auth = self._authenticator.authenticate(req)
        return grant.issue(auth, req)
