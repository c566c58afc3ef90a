"""The token endpoint — RFC 6749 §3.2: grant dispatch after client authentication.

Before a grant runs, the endpoint establishes what the new tokens will be bound
to: the key of a valid DPoP proof (RFC 9449 §5) or the client certificate of a
mutual-TLS client (RFC 8705 §3). A request cannot prove both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tokentrail.errors import InvalidRequest, OAuthError, UnsupportedGrantType
from tokentrail.oauth.authority import Authority
from tokentrail.oauth.binding import UNBOUND, Binding
from tokentrail.oauth.client_auth import AuthenticatedClient, ClientAuthenticator
from tokentrail.oauth.dpop import DPoPValidator, Proof
from tokentrail.oauth.grants import Pending, TokenGrant
from tokentrail.oauth.grants.client_credentials import ClientCredentialsGrant
from tokentrail.oauth.grants.jwt_bearer import JwtBearerGrant
from tokentrail.oauth.grants.recovery import RecoveryGrant
from tokentrail.oauth.grants.refresh_token import RefreshTokenGrant
from tokentrail.oauth.grants.token_exchange import TokenExchangeGrant
from tokentrail.oauth.request import OAuthRequest
from tokentrail.storage.store import Tx


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
        """The response body, or (for a grant that defers it) its write still to run."""
        grant_type = req.require("grant_type")
        grant = self.grants.get(grant_type)
        if grant is None:
            raise UnsupportedGrantType(f"grant_type {grant_type!r} is not supported")
        auth = self._authenticator.authenticate(req)
        try:
            binding, proof = self.binding(req, auth)
            if proof is not None and not grant.DEFERS_WRITE:
                self._dpop.record(proof)  # recorded before anything is issued
            outcome = grant.issue(auth, req, binding)
        except OAuthError as exc:
            self._refused(exc, auth)
            raise
        if not isinstance(outcome, Pending):
            return outcome
        write = outcome.write
        if proof is not None:
            write = _recording(self._dpop, proof, outcome.write)
        return Pending(write, outcome.after, lambda exc: self._refused(exc, auth))

    def _refused(self, exc: OAuthError, auth: AuthenticatedClient) -> None:
        # The refused transaction rolled back; the detection commits on its own.
        if exc.signal is not None:
            self._detections.fire(
                exc.signal.kind,
                node=exc.signal.node,
                client_id=auth.client.id,
                team_id=auth.client.team_id,
                evidence=exc.signal.evidence,
            )

    def binding(self, req: OAuthRequest, auth: AuthenticatedClient) -> tuple[Binding, Proof | None]:
        """What the issued tokens are bound to (RFC 9449 §5, RFC 8705 §3), and the
        checked DPoP proof whose jti is still to be recorded."""
        x5t = auth.certificate_thumbprint
        if req.dpop is not None:
            if x5t is not None:
                raise InvalidRequest("use either DPoP or a certificate binding, not both")
            proof = self._dpop.check(req.dpop, method="POST", url=req.url)
            return Binding(jkt=proof.jkt), proof
        if x5t is not None:
            return Binding(x5t=x5t), None
        return UNBOUND, None


def _recording(
    dpop: DPoPValidator, proof: Proof, write: Callable[[Tx], dict[str, Any]]
) -> Callable[[Tx], dict[str, Any]]:
    """``write``, after recording the DPoP proof's jti in the same transaction: a
    replayed proof rolls back the tokens it would have bound."""

    def recording(tx: Tx) -> dict[str, Any]:
        dpop.remember(tx, proof)
        return write(tx)

    return recording
