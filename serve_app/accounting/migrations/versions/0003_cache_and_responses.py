"""The response cache's ledger columns (`usage.cache_hit`, `usage.saved_usd`, 0 for every
existing row) and the `responses` table of stored `/v1/responses` answers.

Revision ID: 0003_cache_and_responses
Revises: 0002_key_spend
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_cache_and_responses"
down_revision = "0002_key_spend"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("usage") as batch:
        batch.add_column(sa.Column("cache_hit", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("saved_usd", sa.Float, nullable=False, server_default="0"))
    op.create_table(
        "responses",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("key_id", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("conversation", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("responses")
    with op.batch_alter_table("usage") as batch:
        batch.drop_column("saved_usd")
        batch.drop_column("cache_hit")
