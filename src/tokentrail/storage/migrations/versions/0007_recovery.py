"""Help-desk recovery: subject channels, recovery requests, freezes.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subject_channels",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("address", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("removed_at", sa.Float),
    )
    op.create_index("ix_subject_channels_subject", "subject_channels", ["subject"])
    op.create_table(
        "recovery_requests",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("path_id", sa.String(128), nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("team_id", sa.String(128), nullable=False),
        sa.Column("requester", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("channel_id", sa.String(64), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("proofing", sa.JSON, nullable=False),
        sa.Column("code_hash", sa.String(64)),
        sa.Column("code_expires_at", sa.Float),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("codes_sent", sa.Integer, nullable=False, server_default="0"),
        sa.Column("dpop_jkt", sa.String(128)),
        sa.Column("approvals", sa.JSON, nullable=False),
        sa.Column("grant_hash", sa.String(64), unique=True),
        sa.Column("granted_at", sa.Float),
        sa.Column("redeemed_at", sa.Float),
        sa.Column("session_id", sa.String(64)),
        sa.Column("closed_by", sa.Text),
        sa.Column("close_reason", sa.Text),
    )
    op.create_index(
        "ix_recovery_requests_subject", "recovery_requests", ["subject", "path_id", "created_at"]
    )
    op.create_index("ix_recovery_requests_path", "recovery_requests", ["path_id", "created_at"])
    op.create_table(
        "recovery_freezes",
        sa.Column("scope", sa.String(128), primary_key=True),
        sa.Column("frozen_at", sa.Float, nullable=False),
        sa.Column("frozen_by", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
    )
