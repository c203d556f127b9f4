"""Schema revisions of the gateway's database: upgrade, read the current one, check at start.

The migrations ship inside the package (`serve_app/accounting/migrations/`), so
`llm-gateway db upgrade` and the start-up check work from an installed wheel. Another
package's tables join the same chain: add a revision file under `migrations/versions/`
with `down_revision` set to the current head.
"""

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect
from sqlalchemy.exc import SQLAlchemyError

logger = logging.getLogger("ray.serve")
MIGRATIONS = Path(__file__).with_name("migrations")


class SchemaError(RuntimeError):
    """The database's schema does not fit this code, or it can't be reached; the message
    says what to run."""


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def known_revisions() -> set[str]:
    scripts = ScriptDirectory.from_config(alembic_config()).walk_revisions()
    return {script.revision for script in scripts}


def current_revision(engine: Engine) -> str | None:
    """The revision stamped in the database; None for a new database or one from before
    Alembic (its tables are adopted by the baseline revision)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> str:
    """Run every migration up to `revision` in one transaction; the revision reached."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    reached = current_revision(engine)
    assert reached is not None
    return reached


def ensure_schema(engine: Engine, auto_migrate: bool, where: str = "ledger.url") -> str:
    """Refuse a database newer than this code, and an older one unless `auto_migrate` (then
    upgrade it). The revision the database is at afterwards."""
    head = head_revision()
    try:
        current = current_revision(engine)
        if current == head:
            return head
        if current is not None and current not in known_revisions():
            raise SchemaError(
                f"the database at {where} is at schema revision {current!r}, newer than this "
                f"gateway's ({head!r}): deploy the newer gateway, or restore an older database"
            )
        if not auto_migrate:
            found = current or ("pre-migration tables" if _has_tables(engine) else "empty")
            raise SchemaError(
                f"the database at {where} is at schema revision {found!r}, older than this "
                f"gateway's ({head!r}): run `llm-gateway db upgrade` (or set "
                "ledger.auto_migrate: true)"
            )
        logger.info("migrating the database at %s from %s to %s", where, current, head)
        return upgrade(engine)
    except SQLAlchemyError as exc:
        detail = str(getattr(exc, "orig", None) or exc).splitlines()[0][:300]
        raise SchemaError(
            f"the database at {where} can't be reached or read ({type(exc).__name__}): {detail}"
        ) from exc


def _has_tables(engine: Engine) -> bool:
    return bool(inspect(engine).get_table_names())
