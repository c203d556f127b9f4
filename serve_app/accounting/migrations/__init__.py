"""Alembic migrations of the gateway's database (`llm-gateway db upgrade`)."""
