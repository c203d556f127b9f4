"""API keys: the SQLite store, the ingress cache (auth, refresh, budgets) and the CLI."""

import asyncio
import hashlib
import json
import re
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from serve_app.access.key_cache import KeyCache
from serve_app.access.key_store import (
    ApiKey,
    KeySpec,
    KeyStore,
    generate_key,
    hash_key,
    open_key_store,
)
from serve_app.accounting.usage_store import open_store
from serve_app.contracts.errors import (
    AuthenticationError,
    BudgetExceededError,
    InvalidRequestError,
    NotFoundError,
    ServiceUnavailableError,
)
from serve_app.runtime.keys_cli import main

TTL = 10.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingStore:
    """A store wrapper that counts the reads the cache makes (and can fail them)."""

    def __init__(self, store: KeyStore) -> None:
        self.store = store
        self.list_calls = 0
        self.spend_calls = 0
        self.fail = False
        self.gate: threading.Event | None = None  # when set: reads wait for it

    def list(self) -> list[ApiKey]:
        self.list_calls += 1
        if self.gate is not None:
            self.gate.wait(timeout=5)
        if self.fail:
            raise sqlite3.OperationalError("database is down")
        return self.store.list()

    def spend_by_key(self) -> dict[str, float]:
        self.spend_calls += 1
        if self.gate is not None:
            self.gate.wait(timeout=5)
        return self.store.spend_by_key()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "data" / "usage.db"


@pytest.fixture
def store(db: Path) -> Any:
    store = open_key_store(f"sqlite:///{db}")
    yield store
    store.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def add_usage(db: Path, *costs: tuple[str, float]) -> None:
    """Records written by the ledger's own store, in the same database as the keys."""
    usage = open_store(f"sqlite:///{db}")
    usage.write(
        [
            (time.time(), f"req-{i}", key_id, "demo", "local", "demo", 1, 1, usd, 5.0, "ok", 200)
            for i, (key_id, usd) in enumerate(costs)
        ]
    )
    usage.close()


def test_generated_keys_are_random_and_hashed_with_sha256() -> None:
    keys = {generate_key() for _ in range(100)}
    assert len(keys) == 100
    for key in keys:
        assert re.fullmatch(r"gw-[A-Za-z0-9_-]{40}", key)
    key = next(iter(keys))
    assert hash_key(key) == hashlib.sha256(key.encode()).hexdigest()
    assert len(hash_key(key)) == 64


def test_store_round_trip(store: KeyStore, db: Path) -> None:
    record, plain = store.create(
        KeySpec("ci", ["demo", "gpt-4o-mini"], rpm=60, tpm=10_000, budget_usd=5)
    )
    assert re.fullmatch(r"key_[0-9a-f]{12}", record.id)
    assert record.key_hash == hash_key(plain) and record.prefix == plain[3:11]
    assert record.allowed_models == ("demo", "gpt-4o-mini") and record.enabled
    other, _ = store.create(KeySpec("dev"))
    assert [key.id for key in store.list()] == [record.id, other.id]
    assert store.get(record.id) == record
    assert store.find_by_hash(hash_key(plain)) == record
    assert store.get("key_missing") is None and store.find_by_hash(hash_key("gw-x")) is None

    disabled = store.set_enabled(record.id, False)
    assert not disabled.enabled and disabled.id == record.id
    reopened = open_key_store(f"sqlite:///{db}")
    assert reopened.get(record.id) == disabled
    assert reopened.set_enabled(record.id, True).enabled
    reopened.close()
    with pytest.raises(NotFoundError):
        store.set_enabled("key_missing", False)


def test_create_validates() -> None:
    store = open_key_store("sqlite://:memory:")
    with pytest.raises(InvalidRequestError):
        store.create(KeySpec("  "))
    with pytest.raises(InvalidRequestError):
        store.create(KeySpec("ci", rpm=0))
    with pytest.raises(InvalidRequestError):
        store.create(KeySpec("ci", budget_usd=-1))
    assert store.list() == []


