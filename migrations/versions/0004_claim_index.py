"""deliveries: claim index in claim order

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 13:05:00

The worker claims due rows with ``status = 'planned' AND next_attempt_at <= now
ORDER BY next_attempt_at, id LIMIT n``. With ``id`` in the index that is one ordered
index scan that stops after n rows; on PostgreSQL such a scan also marks the index
entries of dead row versions (every send leaves one) as dead, so later claims skip
them, where the old two-column index made PostgreSQL choose a bitmap scan that
revisited every dead entry on every claim.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_status_next_attempt_at")
        batch_op.create_index(
            "ix_deliveries_status_next_attempt_at_id",
            ["status", "next_attempt_at", "id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_status_next_attempt_at_id")
        batch_op.create_index(
            "ix_deliveries_status_next_attempt_at", ["status", "next_attempt_at"], unique=False
        )
