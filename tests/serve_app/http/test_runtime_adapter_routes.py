"""Adapters registered at run time, through the ingress over scripted handles and a real
SQLite store: register, list, call by id and alias, delete, 404; the checks (allowed roots,
PEFT, architecture, vocabulary, shapes, id clashes) and other replicas within the TTL."""

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import GPT2Config, GPT2LMHeadModel

from serve_app.access.adapter_store import AdapterStore
from serve_app.access.admission import Admission
from serve_app.accounting.usage_store import open_engine
from serve_app.contracts.config import GatewayConfig
from serve_app.core.adapter_admin import AdapterAdmin
from serve_app.core.runtime_adapters import RuntimeAdapters
from tests.serve_app.core.resilience_fakes import (
    FakeClock,
    Rig,
    ScriptedHandle,
    assert_error,
    build_rig,
    gateway_args,
)

TTL_S = 5.0
ADMIN_KEY = "admin-key-for-tests"


def admin(config: GatewayConfig) -> Admission:
    return Admission(config, None, None, environ={config.auth.admin_key_env: ADMIN_KEY})


def admin_rig(built_args: dict[str, Any]) -> Rig:
    rig = build_rig(built_args, handles={"demo": ScriptedHandle()}, admission=admin)
    rig.client.headers["authorization"] = f"Bearer {ADMIN_KEY}"
    return rig


def save_model(path: Path, **config: Any) -> Path:
    torch.manual_seed(0)
    settings = {"n_layer": 1, "n_embd": 32, "n_head": 2, "vocab_size": 64, "n_positions": 64}
    GPT2LMHeadModel(GPT2Config(**{**settings, **config})).save_pretrained(str(path))
    return path


def save_adapter(base_dir: Path, out: Path) -> str:
    model = GPT2LMHeadModel.from_pretrained(str(base_dir))  # records base_model_name_or_path
    lora = LoraConfig(r=4, target_modules=["c_attn", "lm_head"], init_lora_weights=False)
    get_peft_model(model, lora).save_pretrained(str(out))
    return str(out)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("runtime-adapters")
    base = save_model(root / "base")
    allowed = root / "allowed"
    return {
        "base": base,
        "root": allowed,
        "good": save_adapter(base, allowed / "good"),
        "wide": save_adapter(save_model(root / "wide-base", n_embd=48), allowed / "wide"),
        "vocab": save_adapter(save_model(root / "vocab-base", vocab_size=80), allowed / "vocab"),
        "outside": save_adapter(base, root / "outside"),
    }


def args(models: dict[str, Any], db: str) -> dict[str, Any]:
    built = gateway_args(
        adapters={
            "declared": [{"id": "declared", "base": "demo", "path": models["good"]}],
            "allowed_roots": [str(models["root"])],
            "store_url": db,
        }
    )
    built["models"][0]["path"] = str(models["base"])
    return built


def with_registry(rig: Rig, db: str, clock: FakeClock) -> None:
    registry = RuntimeAdapters(AdapterStore(open_engine(db)), TTL_S, clock=clock)
    rig.gateway.adapters = AdapterAdmin(rig.gateway.config, rig.gateway.catalog, registry)


@pytest.fixture
async def rigs(models: dict[str, Any], tmp_path: Path) -> AsyncIterator[tuple[Rig, Rig]]:
    """Two ingress replicas over one database."""
    db = f"sqlite:///{tmp_path}/gateway.db"
    built = []
    for _ in range(2):
        rig = admin_rig(args(models, db))
        with_registry(rig, db, rig.clock)
        built.append(rig)
    yield built[0], built[1]
    for rig in built:
        await rig.close()


async def register(rig: Rig, **body: Any) -> httpx.Response:
    return await rig.client.post("/api/v1/admin/adapters", json={"base": "demo", **body})


async def generate(rig: Rig, model: str) -> httpx.Response:
    return await rig.client.post("/api/v1/generate", json={"prompt": "hi", "model_id": model})


