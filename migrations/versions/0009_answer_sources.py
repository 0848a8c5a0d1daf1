"""answer sources: the passages an answer cited, kept with the answer

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Existing answers get an empty list: their sources were never stored.
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("sources", sa.JSON(), nullable=False,
                                   server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("sources")
