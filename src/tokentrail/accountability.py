"""The accountability report: from secret compromise to session termination, and who owned what.

For an incident, :func:`build_report` assembles, from the lineage and the audit
ledger only (evidence that cannot be quietly edited):

* the **timeline**: the compromised node's creation, every issuance, refresh,
  exchange and recovery derived from it, detections, the containment, and the
  last rejected use after containment;
* the **blast radius**: how many tokens and sessions, by path, client and
  audience, were live when the compromise began; the audiences reachable; the
  longest any of them could have stayed valid;
* every **control point** on the paths involved — the four functions with their
  owning teams and the controls in force (binding, TTL, step-up, approvals,
  audit) — with each gap the path-map analyzer finds, mapped to the frameworks;
* the **accountable owner**, by the seed article's rule: the team that owns the
  trust boundary that failed (the recovery path when one was used, else the
  credential's issuance and storage for a leaked workload secret, else
  authentication and session creation), and the **time to contain** (first
  detection, or the incident's opening, to revocation in force).

Aggregates are computed in SQL and timelines are bounded, so a report over a
credential with a million descendants stays fast and small.
"""

from __future__ import annotations

from typing import Any

from tokentrail.incidents import Incident
from tokentrail.model import Node, NodeKind
from tokentrail.policy.analyze import analyze
from tokentrail.policy.paths import Function, PathMap, PathSpec
from tokentrail.storage.store import Store

#: Most timeline entries kept from the start and from the end of a lineage's history.
TIMELINE_HEAD = 150
TIMELINE_TAIL = 50
_REJECTED = ("detection.", "client_auth.failed", "issuance.refused")


def build_report(store: Store, paths: PathMap, incident: Incident) -> dict[str, Any]:
    with store.read() as tx:
        roots: list[Node] = [n for n in (tx.get_node(i) for i in incident.nodes) if n]
        groups: list[dict[str, Any]] = []
        audiences: dict[str, int] = {}
        timeline: list[dict[str, Any]] = []
        rejected: list[dict[str, Any]] = []
        detections: list[dict[str, Any]] = []
        first_seen = min((n.created_at for n in roots), default=incident.opened_at)
        for root in roots:
            client = root.client_id if root.kind is NodeKind.CREDENTIAL else None
            head = tx.lineage_audit(root.id, limit=TIMELINE_HEAD)
            tail = tx.lineage_audit(root.id, limit=TIMELINE_TAIL, newest_first=True)
            seen = {r["seq"] for r in head}
            timeline.extend(head)
            timeline.extend(r for r in tail if r["seq"] not in seen)
            # A session from a help-desk recovery: the recovery's own records (request,
            # proofing, approvals, grant) tell which support action produced it.
            recoveries = [
                a
                for a in root.ancestors
                if (n := tx.get_node(a)) is not None and n.kind is NodeKind.RECOVERY_GRANT
            ]
            if recoveries:
                timeline.extend(
                    tx.audit_query(node_ids=recoveries, events=("recovery.",), limit=TIMELINE_HEAD)
                )
            detections.extend(tx.lineage_audit(root.id, events=("detection.",), limit=1000))
            if incident.contained_at is not None:
                rejected.extend(
                    tx.lineage_audit(
                        root.id,
                        client_id=client,
                        events=_REJECTED,
                        since=incident.contained_at,
                        limit=1,
                        newest_first=True,
                    )
                )
            for aud, count in tx.lineage_audiences(root.id).items():
                audiences[aud] = audiences.get(aud, 0) + count
        detected_at = min((d["at"] for d in detections), default=None)
        compromised_at = min([t for t in (detected_at, incident.opened_at) if t is not None])
        for root in roots:
            groups.extend(tx.lineage_summary(root.id, at=compromised_at))
        incident_records = [
            r
            for r in tx.audit_query(events=("incident.",), limit=10_000)
            if (r["data"] or {}).get("incident") == incident.id
        ]
    timeline = sorted(
        {r["seq"]: r for r in [*timeline, *incident_records]}.values(), key=lambda r: r["seq"]
    )
    path_ids = sorted({g["path_id"] for g in groups if g["path_id"]})
    used_paths = [p for p in (paths.get(i) for i in path_ids) if p is not None]
    last_rejected = max(rejected, key=lambda r: r["seq"], default=None)
    start = detected_at if detected_at is not None else incident.opened_at
    return {
        "incident": incident.as_dict(),
        "roots": [_node(n) for n in roots],
        "first_seen_at": first_seen,
        "detected_at": detected_at,
        "compromised_at": compromised_at,
        "contained_at": incident.contained_at,
        "time_to_contain_seconds": (
            max(0.0, incident.contained_at - start) if incident.contained_at else None
        ),
        "timeline": [_entry(r) for r in timeline],
        "timeline_truncated": len(timeline) >= TIMELINE_HEAD + TIMELINE_TAIL,
        "detections": [_entry(r) for r in detections],
        "last_rejected_use": _entry(last_rejected) if last_rejected else None,
        "blast_radius": _blast(groups, audiences, compromised_at),
        "control_points": [_control_point(paths, p) for p in used_paths],
        "accountable": _accountable(paths, used_paths, roots),
    }


