"""Gateway API keys: the record and where it is stored (the ledger's database).

A key is `gw-` + 40 url-safe random characters. Only its SHA-256 (plus an 8-character display
prefix) is stored: the keys are high-entropy random strings, so a fast hash is enough, as for
GitHub tokens. The store is synchronous and thread-safe (SQLAlchemy Core, pooled), like
`serve_app.accounting.usage_store`, and shares its engine: keys and spend live in one
database. The `KeyCache` calls it from worker threads and answers the ingress from memory.
"""

import builtins
import datetime as dt
import hashlib
import json
import logging
import math
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import Engine, func, insert, select, update

from serve_app.accounting.schema import api_keys, usage
from serve_app.accounting.usage_store import UsageStore, open_engine
from serve_app.contracts.budgets import BUDGET_PERIODS, period_bounds
from serve_app.contracts.errors import (
    InvalidRequestError,
    NotFoundError,
)

logger = logging.getLogger("ray.serve")

KEY_PREFIX = "gw-"
KEY_LENGTH = len(KEY_PREFIX) + 40
DISPLAY_PREFIX_LENGTH = 8
EDITABLE = ("name", "allowed_models", "rpm", "tpm", "budget_usd", "budget_period")


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    name: str
    key_hash: str
    prefix: str
    allowed_models: tuple[str, ...]  # empty: every model
    rpm: int | None
    tpm: int | None
    budget_usd: float | None
    enabled: bool
    created_at: float
    budget_period: str = "total"

    def allows(self, model_id: str) -> bool:
        return not self.allowed_models or model_id in self.allowed_models

    def budget_reset_at(self, now: float | None = None) -> str | None:
        """When the budget's period ends (ISO 8601, UTC); None for `total` or no budget."""
        if self.budget_usd is None:
            return None
        end = period_bounds(self.budget_period, time.time() if now is None else now)[1]
        if end is None:
            return None
        return dt.datetime.fromtimestamp(end, dt.UTC).isoformat().replace("+00:00", "Z")

    def public(self) -> dict[str, Any]:
        """Everything but the hash: what list endpoints and the CLI show."""
        return {
            "id": self.id,
            "name": self.name,
            "prefix": self.prefix,
            "allowed_models": list(self.allowed_models),
            "rpm": self.rpm,
            "tpm": self.tpm,
            "budget_usd": self.budget_usd,
            "budget_period": self.budget_period,
            "budget_reset_at": self.budget_reset_at(),
            "enabled": self.enabled,
            "created_at": self.created_at,
        }


KEY_COLUMNS = tuple(field.name for field in fields(ApiKey))  # the api_keys columns, in order


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(30)  # 30 bytes: exactly 40 characters


@dataclass(frozen=True, slots=True)
class KeySpec:
    """What a new key is asked for (admin API, CLI, tests): validated by `new_key`."""

    name: str
    allowed_models: Sequence[str] = ()  # empty: every model
    rpm: int | None = None
    tpm: int | None = None
    budget_usd: float | None = None
    budget_period: str = "total"


def new_key(spec: KeySpec) -> tuple[ApiKey, str]:
    """A validated, enabled record and its plain key (not stored anywhere)."""
    name, allowed_models, rpm, tpm = spec.name, spec.allowed_models, spec.rpm, spec.tpm
    budget_usd, budget_period = spec.budget_usd, spec.budget_period
    if not name.strip():
        raise InvalidRequestError("A key needs a non-empty name.", param="name")
    for param, value in (("rpm", rpm), ("tpm", tpm)):
        if value is not None and value < 1:
            raise InvalidRequestError(f"{param} must be at least 1.", param=param)
    check_budget(budget_usd, budget_period)
    if isinstance(allowed_models, str):
        raise InvalidRequestError("allowed_models must be a list of model ids.", param="models")
    models = tuple(dict.fromkeys(m.strip() for m in allowed_models if m.strip()))
    plain = generate_key()
    record = ApiKey(
        id="key_" + secrets.token_hex(6),
        name=name.strip(),
        key_hash=hash_key(plain),
        prefix=plain[len(KEY_PREFIX) : len(KEY_PREFIX) + DISPLAY_PREFIX_LENGTH],
        allowed_models=models,
        rpm=None if rpm is None else int(rpm),
        tpm=None if tpm is None else int(tpm),
        budget_usd=None if budget_usd is None else float(budget_usd),
        enabled=True,
        created_at=time.time(),
        budget_period=budget_period,
    )
    return record, plain


def check_budget(budget_usd: float | None, budget_period: str) -> None:
    """A budget is a finite, non-negative USD amount; the period one of BUDGET_PERIODS."""
    if budget_usd is not None and (
        isinstance(budget_usd, bool) or not math.isfinite(budget_usd) or budget_usd < 0
    ):
        raise InvalidRequestError(
            "budget_usd must be a finite, non-negative amount.", param="budget_usd"
        )
    if budget_period not in BUDGET_PERIODS:
        raise InvalidRequestError(
            f"budget_period must be one of {', '.join(BUDGET_PERIODS)}.", param="budget_period"
        )


