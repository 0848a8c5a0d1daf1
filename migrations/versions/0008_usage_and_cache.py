"""usage and cache: budget alerts, the answer cache, answers by time

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
ANSWERS = sa.text("role = 'assistant'")


def upgrade() -> None:
    op.create_index("ix_messages_answers_by_time", "messages", ["conversation_id", "created_at"],
                    sqlite_where=ANSWERS, postgresql_where=ANSWERS)
    op.create_table(
        "budget_alerts",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("platform", sa.String(length=32), nullable=False),
        sa.Column("workspace", sa.String(length=128), nullable=False),
        sa.Column("period_kind", sa.String(length=8), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("threshold", sa.Integer(), nullable=False),
        sa.Column("spent_usd", sa.Numeric(precision=14, scale=6), nullable=False),
        sa.Column("limit_usd", sa.Numeric(precision=14, scale=6), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_budget_alerts")),
        sa.UniqueConstraint("platform", "workspace", "period_kind", "period_start", "threshold",
                            name="uq_budget_alerts_once"),
    )
    op.create_table(
        "answer_cache",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_answer_cache")),
    )
    op.create_index(op.f("ix_answer_cache_expires_at"), "answer_cache", ["expires_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_answer_cache_expires_at"), table_name="answer_cache")
    op.drop_table("answer_cache")
    op.drop_table("budget_alerts")
    op.drop_index("ix_messages_answers_by_time", table_name="messages")
