"""The token endpoint — RFC 6749 §3.2: grant dispatch after client authentication.

Before a grant runs, the endpoint establishes what the new tokens will be bound
to: the key of a valid DPoP proof (RFC 9449 §5) or the client certificate of a
mutual-TLS client (RFC 8705 §3). A request cannot prove both.
"""

from __future__ import annotations

from typing import Any

from tokentrail.errors import InvalidRequest, OAuthError, UnsupportedGrantType
from tokentrail.oauth.authority import Authority
from tokentrail.oauth.binding import UNBOUND, Binding
from tokentrail.oauth.client_auth import AuthenticatedClient, ClientAuthenticator
from tokentrail.oauth.dpop import DPoPValidator
from tokentrail.oauth.grants import Pending, TokenGrant
from tokentrail.oauth.grants.client_credentials import ClientCredentialsGrant
from tokentrail.oauth.grants.jwt_bearer import JwtBearerGrant
from tokentrail.oauth.grants.recovery import RecoveryGrant
from tokentrail.oauth.grants.refresh_token import RefreshTokenGrant
from tokentrail.oauth.grants.token_exchange import TokenExchangeGrant
from tokentrail.oauth.request import OAuthRequest


class TokenEndpoint:
    def __init__(
        self, authority: Authority, authenticator: ClientAuthenticator, dpop: DPoPValidator
    ) -> None:
        self._authenticator = authenticator
        self._dpop = dpop
        self._store = authority.store
        self._detections = authority.detections
        grants: list[TokenGrant] = [
            ClientCredentialsGrant(authority),
            JwtBearerGrant(authority),
            RefreshTokenGrant(authority),
            TokenExchangeGrant(authority),
            RecoveryGrant(authority),
        ]
        self.grants = {g.GRANT_TYPE: g for g in grants}

    def handle(self, req: OAuthRequest) -> dict[str, Any]:
        """The response body, with everything it issued committed."""
        outcome = self.respond(req)
        return outcome.run(self._store) if isinstance(outcome, Pending) else outcome

    def respond(self, req: OAuthRequest) -> dict[str, Any] | Pending:
        """The response body, or (for a grant that defers it) its write still to run.

        A pending write raises no signalled errors: detections are fired here,
        for refusals decided before the write.
        """
        grant_type = req.require("grant_type")
        grant = self.grants.get(grant_type)
        if grant is None:
            raise UnsupportedGrantType(f"grant_type {grant_type!r} is not supported")
        auth = self._authenticator.authenticate(req)
        try:
            return grant.issue(auth, req, self.binding(req, auth))
        except OAuthError as exc:
            # The refused transaction rolled back; the detection commits on its own.
            if exc.signal is not None:
                self._detections.fire(
                    exc.signal.kind,
                    node=exc.signal.node,
                    client_id=auth.client.id,
                    team_id=auth.client.team_id,
                    evidence=exc.signal.evidence,
                )
            raise

    def binding(self, req: OAuthRequest, auth: AuthenticatedClient) -> Binding:
        """What the issued tokens are bound to (RFC 9449 §5, RFC 8705 §3)."""
        x5t = auth.certificate_thumbprint
        if req.dpop is not None:
            if x5t is not None:
                raise InvalidRequest("use either DPoP or a certificate binding, not both")
            proof = self._dpop.validate(req.dpop, method="POST", url=req.url)
            return Binding(jkt=proof.jkt)
        if x5t is not None:
            return Binding(x5t=x5t)
        return UNBOUND