async def test_register_call_list_delete_then_404(
    rigs: tuple[Rig, Rig], models: dict[str, Any]
) -> None:
    rig, other = rigs
    response = await register(rig, id="live", path=models["good"], description="d")
    assert response.status_code == 201, response.text
    assert response.json()["id"] == "live" and response.json()["source"] == "runtime"
    for name in ("live", "demo:live"):
        answer = await generate(rig, name)
        assert answer.status_code == 200, answer.text
        assert answer.json()["model_id"] == "live"
    calls = rig.handle("demo").calls()
    assert {c.params.adapter for c in calls} == {"live"}
    assert {c.params.adapter_path for c in calls} == {models["good"]}
    assert {c.options.get("multiplexed_model_id") for c in calls} == {"live"}
    listed = (await rig.client.get("/api/v1/admin/adapters")).json()["adapters"]
    assert {(a["id"], a["source"]) for a in listed} == {("declared", "config"), ("live", "runtime")}
    models_listed = (await rig.client.get("/v1/models")).json()["data"]
    no_admin = await rig.client.get("/api/v1/admin/adapters", headers={"authorization": ""})
    assert_error(no_admin, 403, "permission_error")
    assert "live" in {m["id"] for m in models_listed}
    # The other replica sees it once its view is older than the TTL.
    first = await generate(other, "live")
    assert first.status_code == 200, first.text  # first read: fresh
    deleted = await rig.client.delete("/api/v1/admin/adapters/live")
    assert deleted.status_code == 200, deleted.text
    assert_error(await generate(rig, "live"), 404, "not_found_error")
    assert (await generate(other, "live")).status_code == 200  # within the TTL
    other.clock.advance(TTL_S + 0.1)
    assert_error(await generate(other, "demo:live"), 404, "not_found_error")
    again = await rig.client.delete("/api/v1/admin/adapters/live")
    assert_error(again, 404, "not_found_error")


async def test_id_clashes_are_409(rigs: tuple[Rig, Rig], models: dict[str, Any]) -> None:
    rig, other = rigs
    for taken in ("demo", "gpt-x", "declared"):
        assert_error(await register(rig, id=taken, path=models["good"]), 409, "conflict_error")
    assert (await register(rig, id="twice", path=models["good"])).status_code == 201
    assert_error(await register(other, id="twice", path=models["good"]), 409, "conflict_error")
    declared = await rig.client.delete("/api/v1/admin/adapters/declared")
    assert_error(declared, 409, "conflict_error")


@pytest.mark.parametrize(
    ("case", "says"),
    [
        ("outside", "allowed_roots"),
        ("base", "not a PEFT adapter"),
        ("wide", "shape mismatch"),
        ("vocab", "vocabulary mismatch"),
    ],
)
async def test_bad_adapters_are_400_naming_the_mismatch(
    rigs: tuple[Rig, Rig], models: dict[str, Any], case: str, says: str
) -> None:
    path = str(models[case]) if case != "base" else str(models["root"])
    error = assert_error(await register(rigs[0], id="bad", path=path), 400, "invalid_request_error")
    assert says in error["message"], error
    assert_error(await generate(rigs[0], "bad"), 404, "not_found_error")


async def test_unknown_base_and_bad_id_are_400(
    rigs: tuple[Rig, Rig], models: dict[str, Any]
) -> None:
    rig = rigs[0]
    error = assert_error(
        await register(rig, id="x", path=models["good"], base="nope"), 400, "invalid_request_error"
    )
    assert error["param"] == "base"
    bad_id = await register(rig, id="a:b", path=models["good"])
    assert_error(bad_id, 400, "invalid_request_error")


async def test_registration_is_off_without_allowed_roots(models: dict[str, Any]) -> None:
    rig = admin_rig(gateway_args())
    try:
        response = await register(rig, id="x", path=models["good"])
        assert_error(response, 403, "permission_error")
        assert (await rig.client.get("/api/v1/admin/adapters")).json() == {"adapters": []}
    finally:
        await rig.close()


def test_cli_registers_lists_and_deletes_over_http(
    models: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from serve_app.http.app import create_app
    from serve_app.runtime import adapters_cli
    from tests.serve_app.live_server import serve

    db = f"sqlite:///{tmp_path}/gateway.db"
    rig = admin_rig(args(models, db))
    with_registry(rig, db, rig.clock)
    monkeypatch.setenv("GATEWAY_ADMIN_KEY", ADMIN_KEY)
    with serve(create_app(rig.gateway)) as port:
        url = ["--url", f"http://127.0.0.1:{port}"]
        register = ["register", "--id", "cli", "--base", "demo", "--path", models["good"]]
        assert adapters_cli.main([*url, *register, "--input-price", "2"]) == 0
        assert json.loads(capsys.readouterr().out)["price"]["input_per_million_usd"] == 2
        assert adapters_cli.main([*url, *register]) == 1
        assert "409" in capsys.readouterr().err
        assert adapters_cli.main([*url, "list"]) == 0
        listed = json.loads(capsys.readouterr().out)["adapters"]
        assert "cli" in {a["id"] for a in listed}
        assert adapters_cli.main([*url, "delete", "cli"]) == 0
        assert adapters_cli.main([*url, "delete", "cli"]) == 1
        monkeypatch.delenv("GATEWAY_ADMIN_KEY")
        assert adapters_cli.main([*url, "list"]) == 1
        assert "403" in capsys.readouterr().err