def _node(n: Node) -> dict[str, Any]:
    return {
        "id": n.id,
        "kind": n.kind.value,
        "path": n.path_id,
        "client_id": n.client_id,
        "subject": n.subject,
        "team": n.team_id,
        "created_at": n.created_at,
        "expires_at": n.expires_at,
    }


def _entry(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "seq": r["seq"],
        "at": r["at"],
        "event": r["event"],
        "actor": r["actor"],
        "node_id": r["node_id"],
        "client_id": r["client_id"],
        "subject": r["subject"],
        "data": r["data"] or {},
    }


def _blast(groups: list[dict[str, Any]], audiences: dict[str, int], at: float) -> dict[str, Any]:
    by_path: dict[str, dict[str, int]] = {}
    by_client: dict[str, dict[str, int]] = {}
    by_kind: dict[str, dict[str, int]] = {}
    longest: float | None = None
    for g in groups:
        for table, key in (
            (by_path, g["path_id"] or "(credential)"),
            (by_client, g["client_id"] or "(none)"),
            (by_kind, g["kind"]),
        ):
            slot = table.setdefault(key, {"total": 0, "live_at_compromise": 0})
            slot["total"] += int(g["total"])
            slot["live_at_compromise"] += int(g["live"] or 0)
        if g["longest"] is not None:
            longest = max(longest or 0.0, float(g["longest"]))
    return {
        "descendants": sum(int(g["total"]) for g in groups),
        "live_at_compromise": sum(int(g["live"] or 0) for g in groups),
        "by_path": by_path,
        "by_client": by_client,
        "by_kind": by_kind,
        "audiences": dict(sorted(audiences.items(), key=lambda kv: -kv[1])),
        "longest_valid_until": longest,
        "longest_exposure_seconds": max(0.0, longest - at) if longest is not None else 0.0,
    }


def _control_point(paths: PathMap, path: PathSpec) -> dict[str, Any]:
    findings = [f for f in analyze(paths).findings if f.subject == path.id]
    return {
        "path": path.id,
        "description": path.description,
        "owners": {f.value: path.owners.of(f) for f in Function},
        "functions": [
            {"function": f.value, "title": f.label, "owner": path.owners.of(f)} for f in Function
        ],
        "controls": {
            "binding": path.binding,
            "max_ttl_seconds": path.max_ttl,
            "assurance_level": path.assurance_level.value if path.assurance_level else None,
            "refresh_rotation": path.refresh.rotation if path.refresh else None,
            "refresh_absolute_lifetime": path.refresh.absolute_lifetime if path.refresh else None,
            "step_up": path.step_up is not None,
            "approvals": path.approvals.count if path.approvals else 0,
            "audit": path.audit,
            "max_delegation_depth": path.max_delegation_depth,
        },
        "gaps": [
            {
                "rule": f.rule.id,
                "title": f.rule.title,
                "severity": f.severity.value,
                "message": f.message,
                "remediation": f.rule.remediation,
                "mappings": f.rule.mappings(nhi=f.nhi),
            }
            for f in findings
        ],
    }


def _accountable(paths: PathMap, used: list[PathSpec], roots: list[Node]) -> dict[str, Any]:
    """The seed article's rule: the owner of the trust boundary that failed."""
    recovery = next(
        (p for p in used if p.recovery is not None or p.grant.value == "recovery"), None
    )
    if recovery is not None:
        return {
            "team": recovery.owners.of(Function.RECOVERY),
            "function": Function.RECOVERY.label,
            "path": recovery.id,
            "why": "session material came out of a recovery path; its owner answers for "
            "identity proofing, approvals and the recovery workflow",
            "declared": recovery.accountable,
        }
    first = used[0] if used else None
    leaked_credential = any(
        r.kind is NodeKind.CREDENTIAL and r.client_id is not None for r in roots
    )
    if first is None:
        return {
            "team": None,
            "function": None,
            "path": None,
            "why": "nothing was issued from the compromised node",
            "declared": None,
        }
    function = Function.CREDENTIAL_ISSUANCE if leaked_credential else Function.AUTHENTICATION
    why = (
        "a workload credential was compromised: its issuance and storage is the boundary "
        "that failed"
        if leaked_credential
        else "a login or session was compromised: authentication and session creation is the "
        "boundary that failed"
    )
    return {
        "team": first.owners.of(function),
        "function": function.label,
        "path": first.id,
        "why": why,
        "declared": first.accountable,
    }
