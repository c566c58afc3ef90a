"""Analyzer rules: stable ids, severity, rationale, remediation and framework mappings.

The rule definitions here are the single source of ``docs/rules.md``, of
``tokentrail paths explain RULE`` and of the SARIF rule descriptors. Ids never
change meaning; a retired rule keeps its id reserved.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from tokentrail.policy.frameworks import (
    CSF,
    OWASP_NHI,
    SP800_63B,
    ZTA_TENETS,
    sp800_63b_label,
    zta_label,
)
from tokentrail.policy.yamlsource import Loc


class Severity(StrEnum):
    """Finding severity, from most to least severe."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    INFO = "info"

    @property
    def rank(self) -> int:
        """Higher is more severe."""
        return _RANK[self]

    @property
    def sarif_level(self) -> str:
        return {"critical": "error", "high": "error", "medium": "warning"}.get(self.value, "note")

    @property
    def security_severity(self) -> str:
        """The CVSS-like score code-scanning tools sort by."""
        return _SCORE[self]


_RANK = {
    Severity.INFO: 0,
    Severity.LOW: 1,
    Severity.MEDIUM: 2,
    Severity.HIGH: 3,
    Severity.CRITICAL: 4,
}
_SCORE = {
    Severity.CRITICAL: "9.5",
    Severity.HIGH: "8.0",
    Severity.MEDIUM: "5.5",
    Severity.LOW: "3.0",
    Severity.INFO: "0.0",
}


@dataclass(frozen=True, slots=True)
class Rule:
    """One analyzer rule."""

    id: str
    name: str
    title: str
    severity: Severity
    rationale: str
    remediation: str
    owasp: tuple[str, ...] = ()
    csf: tuple[str, ...] = ()
    zta: tuple[int, ...] = ()
    sp800_63b: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    example: str = ""

    def mappings(self, *, nhi: bool = True) -> dict[str, list[str]]:
        """Framework identifiers, labelled as STANDARDS.md writes them."""
        return {
            "owasp_nhi": list(self.owasp) if nhi else [],
            "nist_csf": list(self.csf),
            "sp800_207": [zta_label(t) for t in self.zta],
            "sp800_63b": [sp800_63b_label(s) for s in self.sp800_63b],
        }

    def tags(self) -> list[str]:
        return ["security", *self.owasp, *self.csf]


@dataclass(frozen=True, slots=True)
class Finding:
    """A rule violated at one place in the map."""

    rule: Rule
    message: str
    loc: Loc
    subject: str
    #: False when the finding concerns a human identity: OWASP NHI mappings are left out.
    nhi: bool = True
    details: dict[str, object] = field(default_factory=dict)

    @property
    def severity(self) -> Severity:
        return self.rule.severity


_EX_OWNERS = """\
owners:
  credential_issuance: platform-iam
  authentication: platform-iam
  recovery: identity-ops
  detection: secops
"""

