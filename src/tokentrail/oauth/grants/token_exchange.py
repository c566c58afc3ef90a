"""OAuth 2.0 Token Exchange — RFC 8693.

A client trades an access token it holds (the subject token), optionally with
its own access token as the actor token, for a new access token addressed to a
downstream audience. tokentrail only exchanges its own access tokens, and the
new token is a child of both inputs in the lineage DAG: revoking either kills
it. ``act`` (§4.1) names the current actor and nests prior ones; the path bounds
how deep the nesting may go.
"""

from __future__ import annotations

from typing import Any

from tokentrail.audit import Event
from tokentrail.detections import signalled
from tokentrail.errors import InvalidRequest, InvalidToken
from tokentrail.model import CredentialKind, Node
from tokentrail.oauth.access_token import (
    ACCESS_TOKEN_TYPE,
    JWT_TOKEN_TYPE,
    lineage,
)
from tokentrail.oauth.authority import Authority, token_response
from tokentrail.oauth.binding import Binding
from tokentrail.oauth.client_auth import AuthenticatedClient
from tokentrail.oauth.request import OAuthRequest
from tokentrail.policy.paths import DetectionKind, Grant
from tokentrail.storage.store import Tx

_ACCEPTED_TYPES = (ACCESS_TOKEN_TYPE, JWT_TOKEN_TYPE)


def act_depth(act: Any) -> int:
    """How many actors a nested ``act`` claim names."""
    depth = 0
    while isinstance(act, dict):
        depth += 1
        act = act.get("act")
    return depth


class TokenExchangeGrant:
    GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
    DEFERS_WRITE = False

    def __init__(self, authority: Authority) -> None:
        self._a = authority

    def issue(
        self, auth: AuthenticatedClient, req: OAuthRequest, binding: Binding
    ) -> dict[str, Any]:
        a = self._a
        client = auth.client
        # §2.1: the request parameters.
        subject_token = req.require("subject_token")
        if req.require("subject_token_type") not in _ACCEPTED_TYPES:
            raise InvalidRequest("subject_token_type must name an access token")
        actor_token = req.get("actor_token")
        actor_type = req.get("actor_token_type")
        if (actor_token is None) != (actor_type is None):
            raise InvalidRequest("actor_token and actor_token_type go together")
        if actor_type is not None and actor_type not in _ACCEPTED_TYPES:
            raise InvalidRequest("actor_token_type must name an access token")
        requested_type = req.get("requested_token_type")
        if requested_type not in (None, ACCESS_TOKEN_TYPE, JWT_TOKEN_TYPE):
            raise InvalidRequest("only access tokens can be requested")
        path = a.resolve_path(client, Grant.TOKEN_EXCHANGE, CredentialKind.ACCESS_TOKEN, binding)
        now = a.clock.now()
        with a.store.write() as tx:
            subject_claims, subject_node = self._validate(tx, subject_token, "subject_token")
            actor_claims = actor_node = None
            if actor_token is not None:
                actor_claims, actor_node = self._validate(tx, actor_token, "actor_token")
                # The actor is the requesting client: another party's token would let
                # it write someone else's name into act.
                if actor_claims.get("client_id") != client.id:
                    raise InvalidRequest("actor_token must be an access token of this client")
            # §4.1: the current actor, with prior actors nested inside.
            actor_sub = actor_claims["sub"] if actor_claims else client.id
            act: dict[str, Any] = {"sub": actor_sub}
            if "act" in subject_claims:
                act["act"] = subject_claims["act"]
            depth = act_depth(act)
            assert path.max_delegation_depth is not None  # the map loader insists on it
            if depth > path.max_delegation_depth:
                raise InvalidRequest(
                    f"delegation depth {depth} exceeds the bound "
                    f"{path.max_delegation_depth} of path {path.id}"
                )
            # Down-scope only: never more than the subject token carried.
            subject_scope = str(subject_claims.get("scope", "")).split()
            allowed_scope = [s for s in subject_scope if s in client.scopes]
            scope = a.grant_scope(req.get("scope"), allowed_scope, path=path)
            audience = a.grant_audience(
                req.get_all("resource") + req.get_all("audience"),
                list(client.audiences),
                path=path,
            )
            parents = [subject_node] + ([actor_node] if actor_node is not None else [])
            expires_at = min(
                float(subject_claims["exp"]),
                float(actor_claims["exp"]) if actor_claims else float("inf"),
            )
            minted = a.mint_access_token(
                tx,
                path=path,
                client=client,
                subject=subject_claims["sub"],
                parents=parents,
                audience=audience,
                scope=scope,
                now=now,
                event=Event.TOKEN_EXCHANGED,
                binding=binding,
                act=act,
                expires_at=expires_at,
            )
        # §2.2.1: issued_token_type is required.
        return token_response(minted, now=now, issued_token_type=ACCESS_TOKEN_TYPE)

    def _validate(self, tx: Tx, token: str, name: str) -> tuple[dict[str, Any], Node]:
        """§2.1: an input must be one of our live access tokens, else invalid_request."""
        try:
            claims = self._a.tokens.verify(token)
        except InvalidToken as exc:
            raise InvalidRequest(f"{name} is not a valid access token") from exc
        if tx.first_revoked(lineage(claims)) is not None:
            raise signalled(
                InvalidRequest(f"{name} has been revoked"),
                DetectionKind.REVOKED_TOKEN_USE,
                tx.get_node(claims["jti"]),
                via="token_exchange",
            )
        node = tx.get_node(claims["jti"])
        if node is None:
            raise InvalidRequest(f"{name} is not a valid access token")
        return claims, node
