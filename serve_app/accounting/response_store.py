"""Stored Responses (`/v1/responses` with `store: true`): the response object a client can
GET, and the conversation `previous_response_id` continues. In the ledger's database, one
small table in the style of the usage store (issue 13 ports it to the migrated layer).

Synchronous and thread-safe, like the other stores: the gateway calls them in a thread.
"""

from typing import Any

from serve_app.accounting.db import (
    ConnectionHolder,
    connect_postgres,
    connect_sqlite,
    ensure_parent_dir,
    parse_database_url,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    model TEXT NOT NULL,
    body TEXT NOT NULL,
    conversation TEXT NOT NULL
)
"""
COLUMNS = ("id", "key_id", "created_at", "model", "body", "conversation")


class ResponseStore(ConnectionHolder):
    """`put`, `get` (None when unknown) and `delete` by response id."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.kind, self.target = parse_database_url(url)
        self.mark = "?" if self.kind == "sqlite" else "%s"

    def _connect(self) -> Any:
        if self._connection is None:
            if self.kind == "sqlite":
                ensure_parent_dir(self.target)
                self._connection = connect_sqlite(self.target, SCHEMA)
            else:
                self._connection = connect_postgres(self.target, SCHEMA)
        return self._connection

    def _run(self, sql: str, args: tuple[Any, ...]) -> Any:
        with self._lock:
            connection = self._connect()
            try:
                if self.kind == "sqlite":
                    with connection:
                        return connection.execute(sql, args).fetchall()
                with connection.transaction(), connection.cursor() as cursor:
                    cursor.execute(sql, args)
                    return cursor.fetchall() if cursor.description else []
            except Exception:
                self._drop_connection()
                raise

    def put(self, row: tuple[str, str, float, str, str, str]) -> None:
        marks = ", ".join(self.mark for _ in COLUMNS)
        self._run(f"INSERT INTO responses ({', '.join(COLUMNS)}) VALUES ({marks})", row)

    def get(self, response_id: str) -> tuple[str, str, str] | None:
        """(key id, body JSON, conversation JSON)."""
        rows = self._run(
            f"SELECT key_id, body, conversation FROM responses WHERE id = {self.mark}",
            (response_id,),
        )
        return (str(rows[0][0]), str(rows[0][1]), str(rows[0][2])) if rows else None

    def delete(self, response_id: str) -> None:
        self._run(f"DELETE FROM responses WHERE id = {self.mark}", (response_id,))
