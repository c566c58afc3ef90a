"""Token Revocation — RFC 7009, cascading through lineage.

Revoking an access token revokes its node, so every token exchanged from it
dies too. Revoking a refresh token revokes its whole session (§2.1: the server
SHOULD also invalidate the access tokens of the same grant). Unknown, malformed
or foreign tokens get 200 like real ones (§2.2): the response never tells a
caller whether a token exists. A storage failure is 503, never a false 200:
the answer is sent only once the revocation's transaction (possibly shared
with other requests' writes, see :mod:`tokentrail.storage.group_commit`) is
durable.
"""

from __future__ import annotations

import contextlib
from typing import Any

from tokentrail import crypto
from tokentrail.errors import InvalidToken, NotFound
from tokentrail.lineage import revoke
from tokentrail.model import NodeKind
from tokentrail.oauth.access_token import looks_like_jwt
from tokentrail.oauth.authority import Authority
from tokentrail.oauth.client_auth import ClientAuthenticator
from tokentrail.oauth.grants import Pending
from tokentrail.oauth.refresh_tokens import looks_like_refresh_token
from tokentrail.oauth.request import OAuthRequest
from tokentrail.storage.store import Tx


class RevocationEndpoint:
    def __init__(self, authority: Authority, authenticator: ClientAuthenticator) -> None:
        self._a = authority
        self._authenticator = authenticator

    def handle(self, req: OAuthRequest) -> None:
        """Revoke, with the revocation committed when this returns."""
        outcome = self.respond(req)
        if outcome is not None:
            outcome.run(self._a.store)

    def respond(self, req: OAuthRequest) -> Pending | None:
        """The revocation's write still to run (it may share a group commit), or
        None when there is nothing to revoke (§2.2: answered 200 all the same)."""
        auth = self._authenticator.authenticate(req)
        token = req.require("token")
        # §2.1: token_type_hint is only a lookup hint; both kinds are searched.
        target = self._target(token, auth.client.id)
        if target is None:
            return None
        now = self._a.clock.now()
        horizon = self._a.horizon

        def write(tx: Tx) -> dict[str, Any]:
            # A token signed by us whose node is gone (compacted after expiry) is
            # unknown: §2.2, 200 all the same. NotFound is raised before any write.
            with contextlib.suppress(NotFound):
                revoke(
                    tx,
                    target,
                    reason="revoked by client (RFC 7009)",
                    actor=f"client:{auth.client.id}",
                    now=now,
                    horizon=horizon,
                )
            return {}

        return Pending(write)

    def _target(self, token: str, client_id: str) -> str | None:
        """The node to revoke, or None when the token is not this client's."""
        if looks_like_jwt(token):
            try:
                claims = self._a.tokens.verify(token, allow_expired=True)
            except InvalidToken:
                return None
            return str(claims["jti"]) if claims.get("client_id") == client_id else None
        if looks_like_refresh_token(token):
            with self._a.store.read() as tx:
                node = tx.get_node_by_token_hash(crypto.hash_secret(token))
            if (
                node is None
                or node.kind is not NodeKind.REFRESH_TOKEN
                or node.client_id != client_id
            ):
                return None
            return node.parents[0]  # the session: the whole grant dies
        return None
