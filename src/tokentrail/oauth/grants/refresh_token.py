"""Refresh Token Grant — RFC 6749 §6, rotation and reuse detection per RFC 9700 §4.14.2.

Every use rotates: the presented token is marked used (compare-and-set, so two
concurrent uses cannot both win) and a new one is issued in the same family.
Presenting a token that was already rotated out means two parties hold it; the
server cannot tell which is the thief, so it revokes the whole family (the
session node) and records a detection.
"""

from __future__ import annotations

from typing import Any

from tokentrail import crypto
from tokentrail.audit import Event
from tokentrail.detections import signalled
from tokentrail.errors import InvalidGrant, InvalidRequest, InvalidScope
from tokentrail.model import NodeKind
from tokentrail.oauth.authority import Authority, token_response
from tokentrail.oauth.binding import Binding
from tokentrail.oauth.client_auth import AuthenticatedClient
from tokentrail.oauth.dpop import InvalidDPoPProof
from tokentrail.oauth.refresh_tokens import mint_refresh_token
from tokentrail.oauth.request import OAuthRequest
from tokentrail.policy.paths import DetectionKind
from tokentrail.sessions import network_allowed


class _PathGone(Exception):
    """The token's path is no longer declared for the client; refused outside the transaction."""

    def __init__(self, path_id: str | None) -> None:
        super().__init__(path_id)
        self.path_id = path_id


class RefreshTokenGrant:
    GRANT_TYPE = "refresh_token"
    DEFERS_WRITE = False

    def __init__(self, authority: Authority) -> None:
        self._a = authority

    def issue(
        self, auth: AuthenticatedClient, req: OAuthRequest, binding: Binding
    ) -> dict[str, Any]:
        try:
            return self._issue(auth, req, binding)
        except _PathGone as gone:
            # The refusal writes its own audit record, so it must not run inside the
            # grant's write transaction (on SQLite a second writer would wait forever).
            self._a.path_for_node(auth.client, gone.path_id)
            raise AssertionError("unreachable: path_for_node refused") from gone  # pragma: no cover

    def _issue(
        self, auth: AuthenticatedClient, req: OAuthRequest, binding: Binding
    ) -> dict[str, Any]:
        a = self._a
        client = auth.client
        presented = req.require("refresh_token")
        now = a.clock.now()
        with a.store.write() as tx:
            node = tx.get_node_by_token_hash(crypto.hash_secret(presented))
            # §6: the token must exist and belong to the authenticated client.
            if (
                node is None
                or node.kind is not NodeKind.REFRESH_TOKEN
                or node.client_id != client.id
            ):
                raise InvalidGrant("refresh token is invalid")
            if tx.first_revoked(node.lineage) is not None:
                raise signalled(
                    InvalidGrant("refresh token is revoked"), DetectionKind.REVOKED_TOKEN_USE, node
                )
            if node.expires_at is not None and node.expires_at <= now:
                raise signalled(
                    InvalidGrant("refresh token has expired"), DetectionKind.EXPIRED_TOKEN_USE, node
                )
            path = a.paths.get(node.path_id or "")
            if path is None or path.id not in client.paths:
                raise _PathGone(node.path_id)
            if path.refresh is None:
                raise InvalidGrant(f"path {path.id} no longer allows refresh")
            if not network_allowed(path, req.client_ip):
                raise InvalidGrant(f"path {path.id} does not allow sessions from this network")
            session = tx.get_node(node.parents[0])
            assert session is not None
            # RFC 9449 §5: a session bound to a key refreshes only with that key.
            if session.meta.get("jkt") is not None and binding.jkt != session.meta["jkt"]:
                raise signalled(
                    InvalidGrant("refresh token is bound to another DPoP key"),
                    DetectionKind.BINDING_MISMATCH,
                    node,
                    presented_jkt=binding.jkt,
                )
            if session.meta.get("x5t") is not None and binding.x5t != session.meta["x5t"]:
                raise signalled(
                    InvalidGrant("refresh token is bound to another client certificate"),
                    DetectionKind.BINDING_MISMATCH,
                    node,
                    presented_x5t=binding.x5t,
                )
            if path.binding != "none" and binding.kind != path.binding:
                error = InvalidDPoPProof if path.binding == "dpop" else InvalidRequest
                raise error(f"path {path.id} requires {path.binding}-bound tokens")
            granted = list(node.meta.get("scope", []))
            scope = granted
            if req.get("scope") is not None:
                wanted = req.require("scope").split(" ")
                if any(s not in granted for s in wanted):
                    raise InvalidScope("a refresh cannot widen the scope of the original grant")
                scope = list(dict.fromkeys(wanted))
            rotate = path.refresh.rotation
            new_secret = None
            parent = node
            if rotate:
                if not tx.mark_used(node.id, now):
                    # RFC 9700 §4.14.2: two parties hold this token; the detection
                    # response (by default: revoke the family) contains it.
                    raise signalled(
                        InvalidGrant("refresh token was already used (reuse detected)"),
                        DetectionKind.REFRESH_REUSE,
                        node,
                    )
                new_secret, parent = mint_refresh_token(
                    tx, path=path, client=client, session=session, now=now
                )
            tx.touch(session.id, now)
            minted = a.mint_access_token(
                tx,
                path=path,
                client=client,
                subject=node.subject or client.id,
                parents=[parent],
                audience=list(session.meta.get("aud", [])) or list(client.audiences[:1]),
                scope=scope,
                now=now,
                event=Event.TOKEN_REFRESHED,
                binding=binding,
                expires_at=session.expires_at,
            )
        return token_response(minted, now=now, refresh_token=new_secret)
