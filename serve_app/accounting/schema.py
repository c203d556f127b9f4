"""The tables of the gateway's database, as SQLAlchemy Core objects.

Alembic migrations (`serve_app/accounting/migrations/versions/`) create and change them; this
module is what the stores query. A new table goes in both: here, and in a new migration.
"""

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

metadata = MetaData()

usage = Table(
    "usage",
    metadata,
    Column("ts", Float, nullable=False),
    Column("request_id", Text, nullable=False),
    Column("key_id", Text, nullable=False),
    Column("model_id", Text, nullable=False),
    Column("provider", Text, nullable=False),
    Column("served_model", Text, nullable=False),
    Column("input_tokens", Integer, nullable=False),
    Column("output_tokens", Integer, nullable=False),
    Column("cost_usd", Float, nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("outcome", Text, nullable=False),
    Column("status", Integer, nullable=False),
    Column("cache_hit", Integer, nullable=False, server_default="0"),
    Column("saved_usd", Float, nullable=False, server_default="0"),
    Index("usage_ts", "ts"),
    Index("usage_key_ts", "key_id", "ts"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("key_hash", Text, nullable=False, unique=True),
    Column("prefix", Text, nullable=False),
    Column("allowed_models", Text, nullable=False),
    Column("rpm", Integer),
    Column("tpm", Integer),
    Column("budget_usd", Float),
    Column("enabled", Boolean, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("budget_period", String(16), nullable=False, server_default="total"),
)

# Running spend per key and budget period, updated in the ledger's write transaction, so a
# budget check reads one row instead of summing `usage`.
key_spend = Table(
    "key_spend",
    metadata,
    Column("key_id", Text, nullable=False),
    Column("period", String(16), nullable=False),
    Column("period_start", Float, nullable=False),
    Column("spent_usd", Float, nullable=False),
    Column("requests", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
    PrimaryKeyConstraint("key_id", "period", "period_start", name="key_spend_pk"),
    Index("key_spend_period", "period", "period_start"),
)

# Stored Responses (`/v1/responses` with `store: true`): what GET returns and what
# `previous_response_id` continues; each belongs to the key that made it.
responses = Table(
    "responses",
    metadata,
    Column("id", Text, primary_key=True),
    Column("key_id", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("model", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("conversation", Text, nullable=False),
)

# LoRA adapters registered at run time (`/api/v1/admin/adapters`); `price` and `fallbacks`
# are JSON text.
lora_adapters = Table(
    "lora_adapters",
    metadata,
    Column("id", Text, primary_key=True),
    Column("base", Text, nullable=False),
    Column("path", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("price", Text),
    Column("fallbacks", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)
