"""Refresh tokens — RFC 6749 §6 with rotation and reuse detection (RFC 9700 §4.14.2).

A refresh token is an opaque 256-bit secret; only its SHA-256 is stored, on a
``refresh_token`` lineage node whose parent is the session it belongs to (the
token family). Each token expires at the earlier of the session's absolute
lifetime and the path's idle timeout, so an unused session lapses.
"""

from __future__ import annotations

from tokentrail import crypto, ids
from tokentrail.model import Client, Node, NodeKind
from tokentrail.policy.paths import PathSpec
from tokentrail.sessions import session_limits
from tokentrail.storage.store import Tx

PREFIX = "ttr"


def mint_refresh_token(
    tx: Tx, *, path: PathSpec, client: Client, session: Node, now: float
) -> tuple[str, Node]:
    """Create the next refresh token of ``session``'s family; returns (secret, node)."""
    assert path.refresh is not None
    expires = session.expires_at if session.expires_at is not None else now
    _absolute, idle = session_limits(path)
    if idle is not None:
        expires = min(expires, now + idle)
    secret = ids.new_secret(PREFIX)
    node = Node(
        id=ids.new_id("rt"),
        kind=NodeKind.REFRESH_TOKEN,
        path_id=path.id,
        client_id=client.id,
        subject=session.subject,
        team_id=client.team_id,
        parents=(session.id,),
        ancestors=(session.id, *session.ancestors),
        created_at=now,
        expires_at=expires,
        meta={"scope": session.meta.get("scope", [])},
    )
    tx.insert_node(node, token_hash=crypto.hash_secret(secret))
    return secret, node


def looks_like_refresh_token(token: str) -> bool:
    return token.startswith(PREFIX + "_")
