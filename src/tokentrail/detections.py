"""Detections: runtime signals of misuse, each answered by the policy its path declares.

Every detection writes a ``detection.<kind>`` record to the audit ledger with
its severity, the response applied and the evidence (ids, never secrets), and
applies the response in the same transaction:

``record``         only the ledger record;
``notify``         plus a message to the owning team of detection and response;
``revoke_node``    plus revoking the node the signal is about;
``revoke_family``  plus revoking its session (refresh-token family), or the node
                   itself when it belongs to no session;
``revoke_root``    plus revoking the root of its lineage (the credential or
                   upstream login everything descends from).

A path may set a response per kind (``detection:`` in the path map); without
one the defaults below apply, chosen so that a signal which proves a token is
in two hands contains it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from tokentrail.clock import Clock
from tokentrail.errors import OAuthError
from tokentrail.lineage import revoke
from tokentrail.model import Node, NodeKind
from tokentrail.policy.paths import DetectionKind, PathMap, Response
from tokentrail.storage.store import Store, Tx

#: Severity per kind (OCSF severity words).
SEVERITY: dict[DetectionKind, str] = {
    DetectionKind.REFRESH_REUSE: "high",
    DetectionKind.BINDING_MISMATCH: "high",
    DetectionKind.PROOF_REPLAY: "medium",
    DetectionKind.REVOKED_TOKEN_USE: "high",
    DetectionKind.EXPIRED_TOKEN_USE: "low",
    DetectionKind.CLIENT_AUTH_FAILURES: "medium",
    DetectionKind.POST_ROTATION_USE: "high",
    DetectionKind.RECOVERY_VOLUME: "high",
}

#: Response when the path declares none.
DEFAULT_RESPONSE: dict[DetectionKind, Response] = {
    DetectionKind.REFRESH_REUSE: Response.REVOKE_FAMILY,  # RFC 9700 §4.14.2
    DetectionKind.BINDING_MISMATCH: Response.REVOKE_FAMILY,
    DetectionKind.PROOF_REPLAY: Response.NOTIFY,
    DetectionKind.REVOKED_TOKEN_USE: Response.NOTIFY,
    DetectionKind.EXPIRED_TOKEN_USE: Response.RECORD,
    DetectionKind.CLIENT_AUTH_FAILURES: Response.NOTIFY,
    DetectionKind.POST_ROTATION_USE: Response.NOTIFY,
    DetectionKind.RECOVERY_VOLUME: Response.NOTIFY,
}

#: Failed client authentications within this window that make a burst.
AUTH_FAILURE_WINDOW = 60.0
AUTH_FAILURE_BURST = 5

ACTOR = "tokentrail:detection"


@dataclass(frozen=True, slots=True)
class Fired:
    kind: DetectionKind
    response: Response
    revoked: str | None


class Detections:
    def __init__(self, store: Store, clock: Clock, paths: PathMap, *, horizon: float) -> None:
        self._store = store
        self._clock = clock
        self._paths = paths
        self._horizon = horizon

    def response_for(self, kind: DetectionKind, path_id: str | None) -> Response:
        path = self._paths.get(path_id) if path_id else None
        declared = path.detection.response(kind) if path is not None else None
        return declared or DEFAULT_RESPONSE[kind]

    def fire(
        self,
        kind: DetectionKind,
        *,
        node: Node | None = None,
        path_id: str | None = None,
        client_id: str | None = None,
        subject: str | None = None,
        team_id: str | None = None,
        evidence: dict[str, Any] | None = None,
        tx: Tx | None = None,
    ) -> Fired:
        """Record the detection and apply its response (in ``tx`` if given)."""
        if tx is None:
            with self._store.write() as own:
                return self._fire(own, kind, node, path_id, client_id, subject, team_id, evidence)
        return self._fire(tx, kind, node, path_id, client_id, subject, team_id, evidence)

    def _fire(
        self,
        tx: Tx,
        kind: DetectionKind,
        node: Node | None,
        path_id: str | None,
        client_id: str | None,
        subject: str | None,
        team_id: str | None,
        evidence: dict[str, Any] | None,
    ) -> Fired:
        now = self._clock.now()
        path_id = path_id or (node.path_id if node else None)
        team_id = team_id or (node.team_id if node else None)
        if team_id is None and client_id is not None:
            client = tx.get_client(client_id)
            team_id = client.team_id if client is not None else None
        response = self.response_for(kind, path_id)
        target = self._target(tx, response, node)
        tx.append_audit(
            f"detection.{kind.value}",
            at=now,
            actor=ACTOR,
            node_id=node.id if node else None,
            client_id=client_id or (node.client_id if node else None),
            subject=subject or (node.subject if node else None),
            team_id=team_id,
            data={
                "kind": kind.value,
                "severity": SEVERITY[kind],
                "response": response.value,
                "path": path_id,
                "revoke": target,
                "evidence": evidence or {},
            },
        )
        if response is not Response.RECORD:
            self._notify(tx, kind, path_id, node, evidence, now, team_id)
        if target is not None:
            revoke(
                tx,
                target,
                reason=f"detection: {kind.value}",
                actor=ACTOR,
                now=now,
                horizon=self._horizon,
            )
        return Fired(kind, response, target)

    def _target(self, tx: Tx, response: Response, node: Node | None) -> str | None:
        if node is None or response in (Response.RECORD, Response.NOTIFY):
            return None
        if response is Response.REVOKE_NODE:
            return node.id
        if response is Response.REVOKE_FAMILY:
            if node.kind is NodeKind.SESSION:
                return node.id
            for ancestor_id in node.ancestors:
                ancestor = tx.get_node(ancestor_id)
                if ancestor is not None and ancestor.kind is NodeKind.SESSION:
                    return ancestor.id
            return node.id
        # REVOKE_ROOT: the oldest ancestor (credential or upstream login).
        return node.ancestors[-1] if node.ancestors else node.id

    def _notify(
        self,
        tx: Tx,
        kind: DetectionKind,
        path_id: str | None,
        node: Node | None,
        evidence: dict[str, Any] | None,
        now: float,
        team_id: str | None,
    ) -> None:
        path = self._paths.get(path_id) if path_id else None
        # The path's detection owner; a signal tied to no path (a client's failed
        # authentications, a rotated-out credential) goes to the client's own team.
        owner = path.owners.detection if path is not None else team_id
        team = self._paths.teams.get(owner) if owner else None
        if team is not None:
            recipient = team.contact or f"team:{team.id}"
        else:
            recipient = f"team:{owner}" if owner else "team:unassigned"
        tx.enqueue(
            topic=f"detection.{kind.value}",
            recipient=recipient,
            payload={
                "kind": kind.value,
                "severity": SEVERITY[kind],
                "path": path_id,
                "node": node.id if node else None,
                "owner": owner,
                "evidence": evidence or {},
            },
            at=now,
        )

    def auth_failure_burst(self, client_id: str) -> bool:
        """Whether the client's recent failed authentications make a burst."""
        since = self._clock.now() - AUTH_FAILURE_WINDOW
        with self._store.read() as tx:
            recent = tx.audit_query(
                client_id=client_id,
                events=("client_auth.failed",),
                since=since,
                limit=AUTH_FAILURE_BURST + 1,
            )
        return len(recent) == AUTH_FAILURE_BURST


E = TypeVar("E", bound=OAuthError)


@dataclass(frozen=True, slots=True)
class Signal:
    """What a refusal tells the detection layer (attached as ``OAuthError.signal``)."""

    kind: DetectionKind
    node: Node | None = None
    evidence: dict[str, Any] | None = None


def signalled(
    error: Exception, kind: DetectionKind, node: Node | None = None, **evidence: Any
) -> Exception:
    """Attach a detection signal to an OAuth error about to be raised."""
    error.signal = Signal(kind, node, evidence or None)  # type: ignore[attr-defined]
    return error
