"""Trusted issuers: JWKS URL and the highest assurance level their assertions may claim.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("trusted_issuers") as batch:
        batch.add_column(sa.Column("jwks_url", sa.Text))
        batch.add_column(sa.Column("max_aal", sa.Integer, nullable=False, server_default="2"))
        batch.add_column(sa.Column("jwks_fetched_at", sa.Float))
