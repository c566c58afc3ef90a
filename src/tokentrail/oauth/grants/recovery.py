"""Recovery grant — the extension grant ``urn:tokentrail:params:oauth:grant-type:recovery``.

RFC 6749 §4.5 lets a server define grant types by absolute URI. The subject's
application, having received a help-desk recovery grant on the subject's
registered channel (see :mod:`tokentrail.recovery`), redeems it here::

    POST /oauth/token
    grant_type=urn:tokentrail:params:oauth:grant-type:recovery
    &recovery_grant=ttrg_...            (+ client authentication, + DPoP header)

and gets a new session: an access token and, when the path declares refresh,
a refresh token. Lineage::

    recovery request (kind recovery_grant; requester and approvers in the ledger)
        -> session -> refresh token -> access token

Refusals, each recorded in the ledger: an unknown grant; a grant whose request
is not ``granted`` (denied, cancelled, locked, expired, or already redeemed);
a frozen path; a client other than the one the request names; a path that
requires DPoP without a proof; a DPoP key other than the one bound at proofing.

A grant is single use. Like an authorization code presented twice (RFC 6749
§4.1.2), a second redemption is refused *and* revokes the session the first
one produced. A grant presented by another client or with another DPoP key is
in the wrong hands: the request locks and its node (with anything minted from
it) is revoked; the DPoP case also fires the path's ``binding_mismatch``
detection. Redemption and its containment (the subject's previous sessions and
the credential kinds the path names are revoked) are one transaction.
"""

from __future__ import annotations

import math
from typing import Any

from tokentrail import crypto, ids
from tokentrail.audit import Event
from tokentrail.detections import signalled
from tokentrail.errors import InvalidGrant, UnauthorizedClient
from tokentrail.lineage import revoke
from tokentrail.model import Node, NodeKind
from tokentrail.oauth.authority import Authority, token_response
from tokentrail.oauth.binding import Binding
from tokentrail.oauth.client_auth import AuthenticatedClient
from tokentrail.oauth.dpop import InvalidDPoPProof
from tokentrail.oauth.grants.jwt_bearer import session_binding
from tokentrail.oauth.request import OAuthRequest
from tokentrail.policy.paths import DetectionKind, PathSpec, RecoveryPolicy
from tokentrail.recovery import (
    GRANT_PARAM,
    GRANT_PREFIX,
    GRANT_TYPE,
    Deferred,
    State,
    audit_request,
    expire,
    frozen,
    lock,
    notify_owner,
    notify_subject,
    run_unit,
)
from tokentrail.recovery import Event as RecoveryEvent
from tokentrail.storage.store import Tx


