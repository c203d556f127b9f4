"""Schema revisions of the gateway's database: upgrade, read the current one, check at start.

The migrations ship inside the package (`serve_app/accounting/migrations/`), so
`llm-gateway db upgrade` and the start-up check work from an installed wheel. Another
package's tables join the same chain: add a revision file under `migrations/versions/`
with `down_revision` set to the current head.
"""

import contextlib
import fcntl
import logging
import time
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import SQLAlchemyError

logger = logging.getLogger("ray.serve")
MIGRATIONS = Path(__file__).with_name("migrations")
MIGRATION_LOCK = 0x6C6C6D67  # pg_advisory_xact_lock id of the gateway's migrations
CONCURRENT_UPGRADE_WAIT_S = 1.0


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
    """Run every migration up to `revision` in one transaction; the revision reached.

    On PostgreSQL the transaction first takes an advisory lock (on SQLite, a lock file beside
    the database), so replicas starting together migrate one after the other: the later ones
    find the work done."""
    config = alembic_config()
    with _sqlite_file_lock(engine), engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK})
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
        return _upgrade_once(engine, head)
    except SQLAlchemyError as exc:
        detail = str(getattr(exc, "orig", None) or exc).splitlines()[0][:300]
        raise SchemaError(
            f"the database at {where} can't be reached or read ({type(exc).__name__}): {detail}"
        ) from exc


@contextlib.contextmanager
def _sqlite_file_lock(engine: Engine) -> Iterator[None]:
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migrate-lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _upgrade_once(engine: Engine, head: str) -> str:
    """Upgrade; when it fails because another replica upgraded at the same moment (SQLite has
    no advisory lock), the database is at head all the same."""
    try:
        return upgrade(engine)
    except SQLAlchemyError:
        time.sleep(CONCURRENT_UPGRADE_WAIT_S)
        if current_revision(engine) == head:
            return head
        raise


def _has_tables(engine: Engine) -> bool:
    return bool(inspect(engine).get_table_names())
