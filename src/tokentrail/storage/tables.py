"""The schema, as SQLAlchemy Core tables (the migrations create the same).

Times are seconds since the epoch as floating point; JSON columns hold lists
and small objects. Secrets never appear here in clear: only their SHA-256.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

#: SQLite only auto-increments an ``INTEGER PRIMARY KEY``; PostgreSQL gets BIGINT.
Seq = BigInteger().with_variant(Integer(), "sqlite")

teams = Table(
    "teams",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("name", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)

clients = Table(
    "clients",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("team_id", String(128), nullable=False, index=True),
    Column("name", Text, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("auth_method", String(32), nullable=False),
    Column("paths", JSON, nullable=False),
    Column("scopes", JSON, nullable=False),
    Column("audiences", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("disabled_at", Float),
)

credentials = Table(
    "credentials",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("client_id", String(64), nullable=False, index=True),
    Column("kind", String(32), nullable=False),
    Column("secret_hash", String(64)),
    Column("jwks", JSON),
    Column("created_at", Float, nullable=False),
    Column("not_after", Float),
    #: tls_client_auth (RFC 8705 §2.1): the registered subject DN, canonical RFC 4514 form.
    Column("tls_subject_dn", Text),
)

trusted_issuers = Table(
    "trusted_issuers",
    metadata,
    Column("issuer", String(512), primary_key=True),
    Column("jwks", JSON, nullable=False),
    Column("audience", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("jwks_url", Text),
    Column("max_aal", Integer, nullable=False, server_default="2"),
    Column("jwks_fetched_at", Float),
)

nodes = Table(
    "nodes",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("path_id", String(128)),
    Column("client_id", String(64)),
    Column("subject", Text),
    Column("team_id", String(128)),
    Column("parents", JSON, nullable=False),
    Column("ancestors", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float),
    Column("meta", JSON, nullable=False),
    Column("token_hash", String(64), unique=True),
    Column("used_at", Float),
    Index("ix_nodes_subject", "subject"),
)

edges = Table(
    "edges",
    metadata,
    Column("parent_id", String(64), primary_key=True),
    Column("child_id", String(64), primary_key=True),
    Index("ix_edges_child", "child_id"),
)

revocations = Table(
    "revocations",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("node_id", String(64), nullable=False, unique=True),
    Column("reason", Text, nullable=False),
    Column("actor", Text, nullable=False),
    Column("revoked_at", Float, nullable=False),
    Column("matters_until", Float, nullable=False),
    sqlite_autoincrement=True,
)

seen_jtis = Table(
    "seen_jtis",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("expires_at", Float, nullable=False, index=True),
)

signing_keys = Table(
    "signing_keys",
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("alg", String(16), nullable=False),
    Column("public_jwk", JSON, nullable=False),
    Column("sealed_private", LargeBinary, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("retired_at", Float),
    Column("publish_until", Float),
    Column("purpose", String(32), nullable=False, server_default="access_token"),
)


admin_keys = Table(
    "admin_keys",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("team_id", String(128), nullable=False),
    Column("roles", JSON, nullable=False),
    Column("name", Text, nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float),
)

audit = Table(
    "audit",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("event", String(64), nullable=False, index=True),
    Column("actor", Text, nullable=False),
    Column("node_id", String(64), index=True),
    Column("client_id", String(64)),
    Column("subject", Text),
    Column("team_id", String(128)),
    Column("data", JSON, nullable=False),
    Column("prev_hash", String(64)),
    Column("hash", String(64)),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Seq, primary_key=True, autoincrement=True),
    Column("created_at", Float, nullable=False),
    Column("topic", String(64), nullable=False),
    Column("recipient", Text, nullable=False),
    Column("payload", JSON, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", Float, nullable=False),
    Column("delivered_at", Float),
    Column("last_error", Text),
    Index("ix_outbox_pending", "delivered_at", "next_attempt_at"),
)

incidents = Table(
    "incidents",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("opened_at", Float, nullable=False),
    Column("opened_by", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("target_kind", String(16), nullable=False),
    Column("target", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("contained_at", Float),
    Column("closed_at", Float),
    Column("nodes", JSON, nullable=False),
)

audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=False),
    Column("hash", String(64), nullable=False),
    Column("at", Float, nullable=False),
    Column("kid", String(64), nullable=False),
    Column("signature", Text, nullable=False),
)

#: Where a subject receives recovery codes, grants and notifications (issue 5).
subject_channels = Table(
    "subject_channels",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("subject", Text, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("address", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("created_by", Text, nullable=False),
    Column("removed_at", Float),
    Index("ix_subject_channels_subject", "subject"),
)

#: Help-desk recovery requests (see :mod:`tokentrail.recovery`); codes and grants as hashes.
recovery_requests = Table(
    "recovery_requests",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("path_id", String(128), nullable=False),
    Column("subject", Text, nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("team_id", String(128), nullable=False),
    Column("requester", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("channel_id", String(64), nullable=False),
    Column("state", String(32), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("proofing", JSON, nullable=False),
    Column("code_hash", String(64)),
    Column("code_expires_at", Float),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("codes_sent", Integer, nullable=False, server_default="0"),
    Column("dpop_jkt", String(128)),
    Column("approvals", JSON, nullable=False),
    Column("grant_hash", String(64), unique=True),
    Column("granted_at", Float),
    Column("redeemed_at", Float),
    Column("session_id", String(64)),
    Column("closed_by", Text),
    Column("close_reason", Text),
    Index("ix_recovery_requests_subject", "subject", "path_id", "created_at"),
    Index("ix_recovery_requests_path", "path_id", "created_at"),
)

#: Recovery switched off, globally (scope ``*``) or per path, until unfrozen.
recovery_freezes = Table(
    "recovery_freezes",
    metadata,
    Column("scope", String(128), primary_key=True),
    Column("frozen_at", Float, nullable=False),
    Column("frozen_by", Text, nullable=False),
    Column("reason", Text, nullable=False),
)