class RecoveryGrant:
    GRANT_TYPE = GRANT_TYPE
    DEFERS_WRITE = False

    def __init__(self, authority: Authority) -> None:
        self._a = authority

    def issue(
        self, auth: AuthenticatedClient, req: OAuthRequest, binding: Binding
    ) -> dict[str, Any]:
        secret = req.require(GRANT_PARAM)
        if not secret.startswith(GRANT_PREFIX + "_") or len(secret) > 100:
            raise InvalidGrant("recovery grant is invalid")
        grant_hash = crypto.hash_secret(secret)
        return run_unit(self._a.store, lambda tx: self._redeem(tx, auth, req, binding, grant_hash))

    def _redeem(
        self,
        tx: Tx,
        auth: AuthenticatedClient,
        req: OAuthRequest,
        binding: Binding,
        grant_hash: str,
    ) -> dict[str, Any]:
        a = self._a
        now = a.clock.now()
        client = auth.client
        actor = f"client:{client.id}"
        row = tx.get_recovery("", for_update=True, grant_hash=grant_hash)
        if row is None:
            raise InvalidGrant("recovery grant is invalid")
        path = a.paths.get(row["path_id"])
        if path is None or path.recovery is None:
            raise InvalidGrant("the recovery path of this grant is no longer declared")
        rec = path.recovery

        def refuse(message: str, error: Exception | None = None) -> None:
            tx.append_audit(
                RecoveryEvent.REFUSED,
                at=now,
                actor=actor,
                node_id=row["id"],
                client_id=client.id,
                subject=row["subject"],
                team_id=client.team_id,
                data={"request": row["id"], "path": path.id, "reason": message, "redeem": True},
            )
            raise Deferred(error or InvalidGrant(message))

        state = State(row["state"])
        if state is State.REDEEMED:
            self._reused(tx, row, path, actor, now)
        if state is not State.GRANTED:
            refuse(f"recovery grant is no longer usable (request {state.value})")
        if row["expires_at"] <= now:
            expire(tx, row, now)
            raise Deferred(InvalidGrant("recovery grant has expired"))
        freeze = frozen(tx, path.id)
        if freeze is not None:
            refuse(f"recovery is frozen: {freeze['reason']}")
        if tx.first_revoked([row["id"]]):
            refuse("recovery grant has been revoked")
        if client.id != row["client_id"]:
            why = f"grant presented by client {client.id}, issued for {row['client_id']}"
            lock(tx, a, row, path, why=why, actor=actor, now=now)
            raise Deferred(
                InvalidGrant("recovery grant was not issued to this client; it has been revoked")
            )
        if path.id not in client.paths:
            refuse(
                f"client {client.id} may not use path {path.id}",
                UnauthorizedClient(f"client {client.id} may not use path {path.id}"),
            )
        if path.binding != "none" and binding.kind != path.binding:
            proof = "a DPoP proof" if path.binding == "dpop" else "a client certificate"
            message = f"path {path.id} requires {path.binding}-bound tokens: send {proof}"
            refuse(message, InvalidDPoPProof(message) if path.binding == "dpop" else None)
        pinned = row["dpop_jkt"]
        if pinned is not None and binding.jkt is None:
            message = "this recovery grant is bound to a DPoP key: send a DPoP proof"
            refuse(message, InvalidDPoPProof(message))
        if pinned is not None and binding.jkt != pinned:
            why = "grant presented with another DPoP key"
            lock(tx, a, row, path, why=why, actor=actor, now=now)
            node = tx.get_node(row["id"])
            raise Deferred(
                signalled(
                    InvalidGrant(f"recovery {why}: it has been revoked"),
                    DetectionKind.BINDING_MISMATCH,
                    node,
                    presented_jkt=binding.jkt,
                    expected_jkt=pinned,
                )
            )
        return self._session(tx, auth, req, binding, row, path, rec, now)

    def _session(
        self,
        tx: Tx,
        auth: AuthenticatedClient,
        req: OAuthRequest,
        binding: Binding,
        row: dict[str, Any],
        path: PathSpec,
        rec: RecoveryPolicy,
        now: float,
    ) -> dict[str, Any]:
        a = self._a
        client = auth.client
        subject = row["subject"]
        scope = a.grant_scope(req.get("scope"), list(client.scopes), path=path)
        audience = a.grant_audience(
            req.get_all("resource") + req.get_all("audience"), list(client.audiences), path=path
        )
        approvers = [x["by"] for x in row["approvals"]]
        revoked_sessions, revoked_credentials = self._contain(tx, row, rec, now)
        recovery_node = tx.get_node(row["id"])
        if recovery_node is None:  # pragma: no cover - written with the request
            raise InvalidGrant("recovery grant is invalid")
        upstream = (row["proofing"].get("upstream_reauthentication") or {}).get("evidence", {})
        bound = session_binding(path.binding, binding, public=auth.credential is None)
        if row["dpop_jkt"] is not None and binding.jkt is not None:
            bound = {"jkt": binding.jkt}
        lifetime = path.session_lifetime or path.max_ttl
        recovery = {"request": row["id"], "requester": row["requester"], "approvers": approvers}
        session = Node(
            id=ids.new_id("ses"),
            kind=NodeKind.SESSION,
            path_id=path.id,
            client_id=client.id,
            subject=subject,
            team_id=client.team_id,
            parents=(recovery_node.id,),
            ancestors=(recovery_node.id, *recovery_node.ancestors),
            created_at=now,
            expires_at=float(math.floor(now + lifetime)),
            meta={
                "scope": scope,
                "aud": audience,
                "issuer": upstream.get("issuer"),
                "auth_time": now,
                "aal": int(upstream.get("aal", 1)),
                "recovery": recovery,
                **bound,
            },
        )
        if not tx.update_recovery(
            row["id"],
            expect=State.GRANTED.value,
            state=State.REDEEMED.value,
            updated_at=now,
            redeemed_at=now,
            session_id=session.id,
        ):
            raise InvalidGrant("recovery grant was already redeemed")
        tx.insert_node(session)
        tx.append_audit(
            Event.SESSION_CREATED,
            at=now,
            actor=f"client:{client.id}",
            node_id=session.id,
            client_id=client.id,
            subject=subject,
            team_id=client.team_id,
            data={
                "path": path.id,
                "expires_at": session.expires_at,
                "recovery": row["id"],
                "requester": row["requester"],
                "approvers": approvers,
            },
        )
        minted, refresh_secret = a.mint_session_tokens(
            tx,
            path=path,
            client=client,
            session=session,
            subject=subject,
            audience=audience,
            scope=scope,
            binding=binding,
            now=now,
        )
        tx.append_audit(
            RecoveryEvent.REDEEMED,
            at=now,
            actor=f"client:{client.id}",
            node_id=row["id"],
            client_id=client.id,
            subject=subject,
            team_id=row["team_id"],
            data={
                "request": row["id"],
                "path": path.id,
                "session": session.id,
                "requester": row["requester"],
                "approvers": approvers,
                "binding": binding.kind,
                "revoked_sessions": revoked_sessions,
                "revoked_credentials": revoked_credentials,
            },
        )
        if rec.notify_subject:
            notify_subject(
                tx,
                subject,
                "recovery.completed",
                {
                    "request": row["id"],
                    "session": session.id,
                    "at": now,
                    "ended_sessions": len(revoked_sessions),
                    "message": "Your account was recovered through the help desk and your "
                    "other sessions were ended. If this was not you, contact your help desk "
                    "at once: the new session will be revoked.",
                },
                now,
            )
        return token_response(minted, now=now, refresh_token=refresh_secret)

    def _contain(
        self, tx: Tx, row: dict[str, Any], rec: RecoveryPolicy, now: float
    ) -> tuple[list[str], list[str]]:
        """Revoke the subject's live sessions and the credential kinds the path names."""
        a = self._a
        subject = row["subject"]
        reason = f"recovery {row['id']}: containment"
        actor = f"recovery:{row['id']}"
        sessions: list[str] = []
        if rec.revokes.sessions:
            live = tx.nodes_of_subject(subject, NodeKind.SESSION, live_at=now)
            dead = tx.revocations_among({i for n in live for i in n.lineage})
            for n in live:
                if not any(i in dead for i in n.lineage):
                    revoke(tx, n.id, reason=reason, actor=actor, now=now, horizon=a.horizon)
                    sessions.append(n.id)
        credentials: list[str] = []
        kinds = [a.paths.credential_kinds[k] for k in rec.revokes.credential_kinds]
        if kinds:
            for n in tx.nodes_of_subject(subject, NodeKind.CREDENTIAL):
                for kind in kinds:
                    if kind.type.value == "upstream_assertion":
                        match = n.meta.get("kind") == "upstream_login"
                    else:
                        match = n.meta.get("credential_kind") == kind.type.value
                    if match and revoke(
                        tx, n.id, reason=reason, actor=actor, now=now, horizon=a.horizon
                    ):
                        credentials.append(n.id)
        return sessions, credentials

    def _reused(self, tx: Tx, row: dict[str, Any], path: PathSpec, actor: str, now: float) -> None:
        """RFC 6749 §4.1.2, applied to recovery grants: a second use revokes what the first made."""
        revoke(
            tx,
            row["id"],
            reason="recovery grant presented again after redemption",
            actor=actor,
            now=now,
            horizon=self._a.horizon,
        )
        audit_request(
            tx,
            RecoveryEvent.GRANT_REUSED,
            row,
            at=now,
            actor=actor,
            data={"request": row["id"], "path": path.id, "session": row["session_id"]},
        )
        note = {"request": row["id"], "session": row["session_id"], "at": now}
        notify_subject(
            tx,
            row["subject"],
            "recovery.grant_reused",
            {
                **note,
                "message": "Your recovery grant was used a second time; the session it opened "
                "has been ended. Contact your help desk.",
            },
            now,
        )
        notify_owner(
            tx, self._a, path, "recovery.grant_reused", {**note, "subject": row["subject"]}, now
        )
        raise Deferred(
            InvalidGrant(
                "recovery grant was already redeemed; the session it produced has been revoked"
            )
        )
