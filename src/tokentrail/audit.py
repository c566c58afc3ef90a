"""Audit events and the hash chain that makes the ledger tamper-evident.

Records are written by :meth:`tokentrail.storage.store.Tx.append_audit` inside
the same transaction as the state change they describe. They name secrets by
id, never by value. Each record's ``hash`` is SHA-256 over the previous
record's hash and a canonical encoding of the record (its ``seq`` included),
so editing, deleting, inserting or reordering a record breaks every hash after
it; signed checkpoints (see :mod:`tokentrail.ledger`) catch truncation.
"""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from typing import Any


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
    #: A client-certificate header (mtls_proxy_header) came from an untrusted address.
    MTLS_HEADER_IGNORED = "mtls.proxy_header_ignored"
    REFRESH_REUSE_DETECTED = "detection.refresh_reuse"


#: The ``prev_hash`` of the first record of a ledger.
GENESIS = "0" * 64


def canonical(record: dict[str, Any]) -> bytes:
    """The bytes a record's hash covers: sorted-key compact JSON of its fields."""
    fields = {k: record.get(k) for k in RECORD_FIELDS}
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_hash(prev_hash: str, record: dict[str, Any]) -> str:
    """SHA-256 over the previous hash and the canonical record, hex."""
    return link_hash(prev_hash, canonical(record))


def link_hash(prev_hash: str, body: bytes) -> str:
    """SHA-256 over the previous hash and a record's canonical bytes, hex."""
    return hashlib.sha256(bytes.fromhex(prev_hash) + body).hexdigest()


#: The fields of a record covered by its hash (everything but the hashes).
RECORD_FIELDS = (
    "seq",
    "at",
    "event",
    "actor",
    "node_id",
    "client_id",
    "subject",
    "team_id",
    "data",
)


def canonical_from_row(
    seq: int,
    at: float,
    event: str,
    actor: str,
    node_id: str | None,
    client_id: str | None,
    subject: str | None,
    team_id: str | None,
    data_json: str,
) -> bytes:
    """:func:`canonical` built from a stored row, with ``data`` as its stored canonical text.

    Equal to ``canonical(record)`` whenever ``data_json`` is the canonical encoding of
    ``data`` (JSON columns are written canonically); verification falls back to
    :func:`canonical` when a row does not match, so a non-canonical text is never
    wrongly reported as tampering.
    """
    d = _str
    return (
        f'{{"actor":{d(actor)},"at":{float.__repr__(at)},"client_id":{d(client_id)},'
        f'"data":{data_json},"event":{d(event)},"node_id":{d(node_id)},"seq":{seq},'
        f'"subject":{d(subject)},"team_id":{d(team_id)}}}'
    ).encode()


_encode = json.encoder.encode_basestring  # what json.dumps(ensure_ascii=False) uses


def _str(value: str | None) -> str:
    return "null" if value is None else _encode(value)
