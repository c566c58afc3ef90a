"""Drift: the declared map against what the running service has issued.

Read through the store (nodes, edges, clients, credentials), as of a given
time:

- **unused paths**: declared paths that issued nothing within ``unused_after``
  (or ever);
- **tokens alive under a looser path**: live nodes whose issue-time lifetime
  exceeds what their path allows now (``max_ttl`` for access tokens, the
  session lifetime for sessions and refresh tokens), whose scopes or audiences
  the path no longer allows, or that are unbound while the path now requires
  binding. tokentrail records the path id on every node (not a hash of the
  path's spec), so drift compares each live node with the current version of
  its path;
- **live tokens under undeclared paths**: paths removed from the map while
  tokens minted through them are still alive;
- **unused clients and credentials**: nothing issued from them within
  ``unused_after`` (offboarding candidates, OWASP NHI1:2025);
- **credentials beyond the maximum age**: live client credentials older than
  ``policy.max_credential_age``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, func, select

from tokentrail.policy.paths import PathMap, PathSpec, format_duration
from tokentrail.policy.rules import Severity
from tokentrail.storage import tables as t
from tokentrail.storage.store import Store, Tx

#: Live nodes per path inspected for scope, audience and binding drift.
SAMPLE = 10_000
#: Seconds of slack when comparing lifetimes (issue times are floored to seconds).
SLACK = 1.0

FRAMEWORKS: dict[str, dict[str, list[str]]] = {
    "unused_path": {"owasp_nhi": [], "nist_csf": ["ID.AM-02", "ID.AM-08"]},
    "live_under_looser_path": {"owasp_nhi": ["NHI7:2025"], "nist_csf": ["PR.AA-01"]},
    "live_under_undeclared_path": {
        "owasp_nhi": ["NHI7:2025"],
        "nist_csf": ["ID.AM-02", "PR.AA-05"],
    },
    "unused_client": {"owasp_nhi": ["NHI1:2025"], "nist_csf": ["ID.AM-08", "PR.AA-01"]},
    "unused_credential": {"owasp_nhi": ["NHI1:2025"], "nist_csf": ["ID.AM-08", "PR.AA-01"]},
    "credential_beyond_max_age": {"owasp_nhi": ["NHI7:2025"], "nist_csf": ["PR.AA-01"]},
}


@dataclass(frozen=True, slots=True)
class DriftItem:
    kind: str
    subject: str
    message: str
    severity: Severity
    count: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "subject": self.subject,
            "severity": self.severity.value,
            "message": self.message,
            "count": self.count,
            "frameworks": FRAMEWORKS[self.kind],
        }


@dataclass(frozen=True, slots=True)
class DriftReport:
    as_of: float
    unused_after: int
    items: list[DriftItem]
    usage: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of,
            "unused_after_seconds": self.unused_after,
            "items": [i.to_json() for i in self.items],
            "usage": self.usage,
        }

    def to_text(self) -> str:
        lines = [
            f"drift as of {self.as_of:.0f} (unused after {format_duration(self.unused_after)}): "
            f"{len(self.items)} item{'s' if len(self.items) != 1 else ''}"
        ]
        for i in self.items:
            lines.append(f"  {i.severity.value.upper():<8} {i.kind:<27} {i.subject}: {i.message}")
        return "\n".join(lines) + "\n"


def drift(m: PathMap, store: Store, *, now: float, unused_after: int | None = None) -> DriftReport:
    """Compare ``m`` with what ``store`` holds, as of ``now``."""
    window = unused_after if unused_after is not None else m.spec.policy.unused_after
    cutoff = now - window
    items: list[DriftItem] = []
    with store.read() as tx:
        usage = _path_usage(tx)
        for p in m.paths:
            count, last = usage.get(p.id, (0, None))
            if last is None:
                items.append(
                    DriftItem(
                        "unused_path", f"path:{p.id}", "declared but never used", Severity.LOW
                    )
                )
            elif last < cutoff:
                items.append(
                    DriftItem(
                        "unused_path",
                        f"path:{p.id}",
                        f"last used {format_duration(now - last)} ago ({count} issued in all)",
                        Severity.LOW,
                        count,
                    )
                )
            items += _looser(tx, p, now)
        items += _undeclared(tx, m, now)
        items += _clients(tx, m, now, cutoff)
    order = {s: s.rank for s in Severity}
    items.sort(key=lambda i: (-order[i.severity], i.kind, i.subject))
    report_usage = {
        pid: {"issued": count, "last_used": last} for pid, (count, last) in sorted(usage.items())
    }
    return DriftReport(now, window, items, report_usage)


def _path_usage(tx: Tx) -> dict[str, tuple[int, float | None]]:
    rows = tx.conn.execute(
        select(t.nodes.c.path_id, func.count(), func.max(t.nodes.c.created_at))
        .where(t.nodes.c.path_id.is_not(None))
        .group_by(t.nodes.c.path_id)
    )
    return {r[0]: (int(r[1]), float(r[2]) if r[2] is not None else None) for r in rows}


def _live(now: float, *conds: Any) -> Any:
    return and_(t.nodes.c.expires_at.is_not(None), t.nodes.c.expires_at > now, *conds)


def _looser(tx: Tx, p: PathSpec, now: float) -> list[DriftItem]:
    """Live nodes of ``p`` issued under a looser version of it."""
    items = []
    bounds = {"access_token": p.max_ttl}
    if p.session_lifetime is not None:
        bounds["session"] = p.session_lifetime
        bounds["refresh_token"] = p.session_lifetime
    lifetime = t.nodes.c.expires_at - t.nodes.c.created_at
    for kind, bound in bounds.items():
        row = tx.conn.execute(
            select(func.count(), func.max(lifetime)).where(
                _live(
                    now, t.nodes.c.path_id == p.id, t.nodes.c.kind == kind, lifetime > bound + SLACK
                )
            )
        ).one()
        if row[0]:
            items.append(
                DriftItem(
                    "live_under_looser_path",
                    f"path:{p.id}",
                    f"{row[0]} live {kind.replace('_', ' ')}(s) issued for up to "
                    f"{format_duration(float(row[1]))}; the path now allows "
                    f"{format_duration(bound)}",
                    Severity.HIGH,
                    int(row[0]),
                )
            )
    if p.scopes is None and p.audiences is None and p.binding == "none":
        return items
    rows = tx.conn.execute(
        select(t.nodes.c.meta)
        .where(_live(now, t.nodes.c.path_id == p.id, t.nodes.c.kind == "access_token"))
        .limit(SAMPLE)
    )
    scopes = set(p.scopes or [])
    audiences = set(p.audiences or [])
    wide = unbound = 0
    for (meta,) in rows:
        meta = dict(meta or {})
        too_wide_scope = p.scopes is not None and not set(meta.get("scope") or []) <= scopes
        too_wide_aud = p.audiences is not None and not set(meta.get("aud") or []) <= audiences
        if too_wide_scope or too_wide_aud:
            wide += 1
        if p.binding != "none" and not meta.get("cnf"):
            unbound += 1
    if wide:
        items.append(
            DriftItem(
                "live_under_looser_path",
                f"path:{p.id}",
                f"{wide} live access token(s) carry scopes or audiences the path no longer allows",
                Severity.HIGH,
                wide,
            )
        )
    if unbound:
        items.append(
            DriftItem(
                "live_under_looser_path",
                f"path:{p.id}",
                f"{unbound} live access token(s) are unbound; the path now requires {p.binding}",
                Severity.HIGH,
                unbound,
            )
        )
    return items


def _undeclared(tx: Tx, m: PathMap, now: float) -> list[DriftItem]:
    rows = tx.conn.execute(
        select(t.nodes.c.path_id, func.count(), func.max(t.nodes.c.expires_at))
        .where(_live(now, t.nodes.c.path_id.is_not(None)))
        .group_by(t.nodes.c.path_id)
    )
    return [
        DriftItem(
            "live_under_undeclared_path",
            f"path:{pid}",
            f"{count} live node(s) minted through a path the map no longer declares "
            f"(the last expires in {format_duration(float(last) - now)})",
            Severity.HIGH,
            int(count),
        )
        for pid, count, last in rows
        if m.get(pid) is None
    ]


def _clients(tx: Tx, m: PathMap, now: float, cutoff: float) -> list[DriftItem]:
    items = []
    client_use = dict(
        tx.conn.execute(
            select(t.nodes.c.client_id, func.max(t.nodes.c.created_at))
            .where(t.nodes.c.client_id.is_not(None))
            .group_by(t.nodes.c.client_id)
        ).all()
    )
    for c in tx.list_clients():
        if c.disabled_at is not None:
            continue
        last = client_use.get(c.id)
        if (last if last is not None else c.created_at) < cutoff:
            when = "never used" if last is None else f"last used {format_duration(now - last)} ago"
            items.append(
                DriftItem(
                    "unused_client",
                    f"client:{c.id}",
                    f"{when} (team {c.team_id}): an offboarding candidate",
                    Severity.MEDIUM,
                )
            )
    creds = tx.conn.execute(
        select(t.credentials).where(
            (t.credentials.c.not_after.is_(None)) | (t.credentials.c.not_after > now)
        )
    ).all()
    cred_use = (
        dict(
            tx.conn.execute(
                select(t.edges.c.parent_id, func.max(t.nodes.c.created_at))
                .join(t.nodes, t.nodes.c.id == t.edges.c.child_id)
                .where(t.edges.c.parent_id.in_([cred.id for cred in creds]))
                .group_by(t.edges.c.parent_id)
            ).all()
        )
        if creds
        else {}
    )
    max_age = m.spec.policy.max_credential_age
    for cred in creds:
        last = cred_use.get(cred.id)
        if (last if last is not None else cred.created_at) < cutoff:
            when = "never used" if last is None else f"last used {format_duration(now - last)} ago"
            items.append(
                DriftItem(
                    "unused_credential",
                    f"credential:{cred.id}",
                    f"{when} (client {cred.client_id}, {cred.kind}): revoke it if it is not needed",
                    Severity.MEDIUM,
                )
            )
        age = now - cred.created_at
        if age > max_age:
            items.append(
                DriftItem(
                    "credential_beyond_max_age",
                    f"credential:{cred.id}",
                    f"{format_duration(age)} old (client {cred.client_id}); the policy allows "
                    f"{format_duration(max_age)}: rotate it",
                    Severity.HIGH,
                )
            )
    return items
