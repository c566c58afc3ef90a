"""Client Credentials Grant — RFC 6749 §4.4.

The client's own credential is the input; the access token's lineage parent is
that credential node, so revoking (or rotating out) the credential kills every
token minted from it.
"""

from __future__ import annotations

from typing import Any

from tokentrail.audit import Event
from tokentrail.errors import InvalidClient, UnauthorizedClient
from tokentrail.oauth.authority import Authority, token_response
from tokentrail.oauth.binding import Binding
from tokentrail.oauth.client_auth import AuthenticatedClient
from tokentrail.oauth.grants import Pending
from tokentrail.oauth.request import OAuthRequest
from tokentrail.policy.paths import Grant
from tokentrail.storage.store import Tx


class ClientCredentialsGrant:
    GRANT_TYPE = "client_credentials"
    #: issue() answers with its write still to run (Pending): it may join a group commit.
    DEFERS_WRITE = True

    def __init__(self, authority: Authority) -> None:
        self._a = authority

    def issue(self, auth: AuthenticatedClient, req: OAuthRequest, binding: Binding) -> Pending:
        a = self._a
        client = auth.client
        credential = auth.credential
        if credential is None:
            # §4.4: only confidential clients may use this grant.
            raise UnauthorizedClient("public clients cannot use client_credentials")
        # §4.4.2: which declared path carries this request, and what it allows.
        path = a.resolve_path(client, Grant.CLIENT_CREDENTIALS, auth.input_kind, binding)
        scope = a.grant_scope(req.get("scope"), list(client.scopes), path=path)
        audience = a.grant_audience(
            req.get_all("resource") + req.get_all("audience"), list(client.audiences), path=path
        )
        now = a.clock.now()

        cred_node = auth.credential_node  # read with the credential (its lineage parent)
        if cred_node is None:  # pragma: no cover - credentials are always recorded as nodes
            raise InvalidClient("client authentication failed", detail="credential has no node")

        def write(tx: Tx) -> dict[str, Any]:
            minted = a.mint_access_token(
                tx,
                path=path,
                client=client,
                subject=client.id,  # RFC 9068 §2.2: no resource owner, so the client
                parents=[cred_node],
                audience=audience,
                scope=scope,
                now=now,
                event=Event.TOKEN_ISSUED,
                binding=binding,
            )
            # §4.4.3: no refresh token for client credentials.
            return token_response(minted, now=now)

        # The most frequent grant: its write may share a transaction with others'.
        return Pending(write)
