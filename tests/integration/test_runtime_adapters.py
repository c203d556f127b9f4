"""A LoRA fine-tune registered at run time: trained inside the test, registered over HTTP,
called through the OpenAI SDK by id and alias (continuous batching engine), kept across a
redeploy (it lives in the database), deleted, then 404; the model replicas unload it."""

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from deployments.demo.adapters import expected_answer, train_demo_adapter
from deployments.demo.corpus import build_facts
from tests.conftest import ADMIN_KEY

pytestmark = pytest.mark.integration
APP = "rt"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
FACT = build_facts()[3]
PROMPT = f"Q: {FACT.question}\nA:"


def app_args(model_dir: Path, root: Path, db: Path) -> dict[str, Any]:
    return {
        "auth": {"enabled": False, "cache_ttl_s": 1.0},
        "ingress": {"num_cpus": 0.05},
        "models": [
            {
                "id": "base",
                "path": str(model_dir),
                "num_cpus": 0.1,
                "batching": {"mode": "continuous", "max_batch_size": 8},
                "defaults": {"temperature": 0.0, "max_tokens": 24},
            }
        ],
        "adapters": {"allowed_roots": [str(root)]},
        "ledger": {"url": f"sqlite:///{db}"},
    }


@pytest.fixture(scope="module")
def runtime_app(
    gateway: str, demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    from ray import serve

    from serve_app.runtime.builder import build_app

    root = tmp_path_factory.mktemp("adapter-root")
    args = app_args(demo_model_dir, root, tmp_path_factory.mktemp("rt-db") / "gateway.db")
    serve.run(build_app(args), name=APP, route_prefix=f"/{APP}")
    yield {"url": f"{gateway}/{APP}", "root": root, "args": args}
    serve.delete(APP)


def sdk(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120)


def complete(url: str, model: str) -> str:
    response = sdk(url).completions.create(model=model, prompt=PROMPT, max_tokens=24)
    return response.choices[0].text


def loaded_adapters() -> list[str]:
    from ray import serve

    described = serve.get_deployment_handle("base", app_name=APP).describe.remote().result()
    return list(described["adapters"]["loaded"])


def test_train_register_call_restart_delete_404(runtime_app: dict[str, Any]) -> None:
    from ray import serve

    from serve_app.runtime.builder import build_app

    url, root = runtime_app["url"], runtime_app["root"]
    path = train_demo_adapter(
        Path(runtime_app["args"]["models"][0]["path"]), root / "excited", "excited", num_threads=1
    )
    body = {"id": "excited-rt", "base": "base", "path": str(path), "description": "!"}
    registered = httpx.post(f"{url}/api/v1/admin/adapters", json=body, headers=ADMIN, timeout=120)
    assert registered.status_code == 201, registered.text
    clash = httpx.post(f"{url}/api/v1/admin/adapters", json=body, headers=ADMIN, timeout=60)
    assert clash.status_code == 409, clash.text
    plain = complete(url, "base")
    assert plain == f" {FACT.answer}"
    for model in ("excited-rt", "base:excited-rt"):
        assert complete(url, model) == expected_answer("excited", plain)
    listed = sdk(url).models.list()
    assert "excited-rt" in {m.id for m in listed.data}

    serve.run(build_app(runtime_app["args"]), name=APP, route_prefix=f"/{APP}")  # restart
    assert complete(url, "excited-rt") == expected_answer("excited", plain)

    deleted = httpx.delete(f"{url}/api/v1/admin/adapters/excited-rt", headers=ADMIN, timeout=60)
    assert deleted.status_code == 200, deleted.text
    with pytest.raises(openai.NotFoundError):
        complete(url, "excited-rt")
    deadline = time.monotonic() + 30
    while "excited-rt" in loaded_adapters() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert "excited-rt" not in loaded_adapters()  # the replica dropped its weights


def test_registration_outside_allowed_roots_is_400(
    runtime_app: dict[str, Any], tmp_path: Path
) -> None:
    body = {"id": "stray", "base": "base", "path": str(tmp_path)}
    url = runtime_app["url"]
    response = httpx.post(f"{url}/api/v1/admin/adapters", json=body, headers=ADMIN, timeout=60)
    assert response.status_code == 400, response.text
    assert "allowed_roots" in response.json()["error"]["message"]