def test_plain_key_is_never_stored(store: KeyStore, db: Path) -> None:
    _, plain = store.create(KeySpec("ci", ["demo"]))
    secret = plain.removeprefix("gw-")
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT * FROM api_keys").fetchall()
    connection.close()
    assert rows and all(secret not in str(value) for row in rows for value in row)
    store.close()  # checkpoints the WAL into the file
    for path in db.parent.iterdir():
        assert secret.encode() not in path.read_bytes()


def test_allows_and_public() -> None:
    store = open_key_store("sqlite://:memory:")
    everything, _ = store.create(KeySpec("all"))
    only_demo, _ = store.create(KeySpec("demo", ["demo"]))
    assert everything.allows("demo") and everything.allows("gpt-4o-mini")
    assert only_demo.allows("demo") and not only_demo.allows("gpt-4o-mini")
    public = only_demo.public()
    assert "key_hash" not in public and only_demo.key_hash not in json.dumps(public)
    assert public["allowed_models"] == ["demo"] and public["prefix"] == only_demo.prefix


def test_open_key_store_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    relative = open_key_store("sqlite:///rel/keys.db")
    assert relative.backend == "sqlite" and (tmp_path / "rel/keys.db").exists()
    absolute = open_key_store(f"sqlite:///{tmp_path}/abs.db")
    assert absolute.backend == "sqlite" and (tmp_path / "abs.db").exists()
    memory = open_key_store("sqlite://:memory:")
    assert memory.backend == "sqlite" and memory.list() == []
    with pytest.raises(ValueError):
        open_key_store("mysql://u@h/db")


def test_spend_by_key_reads_the_running_spend_table(store: KeyStore, db: Path) -> None:
    a, _ = store.create(KeySpec("a", budget_usd=1))
    b, _ = store.create(KeySpec("b", budget_usd=1, budget_period="daily"))
    assert store.spend_by_key() == {a.id: 0.0, b.id: 0.0}
    add_usage(db, (a.id, 0.25), (a.id, 0.5), (b.id, 1.0))
    assert store.spend_by_key() == {a.id: 0.75, b.id: 1.0}
    tomorrow = time.time() + 86_400
    assert store.spend_by_key(now=tomorrow) == {a.id: 0.75, b.id: 0.0}  # a daily budget resets


async def test_authenticate(store: KeyStore, clock: FakeClock) -> None:
    cache = KeyCache(store, ttl_s=TTL, clock=clock)
    record, plain = store.create(KeySpec("ci"))
    off, off_plain = store.create(KeySpec("off"))
    store.set_enabled(off.id, False)
    assert await cache.authenticate(plain) == record
    for bad in (generate_key(), "", "sk-not-ours", plain + "x"):
        with pytest.raises(AuthenticationError) as unknown:
            await cache.authenticate(bad)
        assert unknown.value.code == "invalid_api_key" and unknown.value.status_code == 401
    with pytest.raises(AuthenticationError) as disabled:
        await cache.authenticate(off_plain)
    assert disabled.value.code == "key_disabled"


async def test_keys_from_other_replicas_appear_after_refresh(
    store: KeyStore, db: Path, clock: FakeClock
) -> None:
    cache = KeyCache(store, ttl_s=TTL, clock=clock)
    first, first_plain = store.create(KeySpec("first"))
    await cache.authenticate(first_plain)
    other = open_key_store(f"sqlite:///{db}")  # another replica's store on the same database
    _, second_plain = other.create(KeySpec("second"))
    clock.now += TTL / 8  # inside the early-refresh window: not seen yet
    with pytest.raises(AuthenticationError):
        await cache.authenticate(second_plain)
    clock.now += TTL / 4
    assert (await cache.authenticate(second_plain)).name == "second"

    other.set_enabled(first.id, False)  # a known key: only the TTL picks the change up
    clock.now += TTL / 2
    assert (await cache.authenticate(first_plain)).enabled
    clock.now += TTL / 2
    with pytest.raises(AuthenticationError, match="disabled"):
        await cache.authenticate(first_plain)
    other.close()


