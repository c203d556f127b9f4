"""Budget periods and running spend: `api_keys.budget_period`, the `key_spend` table (filled
from `usage` for the current periods, indexed by period so the spend of every key for the
periods under way is read without a scan) and an index on `usage (key_id, ts)`.

Revision ID: 0002_key_spend
Revises: 0001_baseline
Create Date: 2026-12-06
"""

import time

import sqlalchemy as sa
from alembic import op

from serve_app.contracts.budgets import BUDGET_PERIODS, period_start

revision = "0002_key_spend"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(
            sa.Column("budget_period", sa.String(16), nullable=False, server_default="total")
        )
    op.create_index("usage_key_ts", "usage", ["key_id", "ts"])
    key_spend = op.create_table(
        "key_spend",
        sa.Column("key_id", sa.Text, nullable=False),
        sa.Column("period", sa.String(16), nullable=False),
        sa.Column("period_start", sa.Float, nullable=False),
        sa.Column("spent_usd", sa.Float, nullable=False),
        sa.Column("requests", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("key_id", "period", "period_start", name="key_spend_pk"),
    )
    assert key_spend is not None
    op.create_index("key_spend_period", "key_spend", ["period", "period_start"])
    backfill(key_spend)


def backfill(key_spend: sa.Table) -> None:
    """The running spend of each key for the periods under way now, from `usage`."""
    usage = sa.table("usage", sa.column("ts"), sa.column("key_id"), sa.column("cost_usd"))
    now = time.time()
    bind = op.get_bind()
    rows = []
    for period in BUDGET_PERIODS:
        start = period_start(period, now)
        totals = bind.execute(
            sa.select(usage.c.key_id, sa.func.sum(usage.c.cost_usd), sa.func.count())
            .where(usage.c.ts >= start)
            .group_by(usage.c.key_id)
        )
        rows += [
            {"key_id": key_id, "period": period, "period_start": start,
             "spent_usd": float(spent or 0.0), "requests": int(count), "updated_at": now}
            for key_id, spent, count in totals
        ]  # fmt: skip
    if rows:
        op.bulk_insert(key_spend, rows)


def downgrade() -> None:
    op.drop_index("key_spend_period", table_name="key_spend")
    op.drop_table("key_spend")
    op.drop_index("usage_key_ts", table_name="usage")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("budget_period")