RULES: tuple[Rule, ...] = (
    Rule(
        id="TT-OWN-001",
        name="missing-owner",
        title="A path names no owning team for one of the four functions",
        severity=Severity.HIGH,
        rationale=(
            "Each of the four functions on a path (credential issuance and storage; "
            "authentication and session creation; recovery and support; detection and "
            "response) needs one owning team. Without one, nobody rotates the secret, reviews "
            "the recovery or answers the alert, and after a compromise nobody can explain the "
            "step that failed. `tokentrail serve` refuses such a map; the analyzer reports it "
            "so CI shows it with every other finding."
        ),
        remediation="Name a declared team under `owners` for each of the four functions.",
        owasp=("NHI1:2025",),
        csf=("GV.RR-02", "ID.AM-08"),
        example=_EX_OWNERS,
    ),
    Rule(
        id="TT-OWN-002",
        name="chain-without-accountable-owner",
        title="An end-to-end chain has no single accountable owner",
        severity=Severity.HIGH,
        rationale=(
            "A chain from a credential through one or more paths to a session or token "
            "crosses teams. After a compromise one team must be able to explain the whole "
            "path from secret to session termination. A chain whose steps name different "
            "accountable teams, or none, leaves that explanation to nobody."
        ),
        remediation=(
            "Declare the chain under `chains` with `accountable: <team>`, or give every path "
            "in it the same `accountable` team."
        ),
        owasp=("NHI1:2025",),
        csf=("GV.RR-02",),
        example=(
            "chains:\n"
            "  - id: workload-to-downstream\n"
            "    entry: workload-secret\n"
            "    steps: [workload-client-credentials, workload-token-exchange]\n"
            "    accountable: platform-iam\n"
        ),
    ),
    Rule(
        id="TT-TTL-001",
        name="access-token-ttl-above-bound",
        title="Access-token TTL above the bound for its principal kind",
        severity=Severity.HIGH,
        rationale=(
            "An access token is a bearer of access for its whole life; a thief who copies one "
            "keeps it that long, and revocation reaches resource servers only through their "
            "revocation view. Short-lived tokens limit the damage of every leak. The bound "
            "per principal kind is `principals.<kind>.max_access_token_ttl` (default 1h)."
        ),
        remediation=(
            "Lower `max_ttl` to the bound (minutes for workloads); use refresh tokens or "
            "re-run client credentials for longer work."
        ),
        owasp=("NHI7:2025",),
        csf=("PR.AA-01", "PR.AA-03"),
        zta=(3,),
        references=("RFC 9700 §2.3",),
        example="max_ttl: 10m\n",
    ),
    Rule(
        id="TT-BIND-001",
        name="bearer-output",
        title="Bearer (unbound) tokens reachable from a workload credential or human session",
        severity=Severity.MEDIUM,
        rationale=(
            "An unbound token works for whoever holds it: a token copied from a log, a proxy "
            "or a compromised host is as good as the original. Sender-constrained tokens "
            "(DPoP, RFC 9449; certificate-bound, RFC 8705) are useless without the holder's "
            "private key, so a stolen token or refresh token mints nothing."
        ),
        remediation=(
            "Set `binding: dpop` (or `mtls` for workloads with client certificates) and "
            "declare `detection.binding_mismatch`."
        ),
        owasp=("NHI2:2025",),
        csf=("PR.AA-03", "PR.AA-04"),
        sp800_63b=("§5.1",),
        references=("RFC 9449", "RFC 8705", "RFC 9700 §2.2"),
        example="binding: dpop\ndetection:\n  binding_mismatch: revoke_family\n",
    ),
    Rule(
        id="TT-REF-001",
        name="refresh-without-absolute-lifetime",
        title="Refresh without an absolute lifetime",
        severity=Severity.CRITICAL,
        rationale=(
            "A refresh-token family with no absolute lifetime can be refreshed forever: "
            "whoever steals one refresh token keeps minting access tokens without presenting "
            "anything else, and rotation only changes which token they hold. Its persistence "
            "window is infinite."
        ),
        remediation=(
            "Give `refresh.absolute_lifetime` a bound (for human sessions at most the SP "
            "800-63B-4 overall timeout of the assurance level), or declare `assurance_level` "
            "and omit it to take the default."
        ),
        owasp=("NHI7:2025",),
        csf=("PR.AA-01", "PR.AA-03"),
        zta=(3, 6),
        sp800_63b=("§5.2",),
        references=("RFC 9700 §4.14",),
        example="refresh:\n  rotation: true\n  reuse_detection: true\n  absolute_lifetime: 12h\n",
    ),
    Rule(
        id="TT-REF-002",
        name="refresh-without-rotation-or-reuse-detection",
        title="Refresh without rotation and reuse detection",
        severity=Severity.HIGH,
        rationale=(
            "Without rotation a stolen refresh token stays valid next to the legitimate one; "
            "without reuse detection a replayed, rotated-out token goes unnoticed. RFC 9700 "
            "§4.14.2 asks for sender-constrained refresh tokens or rotation with reuse "
            "detection that revokes the whole family."
        ),
        remediation="Set `refresh.rotation: true` and `refresh.reuse_detection: true`.",
        owasp=("NHI7:2025", "NHI2:2025"),
        csf=("PR.AA-01", "DE.CM-09"),
        references=("RFC 9700 §4.14.2", "RFC 6749 §6"),
        example="refresh:\n  rotation: true\n  reuse_detection: true\n",
    ),
    Rule(
        id="TT-SES-001",
        name="session-beyond-aal-limits",
        title="Session lifetimes beyond the SP 800-63B-4 limits of the declared assurance level",
        severity=Severity.HIGH,
        rationale=(
            "SP 800-63B-4 sets reauthentication limits per assurance level: AAL1 overall at "
            "most 30 days; AAL2 overall at most 24 hours and inactivity at most 1 hour; AAL3 "
            "overall at most 12 hours and inactivity at most 15 minutes. A session that "
            "outlives them keeps a stolen session secret useful past the point where the "
            "subscriber would have had to authenticate again."
        ),
        remediation=(
            "Lower `session.absolute_lifetime`, `session.idle_timeout` and `refresh.*` to the "
            "level's limits, or omit them to take the defaults."
        ),
        csf=("PR.AA-03",),
        zta=(6,),
        sp800_63b=("§2.1.3", "§2.2.3", "§2.3.3", "§5.2"),
        example="assurance_level: AAL2\nsession:\n  absolute_lifetime: 12h\n  idle_timeout: 30m\n",
    ),
    Rule(
        id="TT-SES-002",
        name="human-session-without-assurance-level",
        title="Human session path without an assurance level",
        severity=Severity.MEDIUM,
        rationale=(
            "Reauthentication limits follow the assurance level of the authentication behind "
            "the session, and SP 800-63B-4 §5.2 asks that the chosen limits be documented. A "
            "human session path that declares no level cannot be checked against them and "
            "gets no defaults."
        ),
        remediation="Declare `assurance_level: AAL1`, `AAL2` or `AAL3`.",
        csf=("PR.AA-03",),
        sp800_63b=("§5.2",),
        example="assurance_level: AAL2\n",
    ),
    Rule(
        id="TT-REC-001",
        name="support-mints-session-material",
        title="Support or recovery path mints session material directly",
        severity=Severity.CRITICAL,
        rationale=(
            '"If a support engineer can generate a new session token during recovery, that '
            "engineer's workflow is part of the attack surface.\" A path where support tooling "
            "(an admin key) mints tokens, or a recovery grant is handed to the support "
            "engineer, puts session material in the hands of someone other than the subject; "
            "a compromised or social-engineered help desk then mints access with no proof from "
            "the subject."
        ),
        remediation=(
            "Make recovery a `grant: recovery` path with `inputs: [recovery_grant]` and "
            "`recovery.delivery: subject`: support opens a request, approvers approve, and "
            "only the subject redeems the grant."
        ),
        owasp=("NHI10:2025",),
        csf=("PR.AA-02", "PR.AA-05"),
        sp800_63b=("§4.2",),
        example=(
            "grant: recovery\ninputs: [recovery_grant]\nrecovery:\n  delivery: subject\n"
            "  proofing: [one_time_code, upstream_reauthentication]\n"
        ),
    ),
    Rule(
        id="TT-REC-002",
        name="recovery-without-identity-proofing",
        title="Recovery without identity proofing",
        severity=Severity.HIGH,
        rationale=(
            "Recovery replaces what authenticates the subject. SP 800-63B-4 §4.2 accepts saved "
            "or issued recovery codes, recovery contacts or repeated identity proofing, and two "
            "of them at AAL2. A recovery that asks for no proof is an account takeover by "
            "phone call."
        ),
        remediation=(
            "List the proofing steps under `recovery.proofing` (for example "
            "`[one_time_code, upstream_reauthentication]`)."
        ),
        csf=("PR.AA-02",),
        sp800_63b=("§4.2",),
        example="recovery:\n  proofing: [one_time_code, upstream_reauthentication]\n",
    ),
    Rule(
        id="TT-REC-003",
        name="recovery-without-independent-approver",
        title="Recovery without an approver other than the requester",
        severity=Severity.HIGH,
        rationale=(
            "Separation of duties: the support engineer who opens a recovery must not be the "
            "one who approves it, or a single compromised or coerced account can recover any "
            "subject."
        ),
        remediation=(
            "Set `recovery.approvers.count` to 1 or more, with "
            "`distinct_from_requester: true` and the approvers' `team` and `role`."
        ),
        csf=("PR.AA-05",),
        sp800_63b=("§4.2",),
        example=(
            "recovery:\n  approvers:\n    count: 1\n    team: secops\n    role: approver\n"
            "    distinct_from_requester: true\n"
        ),
    ),
    Rule(
        id="TT-REC-004",
        name="recovery-without-subject-notification",
        title="Recovery does not notify the subject",
        severity=Severity.MEDIUM,
        rationale=(
            "SP 800-63B-4 requires that every recovery notify the subscriber, on every "
            "non-postal notification address, with instructions to repudiate it. The "
            "notification is how a subject learns that someone else recovered their account."
        ),
        remediation="Set `recovery.notify_subject: true`.",
        sp800_63b=("§4.2", "§4.6"),
        example="recovery:\n  notify_subject: true\n",
    ),
    Rule(
        id="TT-AUD-001",
        name="audit-disabled",
        title="Audit off on a path",
        severity=Severity.HIGH,
        rationale=(
            "Every issuance must leave an audit record, written with the change it describes, "
            "or an incident cannot be reconstructed and support tooling can mint access "
            "without a trace."
        ),
        remediation="Remove `audit: false` (audit is on by default).",
        owasp=("NHI10:2025",),
        csf=("PR.PS-04", "RS.AN-06"),
        zta=(7,),
        example="audit: true\n",
    ),
    Rule(
        id="TT-REV-001",
        name="non-revocable-output",
        title="Non-revocable output",
        severity=Severity.HIGH,
        rationale=(
            "A token is revocable in practice only if its verifiers check its lineage claim "
            "against a revocation view (or introspect it), and only while that view still "
            "holds the revoked id. Tokens whose verifiers check signature and expiry only, or "
            "that live longer than `policy.revocation_view_bound`, outlive their revocation."
        ),
        remediation=(
            "Set `revocation_check: lineage` (or `introspection`) and keep `max_ttl` within "
            "`policy.revocation_view_bound`."
        ),
        owasp=("NHI7:2025", "NHI2:2025"),
        csf=("PR.AA-01", "RS.MI-01"),
        zta=(6,),
        example="revocation_check: lineage\nmax_ttl: 10m\n",
    ),
    Rule(
        id="TT-XCH-001",
        name="exchange-without-delegation-bound-or-act",
        title="Token exchange without a delegation-depth bound or without `act`",
        severity=Severity.HIGH,
        rationale=(
            "Token exchange lets one service act for another. Without a depth bound, tokens "
            "can be re-exchanged through any number of services; without `act` "
            "(impersonation), the minted token no longer says who is acting, so lineage and "
            "audit lose the actor. `tokentrail serve` refuses an exchange path without a bound."
        ),
        remediation="Set `max_delegation_depth` (1-3 is typical) and keep `act: true`.",
        owasp=("NHI9:2025",),
        csf=("PR.AA-05", "RS.AN-06"),
        references=("RFC 8693 §4.1",),
        example="grant: token_exchange\nmax_delegation_depth: 2\nact: true\n",
    ),
    Rule(
        id="TT-CRD-001",
        name="static-credential-without-rotation",
        title="Static credential kind without rotation",
        severity=Severity.HIGH,
        rationale=(
            "A static secret (client secret, private key, certificate, API key) that is never "
            "rotated stays valid for as long as it exists; once it leaks, the thief keeps "
            "minting until someone notices. Paths that accept a credential type for which no "
            "credential kind is declared are reported too: nothing says it rotates."
        ),
        remediation=(
            "Declare the credential kind under `credential_kinds` with `rotation_period` and "
            "`max_age`, and rotate it automatically; prefer federation (no static secret)."
        ),
        owasp=("NHI7:2025",),
        csf=("PR.AA-01",),
        example=(
            "credential_kinds:\n  - id: billing-key\n    type: private_key_jwt\n"
            "    rotation_period: 30d\n    max_age: 60d\n"
        ),
    ),
    Rule(
        id="TT-CRD-002",
        name="static-credential-beyond-max-age",
        title="Static credential kind beyond the maximum age",
        severity=Severity.HIGH,
        rationale=(
            "Rotation bounds how long a leaked secret works only if old credentials stop "
            "working: a static kind needs a `max_age` within `policy.max_credential_age`, and "
            "a rotation period no longer than that age."
        ),
        remediation=(
            "Set `max_age` at most `policy.max_credential_age` and `rotation_period` at most "
            "`max_age`."
        ),
        owasp=("NHI7:2025",),
        csf=("PR.AA-01",),
        example="rotation_period: 30d\nmax_age: 60d\n",
    ),
    Rule(
        id="TT-CRD-003",
        name="credential-kind-shared",
        title="One credential kind shared by several clients",
        severity=Severity.MEDIUM,
        rationale=(
            "When several clients authenticate with the same credential, compromising one "
            "exposes all of them, revocation takes them all down at once, and the audit trail "
            "cannot tell them apart."
        ),
        remediation="Give each client its own credential kind.",
        owasp=("NHI9:2025",),
        csf=("PR.AA-01",),
    ),
    Rule(
        id="TT-HUM-001",
        name="human-on-workload-path",
        title="Humans allowed on a workload path",
        severity=Severity.HIGH,
        rationale=(
            "When people use a workload's path (a client operated by people, or a human "
            "credential accepted on a workload path), activity can no longer be attributed to "
            "a person or to automation, and human-account controls such as MFA and session "
            "limits are bypassed."
        ),
        remediation=(
            "Give people their own human path (with an assurance level and session limits) "
            "and keep workload paths to workload clients and credentials."
        ),
        owasp=("NHI10:2025",),
        csf=("PR.AA-03", "PR.AA-05"),
    ),
    Rule(
        id="TT-SCP-001",
        name="wildcard-audience-or-scope",
        title="Wildcard audience or scope",
        severity=Severity.HIGH,
        rationale=(
            "A wildcard audience or scope grants whatever exists now or is added later: every "
            "token from the path is as powerful as the most sensitive API it could name. "
            "(tokentrail itself matches audiences and scopes literally; the wildcard is a "
            "design smell and, at resource servers that match patterns, overprivilege.)"
        ),
        remediation="List the audiences and scopes the path needs, exactly.",
        owasp=("NHI5:2025",),
        csf=("PR.AA-05",),
        zta=(3,),
        example="audiences: [https://billing.internal]\nscopes: [invoices:read]\n",
    ),
    Rule(
        id="TT-SCP-002",
        name="unbounded-audience-or-scope",
        title="Path does not bound its audiences or scopes",
        severity=Severity.LOW,
        rationale=(
            "A path without `audiences` or `scopes` leaves least privilege to each client's "
            "registration; a reviewer reading the map cannot see what the path can reach."
        ),
        remediation="Declare `audiences` and `scopes` on the path.",
        owasp=("NHI5:2025",),
        csf=("PR.AA-05",),
        zta=(3,),
        example="audiences: [https://api.internal]\nscopes: [read]\n",
    ),
    Rule(
        id="TT-DET-001",
        name="missing-detection-response",
        title="No detection response for refresh reuse or binding mismatch",
        severity=Severity.HIGH,
        rationale=(
            "Refresh-token reuse and a bound token presented with the wrong key are the "
            "runtime signals of a stolen token. Without a declared response (notify owners, "
            "revoke the node, the family or the root credential) the signal is at best a log "
            "line."
        ),
        remediation=(
            "Declare `detection.refresh_reuse` on refresh paths and `detection.binding_mismatch` "
            "on bound paths (revoke_family is the usual response)."
        ),
        owasp=("NHI2:2025",),
        csf=("DE.CM-09", "RS.MI-01"),
        zta=(6,),
        example="detection:\n  refresh_reuse: revoke_family\n  binding_mismatch: revoke_family\n",
    ),
    Rule(
        id="TT-WIN-001",
        name="infinite-persistence-window",
        title="Infinite persistence window",
        severity=Severity.CRITICAL,
        rationale=(
            "The persistence window of an entry point is how long a thief holding only that "
            "credential or token can keep minting without presenting anything else. It is "
            "infinite when a static credential has no maximum age or rotation, or a refresh "
            "chain has no absolute lifetime: one leak then means access until someone notices."
        ),
        remediation=(
            "Bound every credential kind (`max_age`, `rotation_period`) and every refresh "
            "family (`refresh.absolute_lifetime`); prefer sender-constrained tokens."
        ),
        owasp=("NHI7:2025",),
        csf=("PR.AA-01", "PR.AA-03"),
        zta=(3,),
    ),
)

BY_ID: dict[str, Rule] = {r.id: r for r in RULES}
BY_NAME: dict[str, Rule] = {r.name: r for r in RULES}


def rule(rule_id: str) -> Rule:
    return BY_ID[rule_id]


def find_rule(key: str) -> Rule | None:
    """A rule by id (any case) or name."""
    return BY_ID.get(key.strip().upper()) or BY_NAME.get(key.strip().lower())


def framework_title(kind: str, ident: str | int) -> str:
    """The title of a framework identifier, for rule pages."""
    if kind == "owasp":
        return OWASP_NHI[str(ident)]
    if kind == "csf":
        return CSF[str(ident)]
    if kind == "zta":
        return ZTA_TENETS[int(ident)]
    return SP800_63B[str(ident)]
