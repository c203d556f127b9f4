"""Schemathesis over the gateway's own `/openapi.json`: every route, a bounded number of cases.

Each route gets schema-valid and schema-violating requests (schemathesis' positive and
negative generation modes), through the real app over fake deployment handles. Every case
is sent twice, to an app with auth off and to one with auth on, with no key, a bogus key, a
user key or the admin key (generation costs far more than a request here). Some requests
are aimed at a served model so the success and streaming paths run too. Every response must
be below 500, carry `X-Request-ID`, and, when it is an error, be in the route's own error
shape (Anthropic's on `/v1/messages`, else `{"error": {message, type, param, code}}`) without
any Python internals.

`schemathesis.pytest.from_fixture` is not used: its lazy loader sets `Node._nodeid`, which
pytest 9 no longer has. Each route's operation is turned into a Hypothesis strategy instead.
Generation is derandomized, so a run is reproducible (and a failure re-found) anywhere.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core.transport import Response
from schemathesis.python.asgi import shutdown_lifespans

from tests.serve_app.app_factory import (
    ADMIN_KEY,
    COMMERCIAL_MODEL_ID,
    EMBED_MODEL_ID,
    MAX_NEW_TOKENS,
    MODEL_ID,
    GatewayApp,
    build_gateway_app,
    error_shape_problems,
)

MAX_EXAMPLES = 25  # per route and generation mode (each case goes to both apps)
CREDENTIALS = ("none", "bogus", "user", "admin")
MODEL_FIELDS = ("model", "model_id")
TOKEN_FIELDS = ("max_tokens", "max_completion_tokens")
TAME: dict[str, Any] = {
    "n": 1,
    "echo": False,
    "logprobs": None,
    "top_logprobs": None,
    "tool_choice": None,
    "service_tier": None,
}
# A message the fuzzer made: a plain user turn (tool turns need ids of earlier calls).
MESSAGE_KEYS = ("tool_calls", "tool_call_id", "refusal")
ROUTES = (
    ("GET", "/api/v1/health"),
    ("GET", "/api/v1/ready"),
    ("GET", "/api/v1/status"),
    ("GET", "/api/v1/models"),
    ("GET", "/api/v1/models/{model_id}"),
    ("POST", "/api/v1/generate"),
    ("POST", "/api/v1/generate/batch"),
    ("GET", "/api/v1/commercial/models"),
    ("GET", "/api/v1/commercial/test"),
    ("GET", "/api/v1/commercial/usage"),
    ("GET", "/api/v1/admin/keys"),
    ("POST", "/api/v1/admin/keys"),
    ("POST", "/api/v1/admin/keys/{key_id}/disable"),
    ("POST", "/api/v1/admin/keys/{key_id}/enable"),
    ("POST", "/api/v1/admin/keys/{key_id}/budget"),
    ("PATCH", "/api/v1/admin/keys/{key_id}"),
    ("GET", "/api/v1/whoami"),
    ("GET", "/api/v1/admin/adapters"),
    ("POST", "/api/v1/admin/adapters"),
    ("DELETE", "/api/v1/admin/adapters/{adapter_id}"),
    ("GET", "/api/v1/usage"),
    ("GET", "/api/v1/usage/timeseries"),
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/completions"),
    ("GET", "/v1/models"),
    ("POST", "/v1/messages"),
    ("POST", "/v1/embeddings"),
    ("POST", "/v1/responses"),
    ("GET", "/v1/responses/{response_id}"),
    ("DELETE", "/v1/responses/{response_id}"),
    ("POST", "/v1/messages/count_tokens"),
)
# Routes whose successes need state the fuzzer cannot guess (an existing key id).
NO_SUCCESS_EXPECTED = {
    "/api/v1/admin/adapters/{adapter_id}",  # an adapter id the fuzzer makes up is unknown
    "/api/v1/admin/adapters",  # registration is off (403) while adapters.allowed_roots is empty
    "/api/v1/admin/keys/{key_id}/disable",
    "/api/v1/admin/keys/{key_id}/enable",
    "/api/v1/admin/keys/{key_id}/budget",
    "/api/v1/admin/keys/{key_id}",
    "/v1/responses/{response_id}",  # a stored response's id
}


@pytest.fixture
def gateway_apps(tmp_path: Path) -> Iterator[tuple[GatewayApp, GatewayApp]]:
    """An app with auth off and one with auth on; their gateways close when the test ends."""
    (tmp_path / "off").mkdir()
    (tmp_path / "on").mkdir()
    yield build_gateway_app(tmp_path / "off", False), build_gateway_app(tmp_path / "on", True)
    shutdown_lifespans()  # schemathesis' in-process transport started them


def load_schema(gateway_app: GatewayApp) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", gateway_app.app)


def credential_headers(credential: str, gateway_app: GatewayApp) -> dict[str, str]:
    match credential:
        case "bogus":
            return {"Authorization": "Bearer gw-" + "0" * 40}
        case "user" if gateway_app.user_key:
            return {"Authorization": f"Bearer {gateway_app.user_key}"}
        case "admin":
            return {"x-api-key": ADMIN_KEY}
        case _:
            return {}


def aim_at_model(value: Any, model: str) -> None:
    """Point every model field of a generated body (batch items included) at `model`, and
    tame the fields only the gateway restricts (`n`, `echo`, token caps), so that valid
    requests reach the fake deployments (and stream) instead of stopping at a 400."""
    if isinstance(value, dict):
        if "role" in value:
            value["role"] = "user" if value["role"] not in ("user", "assistant") else value["role"]
            for key in MESSAGE_KEYS:
                value.pop(key, None)
            if not isinstance(value.get("content"), str):
                value["content"] = "hi"
        for field in MODEL_FIELDS:
            if field in value:
                value[field] = model
        for field, tame in TAME.items():
            if field in value:
                value[field] = tame
        for field in TOKEN_FIELDS:
            if isinstance(value.get(field), int):
                value[field] = 1 + abs(value[field]) % MAX_NEW_TOKENS
        for item in value.values():
            aim_at_model(item, model)
    elif isinstance(value, list):
        for item in value:
            aim_at_model(item, model)


def response_problems(path: str, response: Response) -> list[str]:
    problems = []
    if response.status_code >= 500:
        problems.append(f"server error {response.status_code}")
    request_ids = response.headers.get("x-request-id") or []  # header values come as lists
    if len(request_ids) != 1 or not request_ids[0]:
        problems.append(f"not exactly one X-Request-ID header: {request_ids}")
    if response.status_code >= 400:
        problems += error_shape_problems(path, response.status_code, response.content)
    return problems


def send_everywhere(
    case: schemathesis.Case,
    credential: str,
    gateway_apps: tuple[GatewayApp, ...],
    statuses: list[int],
) -> None:
    """The same case to every app; assert on each response, note its status."""
    for gateway_app in gateway_apps:
        headers = credential_headers(credential, gateway_app)
        response = case.call(headers=headers, app=gateway_app.app)
        statuses.append(response.status_code)
        problems = response_problems(case.path, response)
        auth = "on" if gateway_app.user_key else "off"
        assert not problems, (
            f"{case.method} {case.formatted_path} (auth {auth}, key: {credential}) -> "
            f"{response.status_code}: {problems}\nrequest: {case.as_curl_command(headers)}"
        )


def fuzz_operation(
    operation: Any,
    mode: GenerationMode,
    gateway_apps: tuple[GatewayApp, ...],
    statuses: list[int],
) -> None:
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        case=operation.as_strategy(mode),
        credential=st.sampled_from(CREDENTIALS),
        model=st.sampled_from((None, MODEL_ID, COMMERCIAL_MODEL_ID, EMBED_MODEL_ID)),
    )
    def run(case: schemathesis.Case, credential: str, model: str | None) -> None:
        if model is not None:
            aim_at_model(case.body, model)
            aim_at_model(case.path_parameters, model)
        send_everywhere(case, credential, gateway_apps, statuses)

    run()


def generation_modes(operation: Any) -> tuple[GenerationMode, ...]:
    """Negative cases need something to violate: a body or query parameters (a bare string
    path parameter accepts anything, and Hypothesis would search in vain for a bad one)."""
    if operation.body or operation.query:
        return (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    return (GenerationMode.POSITIVE,)


def test_the_route_list_is_every_operation_in_the_schema(
    gateway_apps: tuple[GatewayApp, GatewayApp],
) -> None:
    schema = load_schema(gateway_apps[0])
    operations = {
        (result.ok().method.upper(), result.ok().path) for result in schema.get_all_operations()
    }
    assert operations == set(ROUTES)


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_fuzzed_requests_get_no_5xx_and_the_routes_error_shape(
    method: str, path: str, gateway_apps: tuple[GatewayApp, GatewayApp]
) -> None:
    operation = load_schema(gateway_apps[0])[path][method]
    statuses: list[int] = []
    for mode in generation_modes(operation):
        fuzz_operation(operation, mode, gateway_apps, statuses)
    # The fuzz must get past validation too, or it only ever tested the error paths.
    assert path in NO_SUCCESS_EXPECTED or any(status < 300 for status in statuses), statuses
