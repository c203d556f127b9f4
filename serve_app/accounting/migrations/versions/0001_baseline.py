"""Baseline: the `usage` and `api_keys` tables as the gateway created them before Alembic.

A database the gateway created earlier already has them (and no `alembic_version`): they are
adopted as they are, every row kept; a new database gets them created.

Revision ID: 0001_baseline
Revises:
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "usage" not in existing:
        op.create_table(
            "usage",
            sa.Column("ts", sa.Float, nullable=False),
            sa.Column("request_id", sa.Text, nullable=False),
            sa.Column("key_id", sa.Text, nullable=False),
            sa.Column("model_id", sa.Text, nullable=False),
            sa.Column("provider", sa.Text, nullable=False),
            sa.Column("served_model", sa.Text, nullable=False),
            sa.Column("input_tokens", sa.Integer, nullable=False),
            sa.Column("output_tokens", sa.Integer, nullable=False),
            sa.Column("cost_usd", sa.Float, nullable=False),
            sa.Column("latency_ms", sa.Float, nullable=False),
            sa.Column("outcome", sa.Text, nullable=False),
            sa.Column("status", sa.Integer, nullable=False),
        )
    indexes = {index["name"] for index in sa.inspect(op.get_bind()).get_indexes("usage")}
    if "usage_ts" not in indexes:
        op.create_index("usage_ts", "usage", ["ts"])
    if "api_keys" not in existing:
        op.create_table(
            "api_keys",
            sa.Column("id", sa.Text, primary_key=True),
            sa.Column("name", sa.Text, nullable=False),
            sa.Column("key_hash", sa.Text, nullable=False, unique=True),
            sa.Column("prefix", sa.Text, nullable=False),
            sa.Column("allowed_models", sa.Text, nullable=False),
            sa.Column("rpm", sa.Integer),
            sa.Column("tpm", sa.Integer),
            sa.Column("budget_usd", sa.Float),
            sa.Column("enabled", sa.Boolean, nullable=False),
            sa.Column("created_at", sa.Float, nullable=False),
        )


def downgrade() -> None:
    op.drop_table("api_keys")
    op.drop_index("usage_ts", table_name="usage")
    op.drop_table("usage")
