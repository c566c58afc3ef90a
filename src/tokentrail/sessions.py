"""Human sessions: listing a subject's live sessions and ending them.

A session is the node an upstream login creates (see
:mod:`tokentrail.oauth.grants.jwt_bearer`); its refresh-token family and access
tokens hang below it, so ending a session is one revocation and kills them all.
"Sign out everywhere" ends every live session of the subject, one revocation
each; the upstream login node itself is left alone, so the person can sign in
again (revoking that node instead blocks the identity until it is un-revoked).

Lifetimes follow the path: an absolute lifetime for the session and an idle
timeout enforced through the refresh tokens, which expire when unused for that
long (SP 800-63B-4 §2.x.3 and STANDARDS.md §4.1 give the limits per AAL).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from tokentrail.clock import Clock
from tokentrail.errors import NotFound
from tokentrail.lineage import revoke
from tokentrail.model import Node, NodeKind
from tokentrail.policy.paths import PathSpec
from tokentrail.storage.store import Store


@dataclass(frozen=True, slots=True)
class SessionInfo:
    id: str
    subject: str
    path: str | None
    client_id: str | None
    issuer: str | None
    binding: dict[str, str]
    created_at: float
    last_used_at: float
    expires_at: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "subject": self.subject,
            "path": self.path,
            "client_id": self.client_id,
            "issuer": self.issuer,
            "binding": self.binding,
            "created_at": self.created_at,
            "last_used_at": self.last_used_at,
            "expires_at": self.expires_at,
        }


def _info(node: Node) -> SessionInfo:
    binding: dict[str, str] = {k: str(node.meta[k]) for k in ("jkt", "x5t") if k in node.meta}
    return SessionInfo(
        id=node.id,
        subject=node.subject or "",
        path=node.path_id,
        client_id=node.client_id,
        issuer=node.meta.get("issuer"),
        binding=binding,
        created_at=node.created_at,
        last_used_at=node.used_at or node.created_at,
        expires_at=node.expires_at,
    )


class Sessions:
    def __init__(self, store: Store, clock: Clock, *, horizon: float) -> None:
        self._store = store
        self._clock = clock
        self._horizon = horizon

    def live(self, subject: str) -> list[SessionInfo]:
        """The subject's sessions that are neither expired nor revoked (directly or above)."""
        now = self._clock.now()
        with self._store.read() as tx:
            nodes = tx.nodes_of_subject(subject, NodeKind.SESSION, live_at=now)
            ids = {i for n in nodes for i in n.lineage}
            revoked = tx.revocations_among(ids)
        return [_info(n) for n in nodes if not any(i in revoked for i in n.lineage)]

    def get(self, session_id: str) -> SessionInfo:
        with self._store.read() as tx:
            node = tx.get_node(session_id)
        if node is None or node.kind is not NodeKind.SESSION:
            raise NotFound(f"no session {session_id!r}")
        return _info(node)

    def end(self, session_id: str, *, actor: str, reason: str = "session ended") -> bool:
        """End one session; False if it was already ended."""
        self.get(session_id)
        with self._store.write() as tx:
            rev = revoke(
                tx,
                session_id,
                reason=reason,
                actor=actor,
                now=self._clock.now(),
                horizon=self._horizon,
            )
        return rev is not None

    def end_all(self, subject: str, *, actor: str, reason: str = "signed out everywhere") -> int:
        """End every live session of ``subject``; returns how many were ended."""
        ended = 0
        now = self._clock.now()
        live = self.live(subject)
        with self._store.write() as tx:
            for s in live:
                if revoke(tx, s.id, reason=reason, actor=actor, now=now, horizon=self._horizon):
                    ended += 1
        return ended


def session_limits(path: PathSpec) -> tuple[int, int | None]:
    """(absolute lifetime, idle timeout) in seconds for sessions minted on ``path``.

    The session lives until the earliest of its declared ``session.absolute_lifetime``
    (by default the SP 800-63B-4 limit of the path's assurance level, STANDARDS.md
    §4.1: AAL1 30 days, AAL2 24 h, AAL3 12 h) and its refresh family's
    ``absolute_lifetime``; a path with neither lives as long as one access token.
    The idle timeout is the declared one (session, then refresh), else the level's
    (AAL2 1 h, AAL3 15 min, none at AAL1).
    """
    level = path.assurance_level
    declared = path.session.absolute_lifetime if path.session else None
    limits = [
        x
        for x in (
            declared or (level.absolute_limit if level else None),
            path.refresh.absolute_lifetime if path.refresh else None,
        )
        if x is not None
    ]
    absolute = min(limits) if limits else path.max_ttl
    idle = (
        (path.session.idle_timeout if path.session else None)
        or (path.refresh.idle_timeout if path.refresh else None)
        or (level.idle_limit if level else None)
    )
    return absolute, idle


def network_allowed(path: PathSpec, client_ip: str | None) -> bool:
    """Whether a session on ``path`` may be created or refreshed from ``client_ip``."""
    networks = path.session.networks if path.session else None
    if not networks:
        return True
    if client_ip is None:
        return False
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return False
    return any(address in net for net in networks)
