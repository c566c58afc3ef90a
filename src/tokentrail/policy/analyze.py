"""The path-map analyzer: every rule in :mod:`tokentrail.policy.rules`, applied to a map.

``analyze(map)`` returns a :class:`Report`: findings (rule, message, exact
YAML location), the persistence window and blast radius of every entry point,
and the ownership matrix. Renderers for text, JSON, Markdown and SARIF live in
:mod:`tokentrail.policy.report` and :mod:`tokentrail.policy.sarif`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from tokentrail.policy.owners import Matrix, ownership
from tokentrail.policy.paths import (
    STATIC_TYPES,
    ClientSpec,
    Function,
    Grant,
    PathMap,
    PathSpec,
    format_duration,
    is_unlimited,
)
from tokentrail.policy.persistence import EntryPoint, Windows
from tokentrail.policy.rules import Finding, Severity, rule
from tokentrail.policy.yamlsource import Loc


@dataclass(frozen=True, slots=True)
class Report:
    """Everything ``tokentrail paths check`` knows about one map."""

    map: PathMap
    findings: list[Finding]
    entry_points: list[EntryPoint]
    matrix: Matrix

    @property
    def file(self) -> str:
        return self.map.file

    def counts(self) -> dict[str, int]:
        c = Counter(f.severity.value for f in self.findings)
        return {s.value: c.get(s.value, 0) for s in Severity}

    def fails(self, threshold: Severity | None) -> bool:
        """Whether any finding is at or above ``threshold`` (None: never)."""
        if threshold is None:
            return False
        return any(f.severity.rank >= threshold.rank for f in self.findings)


def analyze(m: PathMap) -> Report:
    """Run every rule on ``m``."""
    windows = Windows(m)
    entries = windows.entry_points()
    matrix = ownership(m, windows)
    checker = _Checks(m, windows)
    findings = list(checker.run(entries, matrix))
    findings.sort(key=lambda f: (-f.severity.rank, m.mark(f.loc).line, f.rule.id, f.subject))
    return Report(m, findings, entries, matrix)


class _Checks:
    def __init__(self, m: PathMap, windows: Windows) -> None:
        self.m = m
        self.w = windows
        self.declared_types = {k.type.value for k in m.spec.credential_kinds}

    def run(self, entries: list[EntryPoint], matrix: Matrix) -> Iterator[Finding]:
        for i, p in enumerate(self.m.paths):
            yield from self.path(i, p)
        yield from self.credential_kinds()
        yield from self.clients()
        for chain in matrix.chains:
            if chain.accountable is None:
                named = [c for c in chain.candidates if c]
                why = (
                    f"its paths are accountable to different teams ({', '.join(named)})"
                    if len(named) > 1
                    else "no team is accountable for it"
                )
                what = "chain" if chain.declared else "derived chain from"
                subject = chain.id if chain.declared else chain.steps[0]
                yield Finding(
                    rule("TT-OWN-002"),
                    f"{what} {subject!r} ({chain.entry} -> {' -> '.join(chain.steps)}"
                    f"{' -> exchange' if chain.follow_on else ''}) has no single accountable "
                    f"owner: {why}",
                    chain.loc,
                    f"chain:{chain.id}",
                    details={"candidates": list(chain.candidates)},
                )
        for e in entries:
            if e.infinite:
                yield Finding(
                    rule("TT-WIN-001"),
                    f"entry point {e.label}: a thief holding it can mint forever ({e.explanation})",
                    e.loc,
                    f"entry:{e.id}",
                    nhi=e.principal == "workload",
                )

    # --- per path -----------------------------------------------------------------

    def path(self, i: int, p: PathSpec) -> Iterator[Finding]:
        at = ("paths", i)
        subject = f"path:{p.id}"
        nhi = p.principal == "workload"

        def finding(rule_id: str, message: str, *keys: str | int) -> Finding:
            return Finding(rule(rule_id), f"path {p.id!r}: {message}", (*at, *keys), subject, nhi)

        missing = [f for f in Function if p.owners.get(f) is None]
        if missing:
            labels = ", ".join(f.label for f in missing)
            yield finding("TT-OWN-001", f"no owner for {labels}", "owners")
        bound = self.m.spec.principals.human if p.principal == "human" else None
        bound = bound or self.m.spec.principals.workload
        if p.max_ttl > bound.max_access_token_ttl:
            yield finding(
                "TT-TTL-001",
                f"max_ttl {format_duration(p.max_ttl)} is above the {p.principal} bound "
                f"{format_duration(bound.max_access_token_ttl)}",
                "max_ttl",
            )
        if p.binding == "none":
            what = "human session material" if p.principal == "human" else "workload tokens"
            yield finding(
                "TT-BIND-001",
                f"mints bearer {what} ({p.output}); a copied token works for anyone",
                "binding",
            )
        if p.refresh is not None:
            yield from self.refresh(p, finding)
        if p.principal == "human" and p.output == "session":
            yield from self.session(p, finding)
        yield from self.recovery(p, finding)
        if not p.audit:
            yield finding("TT-AUD-001", "audit is off: issuances leave no record", "audit")
        view = self.m.spec.policy.revocation_view_bound
        if p.revocation_check == "none":
            yield finding(
                "TT-REV-001",
                "its verifiers check signature and expiry only: revocation never reaches them",
                "revocation_check",
            )
        elif p.max_ttl > view:
            yield finding(
                "TT-REV-001",
                f"max_ttl {format_duration(p.max_ttl)} outlives the revocation-view bound "
                f"{format_duration(view)}",
                "max_ttl",
            )
        if p.grant is Grant.TOKEN_EXCHANGE:
            if p.max_delegation_depth is None:
                yield finding("TT-XCH-001", "token exchange without max_delegation_depth", "grant")
            if not p.act:
                yield finding("TT-XCH-001", "token exchange without act (impersonation)", "act")
        yield from self.scopes(p, finding)
        if p.binding != "none" and p.detection.binding_mismatch is None:
            yield finding(
                "TT-DET-001",
                f"{p.binding}-bound, but no response to a binding mismatch is declared",
                "detection",
            )
        for j, inp in enumerate(p.inputs):
            if inp.value in STATIC_TYPES and inp.value not in self.declared_types:
                yield finding(
                    "TT-CRD-001",
                    f"accepts {inp.value}, but no credential kind of that type declares a "
                    "rotation period or maximum age",
                    "inputs",
                    j,
                )

    def refresh(self, p: PathSpec, finding: _Make) -> Iterator[Finding]:
        assert p.refresh is not None
        if is_unlimited(p.refresh.absolute_lifetime):
            yield finding(
                "TT-REF-001",
                "refresh-token family without an absolute lifetime (unlimited)",
                "refresh",
                "absolute_lifetime",
            )
        missing = [k for k in ("rotation", "reuse_detection") if not getattr(p.refresh, k)]
        if missing:
            yield finding(
                "TT-REF-002",
                f"refresh without {' and '.join(k.replace('_', ' ') for k in missing)}",
                "refresh",
                missing[0],
            )
        if p.detection.refresh_reuse is None:
            yield finding(
                "TT-DET-001",
                "issues refresh tokens, but no response to refresh-token reuse is declared",
                "detection",
            )

    def session(self, p: PathSpec, finding: _Make) -> Iterator[Finding]:
        level = p.assurance_level
        if level is None:
            yield finding(
                "TT-SES-002",
                "human session path without assurance_level: its limits cannot be checked",
                "output",
            )
            return
        lifetime = p.session_lifetime
        assert lifetime is not None
        if lifetime > level.absolute_limit:
            where: tuple[str, ...] = ("session", "absolute_lifetime")
            if p.refresh is not None and p.refresh.absolute_lifetime == lifetime:
                where = ("refresh", "absolute_lifetime")
            yield finding(
                "TT-SES-001",
                f"session lasts {format_duration(lifetime)}, above the {level.value} overall "
                f"limit {format_duration(level.absolute_limit)} (SP 800-63B-4 {level.section})",
                *where,
            )
        idle = p.session_idle_timeout
        limit = level.idle_limit
        if limit is not None and (idle is None or idle > limit):
            said = (
                "no inactivity timeout" if idle is None else f"idle timeout {format_duration(idle)}"
            )
            yield finding(
                "TT-SES-001",
                f"{said}, above the {level.value} inactivity limit {format_duration(limit)} "
                f"(SP 800-63B-4 {level.section})",
                "session",
                "idle_timeout",
            )

    def recovery(self, p: PathSpec, finding: _Make) -> Iterator[Finding]:
        admin = [j for j, inp in enumerate(p.inputs) if inp.value == "admin_key"]
        if admin:
            yield finding(
                "TT-REC-001",
                f"support tooling (admin_key) mints {p.output} material directly",
                "inputs",
                admin[0],
            )
        rec = p.recovery
        if rec is None:  # the loader insists that a recovery grant path declares one
            return
        if rec.delivery == "support":
            yield finding(
                "TT-REC-001",
                "the recovery grant goes to the support engineer, not the subject",
                "recovery",
                "delivery",
            )
        elif not admin and any(inp.value != "recovery_grant" for inp in p.inputs):
            yield finding(
                "TT-REC-001",
                "recovery path takes inputs other than a recovery grant redeemed by the subject",
                "inputs",
            )
        if not rec.proofing:
            yield finding(
                "TT-REC-002", "recovery without any identity-proofing step", "recovery", "proofing"
            )
        if rec.approvers.count == 0:
            yield finding(
                "TT-REC-003", "recovery needs no approval", "recovery", "approvers", "count"
            )
        elif not rec.approvers.distinct_from_requester:
            yield finding(
                "TT-REC-003",
                "the requester may approve their own recovery",
                "recovery",
                "approvers",
                "distinct_from_requester",
            )
        if not rec.notify_subject:
            yield finding(
                "TT-REC-004",
                "recovery does not notify the subject",
                "recovery",
                "notify_subject",
            )

    def scopes(self, p: PathSpec, finding: _Make) -> Iterator[Finding]:
        unbounded = []
        for key in ("audiences", "scopes"):
            values = getattr(p, key)
            if values is None:
                unbounded.append(key)
                continue
            for j, value in enumerate(values):
                if "*" in value:
                    yield finding("TT-SCP-001", f"wildcard in {key}: {value!r}", key, j)
        if unbounded:
            yield finding("TT-SCP-002", f"declares no {' and no '.join(unbounded)}", "output")

    # --- credential kinds and clients ---------------------------------------------

    def credential_kinds(self) -> Iterator[Finding]:
        policy = self.m.spec.policy
        for i, k in enumerate(self.m.spec.credential_kinds):
            at = ("credential_kinds", i)
            subject = f"credential_kind:{k.id}"
            nhi = k.principal == "workload"
            if k.is_static and k.rotation_period is None:
                yield Finding(
                    rule("TT-CRD-001"),
                    f"credential kind {k.id!r} ({k.type.value}) is static and never rotated",
                    (*at, "type"),
                    subject,
                    nhi,
                )
            if k.is_static:
                problem = None
                loc: Loc = (*at, "max_age")
                if k.max_age is None:
                    problem = "declares no max_age"
                    loc = (*at, "type")
                elif k.max_age > policy.max_credential_age:
                    problem = (
                        f"max_age {format_duration(k.max_age)} exceeds the policy bound "
                        f"{format_duration(policy.max_credential_age)}"
                    )
                elif k.rotation_period is not None and k.rotation_period > k.max_age:
                    problem = (
                        f"rotation_period {format_duration(k.rotation_period)} is longer than "
                        f"max_age {format_duration(k.max_age)}"
                    )
                    loc = (*at, "rotation_period")
                if problem:
                    yield Finding(
                        rule("TT-CRD-002"),
                        f"credential kind {k.id!r} ({k.type.value}) {problem}",
                        loc,
                        subject,
                        nhi,
                    )
            holders = self.w.holders.get(k.id, [])
            if len(holders) > 1:
                yield Finding(
                    rule("TT-CRD-003"),
                    f"credential kind {k.id!r} is shared by clients "
                    f"{', '.join(c.id for c in holders)}",
                    at,
                    subject,
                    nhi,
                )
            if k.principal == "human":
                yield from self.human_kind(i, k.id, k.type.value, holders)

    def human_kind(
        self, i: int, kind_id: str, type_: str, holders: list[ClientSpec]
    ) -> Iterator[Finding]:
        allowed = {pid for c in holders for pid in c.paths} if holders else None
        for _, p in self.w.by_type.get(type_, []):
            if p.principal == "workload" and (allowed is None or p.id in allowed):
                yield Finding(
                    rule("TT-HUM-001"),
                    f"human credential kind {kind_id!r} is accepted on workload path {p.id!r}",
                    ("credential_kinds", i, "principal"),
                    f"credential_kind:{kind_id}",
                )

    def clients(self) -> Iterator[Finding]:
        for i, c in enumerate(self.m.spec.clients):
            at = ("clients", i)
            if c.principal == "human":
                for j, pid in enumerate(c.paths):
                    p = self.m.get(pid)
                    if p is not None and p.principal == "workload":
                        yield Finding(
                            rule("TT-HUM-001"),
                            f"client {c.id!r} is operated by people but may use workload "
                            f"path {pid!r}",
                            (*at, "paths", j),
                            f"client:{c.id}",
                        )
            for key in ("audiences", "scopes"):
                for j, value in enumerate(getattr(c, key) or []):
                    if "*" in value:
                        yield Finding(
                            rule("TT-SCP-001"),
                            f"client {c.id!r}: wildcard in {key}: {value!r}",
                            (*at, key, j),
                            f"client:{c.id}",
                        )


class _Make(Protocol):
    """Signature of the per-path finding factory."""

    def __call__(self, rule_id: str, message: str, *keys: str | int) -> Finding: ...
