"""Incidents: contain a suspected compromise in one step and keep the record.

Opening an incident on a credential, a node or a subject revokes the target —
and so, through lineage, everything derived from it — records the moment the
revocation is in force (the containment time), notifies the owning teams of
every path the target's tokens came through, and opens the incident record.
All of it is one transaction: an incident is never open without its
containment, nor a containment without its record. More nodes can be added to
an open incident; each is contained the same way.

For a subject, containment revokes every live session of theirs and their
upstream login nodes, so no new session can be minted from those logins either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tokentrail import ids
from tokentrail.clock import Clock
from tokentrail.errors import Conflict, NotFound
from tokentrail.lineage import revoke
from tokentrail.model import NodeKind
from tokentrail.policy.paths import Function, PathMap
from tokentrail.recovery import OPEN_STATES
from tokentrail.storage.store import Store, Tx


@dataclass(frozen=True, slots=True)
class Incident:
    id: str
    opened_at: float
    opened_by: str
    reason: str
    target_kind: str
    target: str
    status: str
    contained_at: float | None
    closed_at: float | None
    nodes: tuple[str, ...]

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Incident:
        return cls(
            id=row["id"],
            opened_at=row["opened_at"],
            opened_by=row["opened_by"],
            reason=row["reason"],
            target_kind=row["target_kind"],
            target=row["target"],
            status=row["status"],
            contained_at=row["contained_at"],
            closed_at=row["closed_at"],
            nodes=tuple(row["nodes"]),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "opened_at": self.opened_at,
            "opened_by": self.opened_by,
            "reason": self.reason,
            "target_kind": self.target_kind,
            "target": self.target,
            "status": self.status,
            "contained_at": self.contained_at,
            "closed_at": self.closed_at,
            "nodes": list(self.nodes),
        }


class Incidents:
    def __init__(self, store: Store, clock: Clock, paths: PathMap, *, horizon: float) -> None:
        self._store = store
        self._clock = clock
        self._paths = paths
        self._horizon = horizon

    def open(
        self,
        *,
        credential: str | None = None,
        node: str | None = None,
        subject: str | None = None,
        reason: str,
        actor: str,
    ) -> Incident:
        given = [
            (k, v)
            for k, v in (("credential", credential), ("node", node), ("subject", subject))
            if v
        ]
        if len(given) != 1:
            raise ValueError("name exactly one of --credential, --node or --subject")
        if not reason.strip():
            raise ValueError("an incident needs a reason")
        kind, target = given[0]
        now = self._clock.now()
        incident_id = ids.new_id("inc")
        with self._store.write() as tx:
            nodes = self._targets(tx, kind, target, now)
            contained_at = self._contain(tx, incident_id, nodes, reason, actor, now)
            row = {
                "id": incident_id,
                "opened_at": now,
                "opened_by": actor,
                "reason": reason,
                "target_kind": kind,
                "target": target,
                "status": "open",
                "contained_at": contained_at,
                "closed_at": None,
                "nodes": nodes,
            }
            tx.insert_incident(row)
            tx.append_audit(
                "incident.opened",
                at=now,
                actor=actor,
                node_id=nodes[0] if nodes else None,
                subject=target if kind == "subject" else None,
                data={
                    "incident": incident_id,
                    "target_kind": kind,
                    "target": target,
                    "reason": reason,
                    "nodes": nodes,
                },
            )
            tx.append_audit(
                "incident.contained",
                at=now,
                actor=actor,
                node_id=nodes[0] if nodes else None,
                data={"incident": incident_id, "contained_at": contained_at, "nodes": nodes},
            )
            self._notify(tx, incident_id, nodes, reason, now)
        return Incident.from_row(row)

    def add(self, incident_id: str, node_id: str, *, actor: str) -> Incident:
        """Contain one more node under an open incident."""
        now = self._clock.now()
        with self._store.write() as tx:
            row = tx.get_incident(incident_id)
            if row is None:
                raise NotFound(f"no incident {incident_id!r}")
            if row["status"] != "open":
                raise Conflict(f"incident {incident_id} is closed")
            if tx.get_node(node_id) is None:
                raise NotFound(f"no node {node_id!r}")
            if node_id not in row["nodes"]:
                self._contain(tx, incident_id, [node_id], row["reason"], actor, now)
                nodes = [*row["nodes"], node_id]
                tx.update_incident(incident_id, nodes=nodes)
                tx.append_audit(
                    "incident.node_added",
                    at=now,
                    actor=actor,
                    node_id=node_id,
                    data={"incident": incident_id},
                )
                self._notify(tx, incident_id, [node_id], row["reason"], now)
                row = {**row, "nodes": nodes}
        return Incident.from_row(row)

    def close(self, incident_id: str, *, actor: str) -> Incident:
        now = self._clock.now()
        with self._store.write() as tx:
            row = tx.get_incident(incident_id)
            if row is None:
                raise NotFound(f"no incident {incident_id!r}")
            if row["status"] == "open":
                tx.update_incident(incident_id, status="closed", closed_at=now)
                tx.append_audit(
                    "incident.closed", at=now, actor=actor, data={"incident": incident_id}
                )
                row = {**row, "status": "closed", "closed_at": now}
        return Incident.from_row(row)

    def get(self, incident_id: str) -> Incident:
        with self._store.read() as tx:
            row = tx.get_incident(incident_id)
        if row is None:
            raise NotFound(f"no incident {incident_id!r}")
        return Incident.from_row(row)

    def list_all(self) -> list[Incident]:
        with self._store.read() as tx:
            return [Incident.from_row(r) for r in tx.list_incidents()]

    # --- containment --------------------------------------------------------------

    def _targets(self, tx: Tx, kind: str, target: str, now: float) -> list[str]:
        if kind == "subject":
            logins = tx.nodes_of_subject(target, NodeKind.CREDENTIAL)
            sessions = tx.nodes_of_subject(target, NodeKind.SESSION, live_at=now)
            found = [n.id for n in logins if n.client_id is None] + [n.id for n in sessions]
            # Help-desk recoveries under way: a grant not yet redeemed must open no session.
            found += [r["id"] for r in tx.list_recoveries(subject=target, states=OPEN_STATES)]
            if not found:
                raise NotFound(f"no sessions or logins of subject {target!r}")
            return found
        node = tx.get_node(target)
        if node is None:
            raise NotFound(f"no node {target!r}")
        if kind == "credential" and node.kind is not NodeKind.CREDENTIAL:
            raise ValueError(f"{target} is a {node.kind.value}, not a credential; use --node")
        return [target]

    def _contain(
        self, tx: Tx, incident_id: str, nodes: list[str], reason: str, actor: str, now: float
    ) -> float:
        """Revoke each node; the containment time is when the earliest revocation took effect."""
        times = []
        for node_id in nodes:
            rev = revoke(
                tx,
                node_id,
                reason=f"incident {incident_id}: {reason}",
                actor=actor,
                now=now,
                horizon=self._horizon,
            ) or tx.get_revocation(node_id)
            assert rev is not None
            times.append(rev.revoked_at)
        return min(times) if times else now

    def _notify(self, tx: Tx, incident_id: str, nodes: list[str], reason: str, now: float) -> None:
        """Tell the owning team of every function on every path the nodes' tokens may use.

        The paths are the node's own and those its client may mint through: known
        without walking the descendants, so containment stays constant-time
        however many tokens hang below the node.
        """
        teams: dict[str, set[str]] = {}
        for node_id in nodes:
            node = tx.get_node(node_id)
            if node is None:
                continue
            path_ids = {node.path_id} if node.path_id else set()
            client = tx.get_client(node.client_id) if node.client_id else None
            if client is not None:
                path_ids.update(client.paths)
            for path_id in sorted(path_ids):
                path = self._paths.get(path_id)
                if path is None:
                    continue
                for function in Function:
                    owner = path.owners.of(function)
                    if owner:
                        teams.setdefault(owner, set()).add(function.value)
        for team_id, functions in sorted(teams.items()):
            team = self._paths.teams.get(team_id)
            tx.enqueue(
                topic="incident.opened",
                recipient=(team.contact if team and team.contact else f"team:{team_id}"),
                payload={
                    "incident": incident_id,
                    "reason": reason,
                    "team": team_id,
                    "functions": sorted(functions),
                    "nodes": nodes,
                },
                at=now,
            )
