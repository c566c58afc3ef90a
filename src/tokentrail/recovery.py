"""Help-desk account recovery as a declared, approved, audited issuance path (issue 5).

A support engineer never holds session material. The engineer (an admin key
with role ``support`` in the team that owns the path's recovery function) opens
a *recovery request* for a subject on a recovery path; the path declares what
the request needs:

* **identity proofing** (``recovery.proofing``): a one-time code sent to the
  subject's registered channel, which the subject reads back (8 decimal digits
  from :mod:`secrets`, valid 10 minutes, at most :data:`MAX_ATTEMPTS` wrong
  answers before the request locks; SP 800-63B-4 §4.2, STANDARDS.md §4.3), and
  an upstream re-authentication assertion, verified exactly as the JWT bearer
  grant verifies a login, for the same subject;
* **approvals** (``recovery.approvers``): distinct people of the named team and
  role, never the requester; each approval lapses after ``expires``;
* a **rate** per subject (``recovery.rate``): a request beyond it is refused and
  fires the ``recovery_volume`` detection.

When proofing and approvals are complete, tokentrail mints a single-use
*recovery grant* (256 random bits, valid ``grant_ttl``) and delivers it only to
the subject's channel through the notification outbox. The subject's
application redeems it at the token endpoint with the extension grant type
``urn:tokentrail:params:oauth:grant-type:recovery`` (see
:mod:`tokentrail.oauth.grants.recovery`). Redemption contains the old account
state (the subject's previous sessions and the credential kinds the path names
are revoked), creates a session whose lineage parent is the recovery node, and
notifies the subject on every registered channel (SP 800-63B-4 §4.6).

Lineage: each request is a node of kind ``recovery_grant`` whose id is the
request id; the session it produces hangs below it, so ``tokentrail lineage
show <request>`` and an incident's accountability report show which help-desk
action produced a session, with the requester and approvers as actors.

Secrets: codes are stored as keyed hashes (HMAC under a key derived from the
key-encryption key, so a database copy cannot be brute-forced offline), grants
as SHA-256; the code and the grant sit in the outbox sealed under the
key-encryption key and are opened only by the dispatcher when it delivers them.
No API or CLI response carries either.

Every transition runs in one transaction with its audit record and its
notifications: a failure part way leaves the request where it was, and no
usable grant. Recovery can be frozen globally or per path (persisted in the
database, so every node sees it at once).
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from tokentrail import crypto, ids
from tokentrail.errors import Conflict, Forbidden, InvalidGrant, NotFound
from tokentrail.lineage import revoke
from tokentrail.model import AdminKey, Node, NodeKind
from tokentrail.oauth.authority import Authority
from tokentrail.oauth.grants.jwt_bearer import JwtBearerGrant, upstream_node_id
from tokentrail.policy.paths import DetectionKind, Grant, PathSpec, ProofingStep, RecoveryPolicy
from tokentrail.storage.store import Store, Tx
from tokentrail.upstream import claimed_aal

#: Decimal digits of a one-time code (SP 800-63B-4 §4.2: issued codes have at least 6).
CODE_DIGITS = 8
#: Validity of a one-time code, in seconds (SP 800-63B-4: at most 10 minutes for SMS/voice).
CODE_TTL = 600
#: Wrong proofing answers (codes and re-authentications) before the request locks.
MAX_ATTEMPTS = 5
#: Codes one request may send (the first and two resends).
MAX_CODES = 3
#: A request not granted within this time expires (a granted one lives as long as its grant).
REQUEST_TTL = 4 * 3600
#: The path-wide volume alarm: more requests on a path within its rate window than
#: ``rate.max`` times this fire ``recovery_volume`` (they are not refused).
OVERALL_FACTOR = 10
#: Window of the path-wide alarm for a path that declares no rate.
DEFAULT_WINDOW = 86_400
#: The freeze scope that stops every recovery path.
GLOBAL = "*"
#: Kinds of subject channel.
CHANNEL_KINDS = ("email", "sms", "voice", "push")
#: Prefix of recovery grants (so scanners can spot a leaked one).
GRANT_PREFIX = "ttrg"
#: The token-endpoint parameter that carries the grant.
GRANT_PARAM = "recovery_grant"
GRANT_TYPE = Grant.RECOVERY.grant_type
_SEAL_CONTEXT = b"tokentrail outbox secret v1"
_JKT = re.compile(r"^[A-Za-z0-9_-]{43}$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")
_PHONE = re.compile(r"^\+[1-9][0-9]{6,14}$")


class State(StrEnum):
    """Where a recovery request stands; :data:`TRANSITIONS` lists every allowed move.

    .. code-block:: mermaid

        stateDiagram-v2
            [*] --> requested: support opens (code sent to the subject's channel)
            requested --> proofing: a proofing step done, more to do
            requested --> awaiting_approval: every proofing step done
            proofing --> awaiting_approval: every proofing step done
            awaiting_approval --> granted: enough valid approvals (grant sent to the subject)
            granted --> redeemed: the subject redeems the grant at the token endpoint
            requested --> locked: too many wrong proofing answers
            proofing --> locked: too many wrong proofing answers
            granted --> locked: grant presented by another client or DPoP key
            requested --> denied: an approver denies
            proofing --> denied
            awaiting_approval --> denied
            granted --> denied
            requested --> expired: not granted in time
            proofing --> expired
            awaiting_approval --> expired
            granted --> expired: grant not redeemed in time
            requested --> cancelled: support withdraws it
            proofing --> cancelled
            awaiting_approval --> cancelled
            granted --> cancelled
            redeemed --> [*]
            denied --> [*]
            expired --> [*]
            locked --> [*]
            cancelled --> [*]
    """

    REQUESTED = "requested"
    PROOFING = "proofing"
    AWAITING_APPROVAL = "awaiting_approval"
    GRANTED = "granted"
    REDEEMED = "redeemed"
    DENIED = "denied"
    EXPIRED = "expired"
    LOCKED = "locked"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return not TRANSITIONS[self]


_ENDS = frozenset({State.DENIED, State.EXPIRED, State.CANCELLED})
TRANSITIONS: dict[State, frozenset[State]] = {
    State.REQUESTED: frozenset({State.PROOFING, State.AWAITING_APPROVAL, State.LOCKED, *_ENDS}),
    State.PROOFING: frozenset({State.AWAITING_APPROVAL, State.LOCKED, *_ENDS}),
    State.AWAITING_APPROVAL: frozenset({State.GRANTED, *_ENDS}),
    State.GRANTED: frozenset({State.REDEEMED, State.LOCKED, *_ENDS}),
    State.REDEEMED: frozenset(),
    State.DENIED: frozenset(),
    State.EXPIRED: frozenset(),
    State.LOCKED: frozenset(),
    State.CANCELLED: frozenset(),
}
OPEN_STATES = tuple(s.value for s in State if not s.terminal)


class Event(StrEnum):
    """Audit events of the recovery workflow (never carrying a code or a grant)."""

    CHANNEL_REGISTERED = "channel.registered"
    CHANNEL_REMOVED = "channel.removed"
    REQUESTED = "recovery.requested"
    CODE_SENT = "recovery.code_sent"
    PROOFED = "recovery.proofed"
    PROOF_FAILED = "recovery.proof_failed"
    APPROVED = "recovery.approved"
    GRANTED = "recovery.granted"
    DENIED = "recovery.denied"
    CANCELLED = "recovery.cancelled"
    EXPIRED = "recovery.expired"
    LOCKED = "recovery.locked"
    REDEEMED = "recovery.redeemed"
    GRANT_REUSED = "recovery.grant_reused"
    REFUSED = "recovery.refused"
    FROZEN = "recovery.frozen"
    UNFROZEN = "recovery.unfrozen"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: an admin key (team and roles), or the CLI operator (no team)."""

    id: str
    team: str | None
    roles: tuple[str, ...]

    @classmethod
    def of_key(cls, key: AdminKey) -> Actor:
        return cls(f"admin_key:{key.id}", key.team_id, key.roles)


T = TypeVar("T")


class Deferred(Exception):
    """Raised inside a unit of work: commit what was written, then raise ``error``.

    Refusals that must leave a trace (a failed attempt counted, a lock, an
    expiry, an audited refusal) are committed before the caller sees the error.
    """

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def run_unit(store: Store, fn: Callable[[Tx], T]) -> T:
    """Run ``fn`` in one write transaction; a :class:`Deferred` commits, then raises."""
    with store.write() as tx:
        try:
            return fn(tx)
        except Deferred as kept:
            error = kept.error
    raise error


# --- shared by the workflow and the redemption grant ---------------------------------


def frozen(tx: Tx, path_id: str) -> dict[str, Any] | None:
    """The freeze that stops recovery on ``path_id`` (global or the path's own), if any."""
    rows = tx.freezes([GLOBAL, path_id])
    return rows[0] if rows else None


def transition(tx: Tx, row: dict[str, Any], to: State, now: float, **values: Any) -> None:
    """Move ``row`` to ``to`` if :data:`TRANSITIONS` allows it (compare-and-set on its state)."""
    current = State(row["state"])
    if to not in TRANSITIONS[current]:
        raise Conflict(f"recovery request {row['id']} is {current.value}; it cannot become {to}")
    if not tx.update_recovery(
        row["id"], expect=current.value, state=to.value, updated_at=now, **values
    ):
        raise Conflict(f"recovery request {row['id']} changed meanwhile; try again")
    row.update(values, state=to.value, updated_at=now)


def notify_subject(tx: Tx, subject: str, topic: str, payload: dict[str, Any], now: float) -> int:
    """Queue ``payload`` to every registered channel of ``subject``; returns how many."""
    channels = tx.subject_channels(subject)
    for ch in channels:
        tx.enqueue(
            topic=topic,
            recipient=ch["address"],
            payload={"subject": subject, "channel": ch["id"], "kind": ch["kind"], **payload},
            at=now,
        )
    return len(channels)


def notify_owner(
    tx: Tx, authority: Authority, path: PathSpec, topic: str, payload: dict[str, Any], now: float
) -> None:
    """Queue ``payload`` to the team that owns the path's recovery function."""
    owner = path.owners.recovery
    team = authority.paths.teams.get(owner) if owner else None
    recipient = (team.contact or f"team:{team.id}") if team else "team:unassigned"
    tx.enqueue(topic=topic, recipient=recipient, payload={"path": path.id, **payload}, at=now)


def lock(
    tx: Tx,
    authority: Authority,
    row: dict[str, Any],
    path: PathSpec,
    *,
    why: str,
    actor: str,
    now: float,
) -> None:
    """Lock the request, revoke its node (and so anything minted from it), tell everyone."""
    transition(tx, row, State.LOCKED, now, closed_by=actor, close_reason=why)
    revoke(
        tx,
        row["id"],
        reason=f"recovery locked: {why}",
        actor=actor,
        now=now,
        horizon=authority.horizon,
    )
    audit_request(
        tx,
        Event.LOCKED,
        row,
        at=now,
        actor=actor,
        data={"request": row["id"], "path": row["path_id"], "reason": why},
    )
    note = {"request": row["id"], "reason": why, "at": now}
    notify_subject(
        tx,
        row["subject"],
        "recovery.locked",
        {
            **note,
            "message": "A recovery of your account was stopped. If you did not ask for it, "
            "contact your help desk.",
        },
        now,
    )
    notify_owner(tx, authority, path, "recovery.locked", {**note, "subject": row["subject"]}, now)


def mask(kind: str, address: str) -> str:
    """An address as a support engineer may see it: ``a***@example.com``, ``***4567``."""
    if kind == "email" and "@" in address:
        local, _, domain = address.partition("@")
        return f"{local[:1]}***@{domain}"
    if kind in ("sms", "voice"):
        return f"***{address[-4:]}"
    return f"{address[:2]}***"


def recovery_path(authority: Authority, path_id: str) -> tuple[PathSpec, RecoveryPolicy]:
    path = authority.paths.get(path_id)
    if path is None:
        raise NotFound(f"no declared issuance path {path_id!r}")
    if path.grant is not Grant.RECOVERY or path.recovery is None:
        raise ValueError(f"path {path_id!r} is not a recovery path (grant: recovery)")
    return path, path.recovery


# --- the workflow -----------------------------------------------------------------------


class Recovery:
    """Channels, recovery requests, proofing, approvals, grants and freezes."""

    def __init__(self, authority: Authority, *, key: bytes) -> None:
        self._a = authority
        self._store = authority.store
        self._clock = authority.clock
        self._code_key = crypto.derive_key(key, b"tokentrail recovery code v1")
        self._seal_key = crypto.derive_key(key, b"tokentrail outbox seal v1")
        self._upstream = JwtBearerGrant(authority)

    # --- sealed secrets in the outbox ------------------------------------------------

    def _seal(self, value: str) -> dict[str, str]:
        sealed = crypto.seal(self._seal_key, value.encode(), context=_SEAL_CONTEXT)
        return {"sealed": crypto.b64url(sealed)}

    def unseal_payload(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The payload with its sealed values opened (the dispatcher calls this to deliver)."""
        out: dict[str, Any] = {}
        for key, value in payload.items():
            if (
                isinstance(value, dict)
                and set(value) == {"sealed"}
                and isinstance(value["sealed"], str)
            ):
                opened = crypto.unseal(
                    self._seal_key, crypto.b64url_decode(value["sealed"]), context=_SEAL_CONTEXT
                )
                out[key] = opened.decode()
            else:
                out[key] = value
        return out

    def _code_hash(self, request_id: str, code: str) -> str:
        return crypto.hmac_sha256(self._code_key, f"{request_id}\x00{code}".encode()).hex()

    # --- channels ---------------------------------------------------------------------

    def add_channel(self, subject: str, kind: str, address: str, *, actor: str) -> dict[str, Any]:
        """Register where ``subject`` receives codes, grants and notices; tell the others."""
        _check_subject(subject)
        address = address.strip()
        if kind not in CHANNEL_KINDS:
            raise ValueError(f"channel kind must be one of {', '.join(CHANNEL_KINDS)}")
        if kind == "email" and not _EMAIL.match(address):
            raise ValueError("an email channel needs an address like name@example.com")
        if kind in ("sms", "voice") and not _PHONE.match(address):
            raise ValueError(f"a {kind} channel needs an E.164 number such as +15551234567")
        if not address or len(address) > 320 or not address.isprintable():
            raise ValueError("a channel address is 1 to 320 printable characters")
        now = self._clock.now()
        row = {
            "id": ids.new_id("ch"),
            "subject": subject,
            "kind": kind,
            "address": address,
            "created_at": now,
            "created_by": actor,
            "removed_at": None,
        }
        with self._store.write() as tx:
            existing = tx.subject_channels(subject)
            if any(c["kind"] == kind and c["address"] == address for c in existing):
                raise Conflict(f"subject {subject!r} already has this {kind} channel")
            tx.insert_channel(row)
            tx.append_audit(
                Event.CHANNEL_REGISTERED,
                at=now,
                actor=actor,
                subject=subject,
                data={"channel": row["id"], "kind": kind, "address": mask(kind, address)},
            )
            # SP 800-63B-4 §4.1: tell the subject, on the channels they already had.
            for ch in existing:
                tx.enqueue(
                    topic="recovery.channel_added",
                    recipient=ch["address"],
                    payload={
                        "subject": subject,
                        "channel": ch["id"],
                        "added": {"kind": kind, "address": mask(kind, address)},
                        "at": now,
                        "message": "A new recovery channel was added to your account. If this "
                        "was not you, contact your help desk.",
                    },
                    at=now,
                )
        return _channel_view(row, reveal=True)

    def channels(self, subject: str, *, reveal: bool = False) -> list[dict[str, Any]]:
        with self._store.read() as tx:
            return [_channel_view(c, reveal=reveal) for c in tx.subject_channels(subject)]

    def remove_channel(self, channel_id: str, *, actor: str) -> dict[str, Any]:
        now = self._clock.now()
        with self._store.write() as tx:
            row = tx.get_channel(channel_id)
            if row is None or row["removed_at"] is not None:
                raise NotFound(f"no channel {channel_id!r}")
            tx.remove_channel(channel_id, at=now)
            tx.append_audit(
                Event.CHANNEL_REMOVED,
                at=now,
                actor=actor,
                subject=row["subject"],
                data={"channel": channel_id, "kind": row["kind"]},
            )
        return {"id": channel_id, "subject": row["subject"], "removed_at": now}

    # --- requests -----------------------------------------------------------------------

    def open(
        self,
        actor: Actor,
        *,
        subject: str,
        path_id: str,
        client_id: str,
        reason: str,
        channel_id: str | None = None,
    ) -> dict[str, Any]:
        """Open a recovery request; sends the one-time code when the path requires one."""
        _check_subject(subject)
        reason = reason.strip()
        if not reason or len(reason) > 2000:
            raise ValueError("a recovery request needs a reason (at most 2000 characters)")
        path, rec = recovery_path(self._a, path_id)
        if rec.delivery != "subject":
            raise ValueError(
                f"path {path.id!r} delivers recovery grants to support (TT-REC-001); "
                "tokentrail delivers grants to the subject only"
            )

        def unit(tx: Tx) -> dict[str, Any]:
            now = self._clock.now()
            refuse = self._refuser(tx, actor, now, subject=subject, path=path)
            self._check_frozen(tx, path, refuse)
            self._check_support(actor, path, refuse)
            client = tx.get_client(client_id)
            if client is None:
                raise NotFound(f"no client {client_id!r}")
            if path.id not in client.paths:
                raise ValueError(f"client {client_id} may not use path {path.id!r}")
            channel = self._pick_channel(tx, subject, channel_id)
            if channel["created_by"] == actor.id:
                refuse("the requester registered this channel; another person must register it")
            if tx.list_recoveries(subject=subject, states=OPEN_STATES, limit=1):
                raise Conflict(f"subject {subject!r} already has an open recovery request")
            self._check_rate(tx, path, rec, subject, now, refuse)
            request_id = ids.new_id("rec")
            team = path.owners.recovery or actor.team or ""
            tx.insert_node(
                Node(
                    id=request_id,
                    kind=NodeKind.RECOVERY_GRANT,
                    path_id=path.id,
                    client_id=client.id,
                    subject=subject,
                    team_id=team,
                    parents=(),
                    ancestors=(),
                    created_at=now,
                    expires_at=None,
                    meta={"requester": actor.id, "reason": reason, "channel": channel["id"]},
                )
            )
            row: dict[str, Any] = {
                "id": request_id,
                "path_id": path.id,
                "subject": subject,
                "client_id": client.id,
                "team_id": team,
                "requester": actor.id,
                "reason": reason,
                "channel_id": channel["id"],
                "state": State.REQUESTED.value,
                "created_at": now,
                "updated_at": now,
                "expires_at": now + REQUEST_TTL,
                "proofing": {step.value: None for step in rec.proofing},
                "code_hash": None,
                "code_expires_at": None,
                "attempts": 0,
                "codes_sent": 0,
                "dpop_jkt": None,
                "approvals": [],
                "grant_hash": None,
                "granted_at": None,
                "redeemed_at": None,
                "session_id": None,
                "closed_by": None,
                "close_reason": None,
            }
            tx.insert_recovery(row)
            tx.append_audit(
                Event.REQUESTED,
                at=now,
                actor=actor.id,
                node_id=request_id,
                client_id=client.id,
                subject=subject,
                team_id=team,
                data={
                    "request": request_id,
                    "path": path.id,
                    "reason": reason,
                    "channel": channel["id"],
                    "channel_kind": channel["kind"],
                    "proofing": [s.value for s in rec.proofing],
                    "approvals_required": rec.approvers.count,
                    "expires_at": row["expires_at"],
                },
            )
            if rec.notify_subject:
                notify_subject(
                    tx,
                    subject,
                    "recovery.requested",
                    {
                        "request": request_id,
                        "at": now,
                        "message": "Your help desk opened a recovery of your account. If you "
                        "did not ask for it, contact your help desk and do not share any code.",
                    },
                    now,
                )
            if ProofingStep.ONE_TIME_CODE in rec.proofing:
                self._send_code(tx, row, channel, actor, now)
            self._advance(tx, row, path, rec, actor, now)
            self._volume_alarm(tx, path, rec, now)
            return self._view(tx, row, now)

        return run_unit(self._store, unit)

    def proof(
        self,
        actor: Actor,
        request_id: str,
        *,
        code: str | None = None,
        assertion: str | None = None,
        dpop_jkt: str | None = None,
    ) -> dict[str, Any]:
        """Record identity-proofing evidence: the code the subject read back, a fresh login."""
        if code is None and assertion is None:
            raise ValueError("give the code the subject read back, an upstream assertion, or both")
        if dpop_jkt is not None and not _JKT.match(dpop_jkt):
            raise ValueError("dpop_jkt must be an RFC 7638 SHA-256 thumbprint (43 base64url chars)")
        verified: tuple[Any, dict[str, Any]] | None = None
        failure: str | None = None
        if assertion is not None:
            try:
                verified = self._upstream._verify(assertion, self._clock.now())
            except InvalidGrant as exc:
                failure = f"upstream re-authentication failed: {exc.description}"

        def unit(tx: Tx) -> dict[str, Any]:
            now = self._clock.now()
            row, path, rec = self._load(tx, request_id, now)
            refuse = self._refuser(tx, actor, now, subject=row["subject"], path=path, row=row)
            self._check_frozen(tx, path, refuse)
            self._check_support(actor, path, refuse)
            state = State(row["state"])
            if state not in (State.REQUESTED, State.PROOFING):
                raise Conflict(f"recovery request {request_id} is {state.value}: proofing is over")
            proofing = dict(row["proofing"])
            done: dict[str, Any] = {}
            if code is not None:
                step = ProofingStep.ONE_TIME_CODE.value
                self._step_open(proofing, step, path)
                if row["code_hash"] is None or row["code_expires_at"] <= now:
                    refuse(
                        "the one-time code has expired or was not sent; send a new one with "
                        "`tokentrail recovery resend`",
                        evidence={"step": step},
                    )
                if not hmac.compare_digest(row["code_hash"], self._code_hash(row["id"], code)):
                    self._failed(tx, row, path, actor, now, step, "wrong one-time code")
                done[step] = {"channel": row["channel_id"], "code_sent": row["codes_sent"]}
            if assertion is not None:
                step = ProofingStep.UPSTREAM_REAUTHENTICATION.value
                self._step_open(proofing, step, path)
                if verified is None:
                    self._failed(tx, row, path, actor, now, step, failure or "invalid assertion")
                assert verified is not None
                trusted, claims = verified
                if claims["sub"] != row["subject"]:
                    self._failed(
                        tx, row, path, actor, now, step, "the assertion names another subject"
                    )
                replay = crypto.hash_secret(f"assertion\x00{trusted.issuer}\x00{claims['jti']}")
                if not tx.remember_once(replay, expires_at=float(claims["exp"]) + 60, now=now):
                    self._failed(tx, row, path, actor, now, step, "the assertion was already used")
                done[step] = {
                    "issuer": trusted.issuer,
                    "upstream": upstream_node_id(trusted.issuer, claims["sub"]),
                    "auth_time": claims.get("auth_time", claims.get("iat")),
                    "aal": min(claimed_aal(claims), trusted.max_aal),
                }
            for step, evidence in done.items():
                proofing[step] = {"at": now, "by": actor.id, "evidence": evidence}
            values: dict[str, Any] = {"proofing": proofing}
            if code is not None:
                values["code_hash"] = None  # single use
            if dpop_jkt is not None:
                values["dpop_jkt"] = dpop_jkt
            if not tx.update_recovery(row["id"], expect=state.value, updated_at=now, **values):
                raise Conflict(f"recovery request {request_id} changed meanwhile; try again")
            row.update(values)
            audit_request(
                tx,
                Event.PROOFED,
                row,
                at=now,
                actor=actor.id,
                data={
                    "request": row["id"],
                    "path": path.id,
                    "steps": sorted(done),
                    "evidence": done,
                    "dpop_bound": row["dpop_jkt"] is not None,
                },
            )
            self._advance(tx, row, path, rec, actor, now)
            return self._view(tx, row, now)

        return run_unit(self._store, unit)

    def resend(self, actor: Actor, request_id: str) -> dict[str, Any]:
        """Send a fresh one-time code (the previous one stops working)."""

        def unit(tx: Tx) -> dict[str, Any]:
            now = self._clock.now()
            row, path, _rec = self._load(tx, request_id, now)
            refuse = self._refuser(tx, actor, now, subject=row["subject"], path=path, row=row)
            self._check_frozen(tx, path, refuse)
            self._check_support(actor, path, refuse)
            state = State(row["state"])
            if state not in (State.REQUESTED, State.PROOFING):
                raise Conflict(f"recovery request {request_id} is {state.value}: proofing is over")
            self._step_open(dict(row["proofing"]), ProofingStep.ONE_TIME_CODE.value, path)
            if row["codes_sent"] >= MAX_CODES:
                refuse(f"this request already sent {MAX_CODES} codes; open a new request")
            channel = tx.get_channel(row["channel_id"])
            if channel is None or channel["removed_at"] is not None:
                raise Conflict("the request's channel was removed; cancel and open a new request")
            self._send_code(tx, row, channel, actor, now)
            return self._view(tx, row, now)

        return run_unit(self._store, unit)

    def approve(self, actor: Actor, request_id: str, *, note: str = "") -> dict[str, Any]:
        """Approve; with the last approval needed, the grant goes to the subject's channel."""

        def unit(tx: Tx) -> dict[str, Any]:
            now = self._clock.now()
            row, path, rec = self._load(tx, request_id, now)
            refuse = self._refuser(tx, actor, now, subject=row["subject"], path=path, row=row)
            self._check_frozen(tx, path, refuse)
            state = State(row["state"])
            if state in (State.REQUESTED, State.PROOFING):
                raise Conflict(
                    f"recovery request {request_id} is {state.value}: identity proofing is not "
                    "complete"
                )
            if state is not State.AWAITING_APPROVAL:
                raise Conflict(f"recovery request {request_id} is {state.value}")
            if rec.approvers.distinct_from_requester and actor.id == row["requester"]:
                refuse("the requester cannot approve their own recovery request")
            self._check_approver(actor, path, rec, refuse)
            approvals = [dict(a) for a in row["approvals"]]
            if any(a["by"] == actor.id and a["expires_at"] > now for a in approvals):
                raise Conflict(f"{actor.id} has already approved this request")
            approvals = [a for a in approvals if a["by"] != actor.id]
            approval = {
                "by": actor.id,
                "team": actor.team,
                "role": rec.approvers.role,
                "at": now,
                "expires_at": now + rec.approvers.expires,
                "note": note.strip()[:500],
            }
            approvals.append(approval)
            if not tx.update_recovery(
                row["id"], expect=state.value, approvals=approvals, updated_at=now
            ):
                raise Conflict(f"recovery request {request_id} changed meanwhile; try again")
            row["approvals"] = approvals
            valid = [a for a in approvals if a["expires_at"] > now]
            audit_request(
                tx,
                Event.APPROVED,
                row,
                at=now,
                actor=actor.id,
                data={
                    "request": row["id"],
                    "path": path.id,
                    "approvals": len(valid),
                    "required": rec.approvers.count,
                    "expires_at": approval["expires_at"],
                    "note": approval["note"],
                },
            )
            self._advance(tx, row, path, rec, actor, now)
            return self._view(tx, row, now)

        return run_unit(self._store, unit)

    def deny(self, actor: Actor, request_id: str, *, reason: str) -> dict[str, Any]:
        """An approver refuses the request; an issued, unredeemed grant dies with it."""
        return self._close(actor, request_id, reason, State.DENIED)

    def cancel(self, actor: Actor, request_id: str, *, reason: str) -> dict[str, Any]:
        """Support withdraws the request; an issued, unredeemed grant dies with it."""
        return self._close(actor, request_id, reason, State.CANCELLED)

    def _close(self, actor: Actor, request_id: str, reason: str, to: State) -> dict[str, Any]:
        reason = reason.strip()
        if not reason:
            raise ValueError(
                f"a {'denial' if to is State.DENIED else 'cancellation'} needs a reason"
            )

        def unit(tx: Tx) -> dict[str, Any]:
            now = self._clock.now()
            row, path, rec = self._load(tx, request_id, now)
            refuse = self._refuser(tx, actor, now, subject=row["subject"], path=path, row=row)
            if to is State.DENIED:
                self._check_approver(actor, path, rec, refuse)
            else:
                self._check_support(actor, path, refuse)
            if State(row["state"]).terminal:
                raise Conflict(f"recovery request {request_id} is {row['state']}")
            transition(tx, row, to, now, closed_by=actor.id, close_reason=reason)
            revoke(
                tx,
                row["id"],
                reason=f"recovery {to.value}: {reason}",
                actor=actor.id,
                now=now,
                horizon=self._a.horizon,
            )
            audit_request(
                tx,
                Event.DENIED if to is State.DENIED else Event.CANCELLED,
                row,
                at=now,
                actor=actor.id,
                data={"request": row["id"], "path": path.id, "reason": reason},
            )
            if rec.notify_subject:
                notify_subject(
                    tx,
                    row["subject"],
                    f"recovery.{to.value}",
                    {
                        "request": row["id"],
                        "at": now,
                        "message": "A recovery of your account "
                        f"was {to.value}; no access was granted.",
                    },
                    now,
                )
            return self._view(tx, row, now)

        return run_unit(self._store, unit)

    # --- reading ------------------------------------------------------------------------

    def status(self, actor: Actor, request_id: str) -> dict[str, Any]:
        """One request as the actor may see it (never the code or the grant)."""

        def unit(tx: Tx) -> dict[str, Any]:
            now = self._clock.now()
            row, path, _rec = self._load(tx, request_id, now, strict=False)
            if not self._may_see(actor, row, path):
                raise NotFound(f"no recovery request {request_id!r}")
            return self._view(tx, row, now)

        return run_unit(self._store, unit)

    def find(
        self, actor: Actor, *, subject: str | None = None, state: str | None = None
    ) -> list[dict[str, Any]]:
        if state is not None and state not in {s.value for s in State}:
            raise ValueError(f"state must be one of {', '.join(s.value for s in State)}")
        now = self._clock.now()
        with self._store.read() as tx:
            rows = tx.list_recoveries(subject=subject, states=(state,) if state else ())
            out = []
            for row in rows:
                path = self._a.paths.get(row["path_id"])
                if path is not None and self._may_see(actor, row, path):
                    out.append(self._view(tx, row, now))
            return out

    # --- freezes ------------------------------------------------------------------------

    def freeze(self, actor: str, *, path_id: str | None = None, reason: str) -> dict[str, Any]:
        """Stop recovery on one path, or on every path (``path_id`` None), until unfrozen."""
        reason = reason.strip()
        if not reason:
            raise ValueError("a freeze needs a reason")
        paths = [recovery_path(self._a, path_id)[0]] if path_id else self._recovery_paths()
        scope = path_id or GLOBAL
        now = self._clock.now()
        with self._store.write() as tx:
            new = tx.put_freeze(scope, at=now, by=actor, reason=reason)
            if new:
                tx.append_audit(
                    Event.FROZEN,
                    at=now,
                    actor=actor,
                    data={"scope": scope, "reason": reason},
                )
                for path in paths:
                    notify_owner(
                        tx,
                        self._a,
                        path,
                        "recovery.frozen",
                        {"scope": scope, "reason": reason},
                        now,
                    )
            current = tx.freezes([scope])[0]
        return {"scope": scope, "already_frozen": not new, **_freeze_view(current)}

    def unfreeze(self, actor: str, *, path_id: str | None = None) -> dict[str, Any]:
        if path_id is not None:
            recovery_path(self._a, path_id)
        scope = path_id or GLOBAL
        now = self._clock.now()
        with self._store.write() as tx:
            removed = tx.delete_freeze(scope)
            if not removed:
                raise Conflict(
                    "recovery is not frozen " + (f"on path {path_id!r}" if path_id else "globally")
                )
            tx.append_audit(Event.UNFROZEN, at=now, actor=actor, data={"scope": scope})
            remaining = [f["scope"] for f in tx.freezes()]
        return {"scope": scope, "unfrozen": True, "still_frozen": remaining}

    def freezes(self) -> list[dict[str, Any]]:
        with self._store.read() as tx:
            return [_freeze_view(f) for f in tx.freezes()]

    # --- internals ----------------------------------------------------------------------

    def _recovery_paths(self) -> list[PathSpec]:
        return [p for p in self._a.paths.paths if p.grant is Grant.RECOVERY]

    def _load(
        self, tx: Tx, request_id: str, now: float, *, strict: bool = True
    ) -> tuple[dict[str, Any], PathSpec, RecoveryPolicy]:
        """The request, row-locked; one past its time becomes ``expired`` (committed, and
        refused when ``strict``)."""
        row = tx.get_recovery(request_id, for_update=True)
        if row is None:
            raise NotFound(f"no recovery request {request_id!r}")
        path, rec = recovery_path(self._a, row["path_id"])
        if not State(row["state"]).terminal and tx.first_revoked([row["id"]]):
            # Revoked from outside (an incident on the subject, `tokentrail revoke`).
            why = "its lineage node was revoked"
            transition(
                tx, row, State.CANCELLED, now, closed_by="tokentrail:recovery", close_reason=why
            )
            audit_request(
                tx,
                Event.CANCELLED,
                row,
                at=now,
                actor="tokentrail:recovery",
                data={"request": row["id"], "path": row["path_id"], "reason": why},
            )
            if strict:
                raise Deferred(Conflict(f"recovery request {request_id} was revoked"))
        if not State(row["state"]).terminal and row["expires_at"] <= now:
            expire(tx, row, now)
            if strict:
                raise Deferred(Conflict(f"recovery request {request_id} has expired"))
        return row, path, rec

    def _refuser(
        self,
        tx: Tx,
        actor: Actor,
        now: float,
        *,
        subject: str,
        path: PathSpec,
        row: dict[str, Any] | None = None,
    ) -> Callable[..., None]:
        """A function that records a refusal in the ledger and raises ``Forbidden`` after commit."""

        def refuse(message: str, *, evidence: dict[str, Any] | None = None) -> None:
            tx.append_audit(
                Event.REFUSED,
                at=now,
                actor=actor.id,
                node_id=row["id"] if row else None,
                client_id=row["client_id"] if row else None,
                subject=subject,
                team_id=actor.team,
                data={
                    "request": row["id"] if row else None,
                    "path": path.id,
                    "reason": message,
                    **(evidence or {}),
                },
            )
            raise Deferred(Forbidden(message))

        return refuse

    def _check_frozen(self, tx: Tx, path: PathSpec, refuse: Callable[..., None]) -> None:
        freeze = frozen(tx, path.id)
        if freeze is not None:
            where = "globally" if freeze["scope"] == GLOBAL else f"on path {path.id!r}"
            refuse(f"recovery is frozen {where}: {freeze['reason']}")

    @staticmethod
    def _check_support(actor: Actor, path: PathSpec, refuse: Callable[..., None]) -> None:
        if "support" not in actor.roles:
            refuse("recovery requests are handled by admin keys with the support role")
        owner = path.owners.recovery
        if owner is not None and actor.team != owner:
            refuse(f"path {path.id!r} is recovered by team {owner!r}, not {actor.team!r}")

    @staticmethod
    def _check_approver(
        actor: Actor, path: PathSpec, rec: RecoveryPolicy, refuse: Callable[..., None]
    ) -> None:
        role = rec.approvers.role
        if role not in actor.roles:
            refuse(f"approvals on path {path.id!r} need the {role!r} role")
        team = rec.approvers.team or path.owners.recovery
        if team is not None and actor.team != team:
            refuse(f"approvals on path {path.id!r} come from team {team!r}, not {actor.team!r}")

    @staticmethod
    def _step_open(proofing: dict[str, Any], step: str, path: PathSpec) -> None:
        if step not in proofing:
            raise ValueError(f"path {path.id!r} does not use {step} proofing")
        if proofing[step] is not None:
            raise Conflict(f"{step} proofing is already done")

    def _pick_channel(self, tx: Tx, subject: str, channel_id: str | None) -> dict[str, Any]:
        channels = tx.subject_channels(subject)
        if not channels:
            raise ValueError(
                f"subject {subject!r} has no registered channel; register one first "
                "(`tokentrail recovery channel add`)"
            )
        if channel_id is None:
            return channels[0]
        for ch in channels:
            if ch["id"] == channel_id:
                return ch
        raise NotFound(f"subject {subject!r} has no channel {channel_id!r}")

    def _check_rate(
        self,
        tx: Tx,
        path: PathSpec,
        rec: RecoveryPolicy,
        subject: str,
        now: float,
        refuse: Callable[..., None],
    ) -> None:
        if rec.rate is None:
            return
        count = tx.count_recoveries(path.id, since=now - rec.rate.per, subject=subject)
        if count >= rec.rate.max:
            evidence = {
                "scope": "subject",
                "count": count,
                "max": rec.rate.max,
                "window_seconds": rec.rate.per,
            }
            self._a.detections.fire(
                DetectionKind.RECOVERY_VOLUME,
                path_id=path.id,
                subject=subject,
                team_id=path.owners.recovery,
                evidence=evidence,
                tx=tx,
            )
            refuse(
                f"subject {subject!r} reached the recovery rate of path {path.id!r} "
                f"({rec.rate.max} per {rec.rate.per} s)",
                evidence=evidence,
            )

    def _volume_alarm(self, tx: Tx, path: PathSpec, rec: RecoveryPolicy, now: float) -> None:
        window = rec.rate.per if rec.rate else DEFAULT_WINDOW
        limit = (rec.rate.max if rec.rate else 1) * OVERALL_FACTOR
        count = tx.count_recoveries(path.id, since=now - window)
        if count > limit:
            self._a.detections.fire(
                DetectionKind.RECOVERY_VOLUME,
                path_id=path.id,
                team_id=path.owners.recovery,
                evidence={
                    "scope": "path",
                    "count": count,
                    "limit": limit,
                    "window_seconds": window,
                },
                tx=tx,
            )

    def _send_code(
        self, tx: Tx, row: dict[str, Any], channel: dict[str, Any], actor: Actor, now: float
    ) -> None:
        code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
        values = {
            "code_hash": self._code_hash(row["id"], code),
            "code_expires_at": now + CODE_TTL,
            "codes_sent": row["codes_sent"] + 1,
            "updated_at": now,
        }
        if not tx.update_recovery(row["id"], expect=row["state"], **values):
            raise Conflict(f"recovery request {row['id']} changed meanwhile; try again")
        row.update(values)
        tx.enqueue(
            topic="recovery.code",
            recipient=channel["address"],
            payload={
                "subject": row["subject"],
                "channel": channel["id"],
                "kind": channel["kind"],
                "request": row["id"],
                "code": self._seal(code),
                "expires_at": values["code_expires_at"],
                "message": "Your account recovery code. Read it back only to the help-desk "
                "agent who is on the line with you; it expires in 10 minutes.",
            },
            at=now,
        )
        audit_request(
            tx,
            Event.CODE_SENT,
            row,
            at=now,
            actor=actor.id,
            data={
                "request": row["id"],
                "channel": channel["id"],
                "channel_kind": channel["kind"],
                "expires_at": values["code_expires_at"],
                "codes_sent": values["codes_sent"],
            },
        )

    def _failed(
        self,
        tx: Tx,
        row: dict[str, Any],
        path: PathSpec,
        actor: Actor,
        now: float,
        step: str,
        why: str,
    ) -> None:
        """Count a wrong proofing answer; at :data:`MAX_ATTEMPTS` the request locks."""
        attempts = int(row["attempts"]) + 1
        left = MAX_ATTEMPTS - attempts
        if not tx.update_recovery(
            row["id"], expect=row["state"], attempts=attempts, updated_at=now
        ):
            raise Conflict(f"recovery request {row['id']} changed meanwhile; try again")
        row["attempts"] = attempts
        audit_request(
            tx,
            Event.PROOF_FAILED,
            row,
            at=now,
            actor=actor.id,
            data={
                "request": row["id"],
                "path": path.id,
                "step": step,
                "reason": why,
                "attempt": attempts,
                "attempts_left": max(0, left),
            },
        )
        if left <= 0:
            lock(
                tx,
                self._a,
                row,
                path,
                why=f"{MAX_ATTEMPTS} failed proofing attempts",
                actor=actor.id,
                now=now,
            )
            raise Deferred(
                Forbidden(f"{why}; {MAX_ATTEMPTS} failed attempts: the request is now locked")
            )
        raise Deferred(Forbidden(f"{why}; {left} attempt(s) left before the request locks"))

    def _advance(
        self,
        tx: Tx,
        row: dict[str, Any],
        path: PathSpec,
        rec: RecoveryPolicy,
        actor: Actor,
        now: float,
    ) -> None:
        """Take every transition the request's evidence now allows."""
        state = State(row["state"])
        if state in (State.REQUESTED, State.PROOFING):
            pending = [s for s, done in row["proofing"].items() if done is None]
            if pending and any(done is not None for done in row["proofing"].values()):
                if state is State.REQUESTED:
                    transition(tx, row, State.PROOFING, now)
                return
            if pending:
                return
            transition(tx, row, State.AWAITING_APPROVAL, now)
            state = State.AWAITING_APPROVAL
        if state is State.AWAITING_APPROVAL:
            valid = [a for a in row["approvals"] if a["expires_at"] > now]
            if len(valid) >= rec.approvers.count:
                self._grant(tx, row, path, rec, valid, actor, now)

    def _grant(
        self,
        tx: Tx,
        row: dict[str, Any],
        path: PathSpec,
        rec: RecoveryPolicy,
        approvals: list[dict[str, Any]],
        actor: Actor,
        now: float,
    ) -> None:
        """Mint the single-use grant and queue it to the subject's channel, in this transaction."""
        channel = tx.get_channel(row["channel_id"])
        if channel is None or channel["removed_at"] is not None:
            raise Conflict("the request's channel was removed; cancel and open a new request")
        secret = ids.new_secret(GRANT_PREFIX)
        expires = now + rec.grant_ttl
        transition(
            tx,
            row,
            State.GRANTED,
            now,
            grant_hash=crypto.hash_secret(secret),
            granted_at=now,
            expires_at=expires,
        )
        tx.enqueue(
            topic="recovery.grant",
            recipient=channel["address"],
            payload={
                "subject": row["subject"],
                "channel": channel["id"],
                "kind": channel["kind"],
                "request": row["id"],
                "recovery_grant": self._seal(secret),
                "grant_type": GRANT_TYPE,
                "token_endpoint": f"{self._a.issuer}/oauth/token",
                "client_id": row["client_id"],
                "expires_at": expires,
                "message": "Your account recovery grant. Use it once, in your application, "
                "before it expires. Never give it to anyone, including the help desk.",
            },
            at=now,
        )
        audit_request(
            tx,
            Event.GRANTED,
            row,
            at=now,
            actor=actor.id,
            data={
                "request": row["id"],
                "path": path.id,
                "requester": row["requester"],
                "approvers": [a["by"] for a in approvals],
                "channel": channel["id"],
                "channel_kind": channel["kind"],
                "expires_at": expires,
            },
        )

    def _may_see(self, actor: Actor, row: dict[str, Any], path: PathSpec) -> bool:
        if actor.team is None or "admin" in actor.roles:
            return True
        rec = path.recovery
        approver_team = rec.approvers.team if rec is not None else None
        return actor.team in (row["team_id"], approver_team)

    def _view(self, tx: Tx, row: dict[str, Any], now: float) -> dict[str, Any]:
        channel = tx.get_channel(row["channel_id"])
        path = self._a.paths.get(row["path_id"])
        rec = path.recovery if path is not None else None
        required = rec.approvers.count if rec is not None else 0
        granted = row["granted_at"] is not None
        state = State(row["state"])
        if not state.terminal and row["expires_at"] <= now:
            state = State.EXPIRED  # not yet recorded: the next change records it
        return {
            "id": row["id"],
            "state": state.value,
            "path": row["path_id"],
            "subject": row["subject"],
            "client_id": row["client_id"],
            "team": row["team_id"],
            "requester": row["requester"],
            "reason": row["reason"],
            "channel": (
                {
                    "id": channel["id"],
                    "kind": channel["kind"],
                    "address": mask(channel["kind"], channel["address"]),
                }
                if channel
                else None
            ),
            "created_at": row["created_at"],
            "updated_at": row["updated_at"],
            "expires_at": row["expires_at"],
            "proofing": {
                step: {
                    "done": done is not None,
                    **({"at": done["at"], "by": done["by"]} if done else {}),
                }
                for step, done in row["proofing"].items()
            },
            "code_expires_at": row["code_expires_at"] if row["code_hash"] else None,
            "attempts": row["attempts"],
            "attempts_left": max(0, MAX_ATTEMPTS - int(row["attempts"])),
            "dpop_bound": row["dpop_jkt"] is not None,
            "approvals": [
                {
                    "by": a["by"],
                    "team": a["team"],
                    "at": a["at"],
                    "expires_at": a["expires_at"],
                    "valid": a["expires_at"] > now or granted,
                }
                for a in row["approvals"]
            ],
            "approvals_required": required,
            "grant": (
                {
                    "issued_at": row["granted_at"],
                    "expires_at": row["expires_at"],
                    "redeemed_at": row["redeemed_at"],
                    "session": row["session_id"],
                }
                if granted
                else None
            ),
            "closed_by": row["closed_by"],
            "close_reason": row["close_reason"],
        }


def audit_request(
    tx: Tx, event: Event, row: dict[str, Any], *, at: float, actor: str, data: dict[str, Any]
) -> None:
    """An audit record about a recovery request: its node, client, subject and team."""
    tx.append_audit(
        event,
        at=at,
        actor=actor,
        node_id=row["id"],
        client_id=row["client_id"],
        subject=row["subject"],
        team_id=row["team_id"],
        data=data,
    )


def expire(tx: Tx, row: dict[str, Any], now: float) -> None:
    """Move a request past its time to ``expired`` (its grant, if any, dies with it)."""
    transition(tx, row, State.EXPIRED, now)
    audit_request(
        tx,
        Event.EXPIRED,
        row,
        at=now,
        actor="tokentrail:recovery",
        data={"request": row["id"], "path": row["path_id"], "expired_at": row["expires_at"]},
    )


def _check_subject(subject: str) -> None:
    if not subject or len(subject) > 256 or not subject.isprintable():
        raise ValueError("a subject is 1 to 256 printable characters")


def _channel_view(row: dict[str, Any], *, reveal: bool) -> dict[str, Any]:
    return {
        "id": row["id"],
        "subject": row["subject"],
        "kind": row["kind"],
        "address": row["address"] if reveal else mask(row["kind"], row["address"]),
        "created_at": row["created_at"],
        "created_by": row["created_by"],
    }


def _freeze_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "scope": row["scope"],
        "frozen_at": row["frozen_at"],
        "frozen_by": row["frozen_by"],
        "reason": row["reason"],
    }