async def test_bad_key_flood_reads_the_store_boundedly(store: KeyStore, clock: FakeClock) -> None:
    counting = CountingStore(store)
    cache = KeyCache(counting, ttl_s=TTL, clock=clock)
    _, plain = store.create(KeySpec("ci"))

    async def attempt(key: str) -> bool:
        try:
            await cache.authenticate(key)
        except AuthenticationError:
            return False
        return True

    results = await asyncio.gather(*(attempt(generate_key()) for _ in range(200)), attempt(plain))
    assert results.count(True) == 1
    assert counting.list_calls == 1  # concurrent callers share the first load
    for _ in range(5):  # 5 rounds of 100 bad keys, one early-refresh window apart
        clock.now += TTL / 4
        await asyncio.gather(*(attempt(generate_key()) for _ in range(100)))
    assert counting.list_calls == 1 + 5
    await asyncio.gather(*(attempt("not-even-a-gateway-key") for _ in range(100)))
    assert counting.list_calls == 6


async def test_known_keys_are_answered_while_a_reload_is_in_flight(
    store: KeyStore, clock: FakeClock
) -> None:
    counting = CountingStore(store)
    cache = KeyCache(counting, ttl_s=TTL, clock=clock)
    key, plain = store.create(KeySpec("ci", budget_usd=1.0))
    await cache.authenticate(plain)
    await cache.check_budget(key)
    clock.now += TTL
    counting.gate = threading.Event()
    reload_keys = asyncio.create_task(cache.authenticate(plain))
    reload_spend = asyncio.create_task(cache.spent(key.id))
    await asyncio.sleep(0.05)  # both reloads are now waiting in their threads
    assert not reload_keys.done() and not reload_spend.done()
    assert (await asyncio.wait_for(cache.authenticate(plain), 1)).id == key.id
    assert await asyncio.wait_for(cache.spent(key.id), 1) == 0.0
    counting.gate.set()
    await asyncio.gather(reload_keys, reload_spend)
    assert (counting.list_calls, counting.spend_calls) == (2, 2)


class SnapshotThenWait(CountingStore):
    """Reads the keys first, then waits for `gate`: a slow reload that returns a snapshot
    older than the moment it ends."""

    def list(self) -> list[ApiKey]:
        self.list_calls += 1
        keys = self.store.list()
        if self.gate is not None:
            self.gate.wait(timeout=5)
        return keys


async def test_a_new_key_is_not_refused_from_a_slow_reloads_older_snapshot(
    store: KeyStore, db: Path, clock: FakeClock
) -> None:
    slow = SnapshotThenWait(store)
    cache = KeyCache(slow, ttl_s=TTL, clock=clock)
    _, known = store.create(KeySpec("known"))
    await cache.authenticate(known)
    clock.now += TTL
    slow.gate = threading.Event()
    reloading = asyncio.create_task(cache.authenticate(known))  # reads, then hangs
    await asyncio.sleep(0.05)
    other = open_key_store(f"sqlite:///{db}")  # another replica creates a key meanwhile
    _, new = other.create(KeySpec("new"))
    other.close()
    clock.now += TTL / 2  # well past the early-refresh window of a miss
    asking = asyncio.create_task(cache.authenticate(new))
    await asyncio.sleep(0.05)
    assert not asking.done()  # it waits for the reload in flight, then reads again
    slow.gate.set()
    assert (await asyncio.wait_for(asking, 5)).name == "new"
    await reloading
    assert slow.list_calls == 3


async def test_cache_create_and_disable_are_visible_at_once(
    store: KeyStore, clock: FakeClock
) -> None:
    counting = CountingStore(store)
    cache = KeyCache(counting, ttl_s=TTL, clock=clock)
    await cache.list()
    record, plain = await cache.create(KeySpec("new", ["demo"], rpm=5))
    assert (await cache.authenticate(plain)).id == record.id
    assert (await cache.disable(record.id)).enabled is False
    with pytest.raises(AuthenticationError, match="disabled"):
        await cache.authenticate(plain)
    assert (await cache.enable(record.id)).enabled
    assert await cache.authenticate(plain)
    assert counting.list_calls == 1
    with pytest.raises(NotFoundError):
        await cache.disable("key_missing")


