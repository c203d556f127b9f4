"""Stored Responses (`/v1/responses` with `store: true`): the response object a client can
GET, and the conversation `previous_response_id` continues, in the `responses` table of the
gateway's database (migration `0003_cache_and_responses`).

Synchronous and thread-safe (SQLAlchemy Core, pooled), like the other stores: the gateway
calls them in a thread.
"""

from sqlalchemy import Engine, delete, insert, select

from serve_app.accounting.schema import responses

COLUMNS = ("id", "key_id", "created_at", "model", "body", "conversation")


class ResponseStore:
    """`put`, `get` (None when unknown) and `delete` by response id."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def put(self, row: tuple[str, str, float, str, str, str]) -> None:
        with self.engine.begin() as connection:
            connection.execute(insert(responses), dict(zip(COLUMNS, row)))

    def get(self, response_id: str) -> tuple[str, str, str] | None:
        """(key id, body JSON, conversation JSON)."""
        query = select(responses.c.key_id, responses.c.body, responses.c.conversation).where(
            responses.c.id == response_id
        )
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        return (str(row[0]), str(row[1]), str(row[2])) if row is not None else None

    def delete(self, response_id: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(delete(responses).where(responses.c.id == response_id))
