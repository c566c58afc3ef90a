"""Revocation sequence numbers are never reused, on SQLite too.

PostgreSQL draws ``seq`` from a sequence, which never hands a number out twice.
SQLite's plain ``INTEGER PRIMARY KEY`` may reuse the highest number after that
row is deleted; followers catching up "after seq N" would then miss an entry.
``AUTOINCREMENT`` forbids reuse; the table is rebuilt to add it.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table(
        "revocations", recreate="always", table_kwargs={"sqlite_autoincrement": True}
    ):
        pass
