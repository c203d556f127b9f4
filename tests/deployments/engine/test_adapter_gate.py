"""AdapterGate without Ray: a run-time adapter is served from the path on the request; once
the database no longer lists it, new requests get 404, a running one finishes, and its
weights leave the model when that request ends."""

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import GPT2Config, GPT2LMHeadModel

from deployments.engine.adapter_gate import AdapterGate
from deployments.engine.decoding import BatchGenerator
from deployments.engine.lora import AdapterHost, AdapterSlot
from serve_app.contracts.errors import InvalidRequestError, NotFoundError, ServiceUnavailableError
from tests.deployments.engine.test_lora import Tokenizer, wait_until

CONFIG = GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64, n_positions=64)


@pytest.fixture(scope="module")
def adapter_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    torch.manual_seed(1)
    lora = LoraConfig(r=4, target_modules=["c_attn"], init_lora_weights=False)
    path = tmp_path_factory.mktemp("runtime")
    get_peft_model(GPT2LMHeadModel(CONFIG), lora).save_pretrained(str(path))
    return str(path)


def gate() -> AdapterGate:
    torch.manual_seed(0)
    engine = BatchGenerator(GPT2LMHeadModel(CONFIG).eval(), Tokenizer(), torch.device("cpu"), 64)
    host = AdapterHost(engine, {}, torch.device("cpu"))

    async def get_adapter(adapter_id: str) -> AdapterSlot:  # what @serve.multiplexed wraps
        return await asyncio.to_thread(host.load, adapter_id)

    return AdapterGate("base", host, get_adapter)


def test_runtime_adapter_served_then_deleted_after_in_flight(adapter_path: str) -> None:
    subject = gate()

    async def scenario() -> None:
        async with subject.pinned("rt", adapter_path):
            assert subject.host.loaded == ["rt"]
            subject.sync({})  # deleted in the database while this request runs
            with pytest.raises(NotFoundError):
                async with subject.pinned("rt", adapter_path):
                    pass
            assert subject.host.loaded == []  # doomed: no longer offered ...
            assert hasattr(subject.host.engine.model, "peft_config")  # ... but still there

    asyncio.run(scenario())
    assert wait_until(lambda: not hasattr(subject.host.engine.model, "peft_config"))
    subject.sync({"rt": adapter_path})  # registered again: served again
    asyncio.run(_use(subject, "rt", adapter_path))


async def _use(subject: AdapterGate, adapter_id: str, path: str | None) -> None:
    async with subject.pinned(adapter_id, path):
        assert adapter_id in subject.host.loaded


def test_unknown_adapter_without_path_is_400_and_a_vanished_path_is_503(
    tmp_path: Path,
) -> None:
    subject = gate()
    with pytest.raises(InvalidRequestError):
        asyncio.run(_use(subject, "nope", None))
    with pytest.raises(ServiceUnavailableError) as raised:
        asyncio.run(_use(subject, "gone", str(tmp_path / "missing")))
    assert raised.value.code == "adapter_unavailable"


def test_a_failing_source_keeps_serving(adapter_path: str) -> None:
    calls: list[Any] = []

    def source() -> dict[str, str]:
        calls.append(1)
        raise OSError("database down")

    subject = gate()
    subject.source, subject.sync_s = source, 0.01
    threading.Thread(target=subject._poll, daemon=True).start()
    assert wait_until(lambda: len(calls) >= 2)
    asyncio.run(_use(subject, "rt", adapter_path))
    subject.stop()
