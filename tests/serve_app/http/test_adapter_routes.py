"""LoRA adapters through the ingress: `demo-shout` and its alias `demo:demo-shout` go to the
base model's deployment, multiplexed (`multiplexed_model_id`), with `params.adapter` set."""

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from serve_app.contracts.errors import ServiceUnavailableError
from serve_app.contracts.wire import GenerationOutput, GenerationParams
from serve_app.core.gateway import Gateway
from serve_app.http.app import create_app
from serve_app.runtime.config_check import validate_args
from tests.fakes.handles import FakeHandle
from tests.serve_app.core.resilience_fakes import Rig, ScriptedHandle, build_rig, gateway_args

ADAPTER = "demo-shout"
MULTIPLEXED = {"multiplexed_model_id": ADAPTER}


def adapter_args(**adapter: Any) -> dict[str, Any]:
    return gateway_args(
        commercial=None,
        adapters=[
            {
                "id": ADAPTER,
                "base": "demo",
                "path": "/models/demo-shout",
                "description": "shouts",
                **adapter,
            }
        ],
    )


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    built = build_rig(adapter_args(), handles={"demo": ScriptedHandle()})
    yield built
    await built.close()


async def generate(rig: Rig, model: str, **body: Any) -> httpx.Response:
    return await rig.client.post(
        "/api/v1/generate", json={"prompt": "hi", "model_id": model, **body}
    )


@pytest.mark.parametrize("model", [ADAPTER, f"demo:{ADAPTER}"])
async def test_adapter_and_alias_reach_the_base_deployment_multiplexed(
    rig: Rig, model: str
) -> None:
    response = await generate(rig, model)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_id"] == ADAPTER and body["text"] == f"{ADAPTER} answers via {ADAPTER}"
    assert body["metadata"]["fallback_used"] is False
    (call,) = rig.handle("demo").calls()
    assert call.options == MULTIPLEXED
    assert (call.params.adapter, call.params.model_id) == (ADAPTER, ADAPTER)
    assert call.params.max_tokens == 8  # the base model's defaults apply


async def test_the_base_model_is_called_without_adapter(rig: Rig) -> None:
    assert (await generate(rig, "demo")).json()["model_id"] == "demo"
    (call,) = rig.handle("demo").calls()
    assert call.options == {} and call.params.adapter is None


async def test_a_streamed_adapter_call_keeps_the_multiplexed_id(rig: Rig) -> None:
    response = await generate(rig, f"demo:{ADAPTER}", stream=True)
    assert response.status_code == 200, response.text
    (call,) = rig.handle("demo").calls("generate_stream")
    assert call.options == {**MULTIPLEXED, "stream": True}
    assert call.params.adapter == ADAPTER
    frames = [line[6:] for line in response.text.splitlines() if line.startswith("data: {")]
    assert json.loads(frames[-1])["model_id"] == ADAPTER


async def test_adapters_through_the_openai_and_anthropic_routes(rig: Rig) -> None:
    chat = {"messages": [{"role": "user", "content": "hi"}]}
    openai = await rig.client.post("/v1/chat/completions", json={"model": ADAPTER, **chat})
    assert openai.status_code == 200 and openai.json()["model"] == ADAPTER
    anthropic = await rig.client.post(
        "/v1/messages", json={"model": f"demo:{ADAPTER}", "max_tokens": 5, **chat}
    )
    assert anthropic.status_code == 200, anthropic.text
    assert [c.options for c in rig.handle("demo").calls()] == [MULTIPLEXED, MULTIPLEXED]
    listed = {m["id"] for m in (await rig.client.get("/v1/models")).json()["data"]}
    assert listed == {"demo", ADAPTER}


async def test_an_adapter_falls_back_to_its_base_without_the_adapter() -> None:
    def broken_adapter(params: GenerationParams) -> GenerationOutput | ServiceUnavailableError:
        if params.adapter:  # what the engine answers when an adapter fails to load
            return ServiceUnavailableError("unreadable", code="adapter_unavailable")
        return GenerationOutput("plain", 1, 1, "stop", params.model_id)

    rig = build_rig(
        adapter_args(fallbacks=["demo"]), handles={"demo": ScriptedHandle(broken_adapter)}
    )
    try:
        body = (await generate(rig, ADAPTER)).json()
        assert body["model_id"] == "demo" and body["metadata"]["requested_model"] == ADAPTER
        first, second = rig.handle("demo").calls()
        assert (first.options, first.params.adapter) == (MULTIPLEXED, ADAPTER)
        assert (second.options, second.params.adapter) == ({}, None)
    finally:
        await rig.close()


async def test_adapter_price_defaults_to_the_base_models_and_may_be_its_own() -> None:
    args = adapter_args(price={"input_per_million_usd": 10.0})
    args["models"][0]["price"] = {"input_per_million_usd": 1.0}
    rig = build_rig(args, handles={"demo": ScriptedHandle()})
    try:
        own = (await generate(rig, ADAPTER)).json()["metadata"]["cost_usd"]
        base = (await generate(rig, "demo")).json()["metadata"]["cost_usd"]
        assert (own, base) == (pytest.approx(30 / 1e6), pytest.approx(3 / 1e6))
    finally:
        await rig.close()


async def test_with_the_shared_fake_handle_the_options_are_recorded() -> None:
    """The same routing seen through `tests.fakes.handles.FakeHandle` (`options_used`)."""
    config = validate_args(adapter_args(), "t", {})
    handle = FakeHandle(
        generate=lambda p: GenerationOutput(p.adapter or "-", 1, 1, "stop", "demo"),
        describe=lambda: {"metadata": {}},
    )
    gateway = Gateway(config, {"demo": handle})
    assert gateway.catalog.get(f"demo:{ADAPTER}").handle.options_used == MULTIPLEXED
    assert not hasattr(gateway.catalog.get("demo").handle, "options_used")
    transport = httpx.ASGITransport(app=create_app(gateway))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.post(
            "/api/v1/generate", json={"prompt": "x", "model_id": f"demo:{ADAPTER}"}
        )
    await gateway.close()
    assert response.json()["text"] == ADAPTER
    ((sent,),) = handle.generate.calls  # type: ignore[attr-defined]
    assert sent.adapter == ADAPTER
