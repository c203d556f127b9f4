"""The `lora_adapters` table: LoRA adapters registered at run time.

Revision ID: 0004_lora_adapters
Revises: 0003_cache_and_responses
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_lora_adapters"
down_revision = "0003_cache_and_responses"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lora_adapters",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("base", sa.Text, nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("price", sa.Text),
        sa.Column("fallbacks", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("lora_adapters")
