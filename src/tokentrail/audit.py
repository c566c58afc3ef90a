"""Audit events: the dotted names every record in the ledger carries.

Records are written by :meth:`tokentrail.storage.store.Tx.append_audit` inside
the same transaction as the state change they describe. They name secrets by
id, never by value.
"""

from __future__ import annotations

from enum import StrEnum


class Event(StrEnum):
    """Event names of the audit ledger."""

    TEAM_CREATED = "team.created"
    CLIENT_CREATED = "client.created"
    CREDENTIAL_ISSUED = "credential.issued"
    CREDENTIAL_ROTATED = "credential.rotated"
    ISSUER_TRUSTED = "issuer.trusted"
    ADMIN_KEY_CREATED = "admin_key.created"
    ADMIN_DENIED = "admin.denied"
    KEY_ROTATED = "signing_key.rotated"
    TOKEN_ISSUED = "token.issued"
    TOKEN_REFRESHED = "token.refreshed"
    TOKEN_EXCHANGED = "token.exchanged"
    SESSION_CREATED = "session.created"
    ISSUANCE_REFUSED = "issuance.refused"
    NODE_REVOKED = "node.revoked"
    CLIENT_AUTH_FAILED = "client_auth.failed"
    REFRESH_REUSE_DETECTED = "detection.refresh_reuse"
