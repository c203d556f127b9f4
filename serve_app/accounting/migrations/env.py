"""Alembic environment: runs on the connection `serve_app.accounting.migrate` passes in
(`config.attributes["connection"]`), else on `sqlalchemy.url` from the config."""

from alembic import context
from sqlalchemy import engine_from_config, pool

from serve_app.accounting.schema import metadata

config = context.config


def run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # type: ignore[attr-defined]
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    engine = engine_from_config(
        config.get_section(config.config_ini_section) or {},
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    with engine.connect() as opened:
        run(opened)