def check_changes(changes: dict[str, Any]) -> dict[str, Any]:
    """Validated column values for an edit of `EDITABLE` fields (None clears a limit)."""
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        raise InvalidRequestError(f"Cannot edit {sorted(unknown)}.", param=sorted(unknown)[0])
    name = changes.get("name", "x")
    models = changes.get("allowed_models", ())
    probe, _ = new_key(
        KeySpec(
            name if name is not None else "",
            models if models is not None else (),
            changes.get("rpm"),
            changes.get("tpm"),
            changes.get("budget_usd"),
            changes.get("budget_period") or "total",
        )
    )
    values = {field: getattr(probe, field) for field in changes}
    if "allowed_models" in values:
        values["allowed_models"] = json.dumps(list(probe.allowed_models))
    return values


def _as_row(key: ApiKey) -> dict[str, Any]:
    """The api_keys row: the fields by name, the model list as JSON text."""
    values = {column: getattr(key, column) for column in KEY_COLUMNS}
    values["allowed_models"] = json.dumps(list(key.allowed_models))
    return values


def _from_row(row: Sequence[Any]) -> ApiKey:
    key_id, name, key_hash, prefix, models, rpm, tpm, budget, enabled, created_at, period = row
    return ApiKey(
        id=key_id,
        name=name,
        key_hash=key_hash,
        prefix=prefix,
        allowed_models=tuple(json.loads(models)),
        rpm=None if rpm is None else int(rpm),
        tpm=None if tpm is None else int(tpm),
        budget_usd=None if budget is None else float(budget),
        enabled=bool(enabled),
        created_at=float(created_at),
        budget_period=period or "total",
    )


class KeyStore:
    """API keys in the gateway's database; `spend_by_key` reads the ledger's running spend."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.backend = engine.dialect.name
        self.usage = UsageStore(engine)

    def _select(self) -> Any:
        return select(*(api_keys.c[column] for column in KEY_COLUMNS))

    def create(self, spec: KeySpec) -> tuple[ApiKey, str]:
        record, plain = new_key(spec)
        with self.engine.begin() as connection:
            connection.execute(insert(api_keys), _as_row(record))
        return record, plain

    def list(self) -> builtins.list[ApiKey]:
        query = self._select().order_by(api_keys.c.created_at, api_keys.c.id)
        with self.engine.connect() as connection:
            return [_from_row(row) for row in connection.execute(query).all()]

    def _one(self, column: str, value: str) -> ApiKey | None:
        with self.engine.connect() as connection:
            row = connection.execute(self._select().where(api_keys.c[column] == value)).first()
        return _from_row(row) if row is not None else None

    def get(self, key_id: str) -> ApiKey | None:
        return self._one("id", key_id)

    def find_by_hash(self, key_hash: str) -> ApiKey | None:
        return self._one("key_hash", key_hash)

    def _update(self, key_id: str, **values: Any) -> ApiKey:
        with self.engine.begin() as connection:
            changed = connection.execute(
                update(api_keys).where(api_keys.c.id == key_id).values(**values)
            ).rowcount
        key = self.get(key_id) if changed else None
        if key is None:
            raise NotFoundError(f"No API key {key_id!r}.", param="key_id", code="key_not_found")
        return key

    def set_enabled(self, key_id: str, enabled: bool) -> ApiKey:
        return self._update(key_id, enabled=enabled)

    def set_budget(self, key_id: str, budget_usd: float | None, budget_period: str) -> ApiKey:
        check_budget(budget_usd, budget_period)
        return self._update(key_id, budget_usd=budget_usd, budget_period=budget_period)

    def update(self, key_id: str, changes: dict[str, Any]) -> ApiKey:
        """Edit the name, models, limits or budget of a key (`check_changes` first)."""
        values = check_changes(changes)
        if values:
            return self._update(key_id, **values)
        key = self.get(key_id)
        if key is None:
            raise NotFoundError(f"No API key {key_id!r}.", param="key_id", code="key_not_found")
        return key

    def usage_by_key(self) -> dict[str, dict[str, Any]]:
        """Per key: USD spent (all time), requests and the time of the last one (epoch s)."""
        query = select(
            usage.c.key_id, func.sum(usage.c.cost_usd), func.max(usage.c.ts), func.count()
        ).group_by(usage.c.key_id)
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        return {
            key_id: {
                "spend_usd": round(float(total or 0.0), 9),
                "last_used_at": None if last is None else float(last),
                "requests": int(count or 0),
            }
            for key_id, total, last, count in rows
            if key_id is not None
        }

    def spend_by_key(self, now: float | None = None) -> dict[str, float]:
        """USD each key has spent in its budget period under way (from `key_spend`)."""
        spend = self.usage.current_spend(now)
        return {key.id: spend.get((key.id, key.budget_period), 0.0) for key in self.list()}

    def close(self) -> None:
        self.engine.dispose()


def open_key_store(url: str, auto_migrate: bool = True) -> KeyStore:
    """A key store on its own engine (tools and tests; the ingress shares one engine)."""
    return KeyStore(open_engine(url, auto_migrate))
