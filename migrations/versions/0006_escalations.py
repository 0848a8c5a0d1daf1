"""escalations

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 02:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
ACTIVE = sa.text("state != 'resolved'")


def upgrade() -> None:
    op.create_table(
        "escalations",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("conversation_id", ID, nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("user_name", sa.String(length=200), nullable=False),
        sa.Column("origin_platform", sa.String(length=32), nullable=False),
        sa.Column("origin_workspace", sa.String(length=128), nullable=False),
        sa.Column("origin_channel", sa.String(length=400), nullable=False),
        sa.Column("origin_thread", sa.String(length=400), nullable=False),
        sa.Column("destination_platform", sa.String(length=32), nullable=False),
        sa.Column("destination", sa.String(length=400), nullable=False),
        sa.Column("destination_message", sa.String(length=400), nullable=True),
        sa.Column("destination_thread", sa.String(length=400), nullable=True),
        sa.Column("post_attempts", sa.Integer(), nullable=False),
        sa.Column("claimed_by", sa.String(length=128), nullable=True),
        sa.Column("claimed_by_name", sa.String(length=200), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.String(length=128), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("save_to_knowledge", sa.Boolean(), nullable=False),
        sa.Column("announced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("announcements", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["conversation_id"], ["conversations.id"],
                                name=op.f("fk_escalations_conversation_id_conversations"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_escalations")),
    )
    op.create_index("ix_escalations_one_active", "escalations", ["conversation_id"],
                    unique=True, sqlite_where=ACTIVE, postgresql_where=ACTIVE)
    op.create_index("ix_escalations_post", "escalations",
                    ["destination_platform", "destination_message"])
    op.create_index(op.f("ix_escalations_state"), "escalations", ["state"])
    op.create_table(
        "escalation_events",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("escalation_id", ID, nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("actor_id", sa.String(length=128), nullable=False),
        sa.Column("actor_name", sa.String(length=200), nullable=False),
        sa.Column("platform", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["escalation_id"], ["escalations.id"],
                                name=op.f("fk_escalation_events_escalation_id_escalations"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_escalation_events")),
    )
    op.create_index(op.f("ix_escalation_events_escalation_id"), "escalation_events",
                    ["escalation_id"])


def downgrade() -> None:
    op.drop_table("escalation_events")
    op.drop_table("escalations")
