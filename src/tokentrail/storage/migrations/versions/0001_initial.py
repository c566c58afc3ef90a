"""Initial schema: teams, clients, credentials, lineage, revocations, keys, audit.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "teams",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "clients",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("team_id", sa.String(128), nullable=False, index=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("auth_method", sa.String(32), nullable=False),
        sa.Column("paths", sa.JSON, nullable=False),
        sa.Column("scopes", sa.JSON, nullable=False),
        sa.Column("audiences", sa.JSON, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("disabled_at", sa.Float),
    )
    op.create_table(
        "credentials",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("client_id", sa.String(64), nullable=False, index=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("secret_hash", sa.String(64)),
        sa.Column("jwks", sa.JSON),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("not_after", sa.Float),
    )
    op.create_table(
        "trusted_issuers",
        sa.Column("issuer", sa.String(512), primary_key=True),
        sa.Column("jwks", sa.JSON, nullable=False),
        sa.Column("audience", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "nodes",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("path_id", sa.String(128)),
        sa.Column("client_id", sa.String(64)),
        sa.Column("subject", sa.Text),
        sa.Column("team_id", sa.String(128)),
        sa.Column("parents", sa.JSON, nullable=False),
        sa.Column("ancestors", sa.JSON, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float),
        sa.Column("meta", sa.JSON, nullable=False),
        sa.Column("token_hash", sa.String(64), unique=True),
        sa.Column("used_at", sa.Float),
    )
    op.create_index("ix_nodes_subject", "nodes", ["subject"])
    op.create_table(
        "edges",
        sa.Column("parent_id", sa.String(64), primary_key=True),
        sa.Column("child_id", sa.String(64), primary_key=True),
    )
    op.create_index("ix_edges_child", "edges", ["child_id"])
    op.create_table(
        "revocations",
        sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
        sa.Column("node_id", sa.String(64), nullable=False, unique=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("revoked_at", sa.Float, nullable=False),
        sa.Column("matters_until", sa.Float, nullable=False),
    )
    op.create_table(
        "seen_jtis",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("expires_at", sa.Float, nullable=False, index=True),
    )
    op.create_table(
        "signing_keys",
        sa.Column("kid", sa.String(64), primary_key=True),
        sa.Column("alg", sa.String(16), nullable=False),
        sa.Column("public_jwk", sa.JSON, nullable=False),
        sa.Column("sealed_private", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("retired_at", sa.Float),
        sa.Column("publish_until", sa.Float),
    )
    op.create_table(
        "admin_keys",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("team_id", sa.String(128), nullable=False),
        sa.Column("roles", sa.JSON, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("revoked_at", sa.Float),
    )
    op.create_table(
        "audit",
        sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("event", sa.String(64), nullable=False, index=True),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("node_id", sa.String(64), index=True),
        sa.Column("client_id", sa.String(64)),
        sa.Column("subject", sa.Text),
        sa.Column("team_id", sa.String(128)),
        sa.Column("data", sa.JSON, nullable=False),
    )