async def test_store_outage(store: KeyStore, clock: FakeClock) -> None:
    counting = CountingStore(store)
    cache = KeyCache(counting, ttl_s=TTL, clock=clock)
    _, plain = store.create(KeySpec("ci"))
    counting.fail = True
    with pytest.raises(ServiceUnavailableError):  # nothing known yet: 503, not 401
        await cache.authenticate(plain)
    counting.fail = False
    clock.now += TTL / 4
    await cache.authenticate(plain)
    counting.fail = True
    clock.now += TTL * 2
    assert (await cache.authenticate(plain)).name == "ci"  # last known keys still serve


async def test_budget_uses_ledger_spend_plus_local_increments(
    store: KeyStore, db: Path, clock: FakeClock
) -> None:
    counting = CountingStore(store)
    cache = KeyCache(counting, ttl_s=TTL, clock=clock)
    key, _ = store.create(KeySpec("ci", budget_usd=1.0))
    unlimited, _ = store.create(KeySpec("free"))
    add_usage(db, (key.id, 0.25), (key.id, 0.35), (unlimited.id, 100.0))
    await cache.check_budget(key)
    await cache.check_budget(unlimited)
    assert await cache.spent(key.id) == pytest.approx(0.6)

    cache.add_spend(key.id, 0.5)  # this replica's cost, not yet in the ledger
    with pytest.raises(BudgetExceededError) as exceeded:
        await cache.check_budget(key)
    assert exceeded.value.code == "budget_exceeded" and exceeded.value.status_code == 402
    assert counting.spend_calls == 1

    add_usage(db, (key.id, 0.5))  # the ledger wrote it ...
    cache.written({key.id: 0.5})  # ... and said so: still counted once before the refresh
    assert await cache.spent(key.id) == pytest.approx(1.1)
    clock.now += TTL
    assert await cache.spent(key.id) == pytest.approx(1.1)  # and once after it
    assert counting.spend_calls == 2
    cache.add_spend(key.id, 0.25)  # not written yet: a refresh does not forget it
    clock.now += TTL
    assert await cache.spent(key.id) == pytest.approx(1.35)


def test_cli_create_list_disable(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{db}"
    argv = ["--db", url, "create", "--name", "ci", "--models", "demo,gpt-4o-mini"]
    assert main([*argv, "--rpm", "60", "--tpm", "10000", "--budget", "5"]) == 0
    created = json.loads(capsys.readouterr().out)
    assert created["key"].startswith("gw-") and created["allowed_models"] == ["demo", "gpt-4o-mini"]
    assert (created["rpm"], created["tpm"], created["budget_usd"]) == (60, 10000, 5.0)
    store = open_key_store(f"sqlite:///{db}")
    key = asyncio.run(KeyCache(store).authenticate(created["key"]))
    assert key.id == created["id"]

    assert main(["--db", url, "list"]) == 0
    listed = capsys.readouterr().out
    assert created["key"] not in listed and created["key"][3:] not in listed
    assert key.key_hash not in listed and "key_hash" not in listed
    assert [item["id"] for item in json.loads(listed)] == [created["id"]]

    assert main(["--db", url, "disable", created["id"]]) == 0
    assert json.loads(capsys.readouterr().out)["enabled"] is False
    disabled = store.get(created["id"])
    assert disabled is not None and not disabled.enabled
    assert main(["--db", url, "enable", "key_missing"]) == 1
    assert "key_missing" in capsys.readouterr().err
    store.close()


def test_cli_defaults_to_ledger_url(
    db: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LEDGER_URL", f"sqlite:///{db}")
    assert main(["create", "--name", "from-env"]) == 0
    created = json.loads(capsys.readouterr().out)
    assert open_key_store(f"sqlite:///{db}").get(created["id"]) is not None
    assert main(["--db", "mysql://nope", "list"]) == 2
