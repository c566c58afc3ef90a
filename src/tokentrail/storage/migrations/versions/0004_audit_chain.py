"""Audit ledger: hash chain columns, signed checkpoints, key purposes.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit") as batch:
        batch.add_column(sa.Column("prev_hash", sa.String(64)))
        batch.add_column(sa.Column("hash", sa.String(64)))
    with op.batch_alter_table("signing_keys") as batch:
        batch.add_column(
            sa.Column("purpose", sa.String(32), nullable=False, server_default="access_token")
        )
    op.create_table(
        "audit_checkpoints",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("kid", sa.String(64), nullable=False),
        sa.Column("signature", sa.Text, nullable=False),
    )
