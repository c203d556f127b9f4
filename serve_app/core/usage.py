"""What every finished call leaves behind: the model's counters, one ledger record, the
key's spend and budget settlement, the access-log fields and the metrics.

One `UsageAccountant` per `Gateway`. `account` runs exactly once per call, whether it
answered, failed or was abandoned by its client (`cancelled`).
"""

import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from serve_app.access.admission import Admission
from serve_app.access.auth import RequestContext
from serve_app.accounting.ledger import Ledger, UsageRecord
from serve_app.contracts.errors import GatewayError
from serve_app.contracts.pricing import cost_usd
from serve_app.contracts.wire import GenerationOutput, GenerationParams
from serve_app.core.catalog import ModelRoute
from serve_app.core.stats import ModelCounters
from serve_app.core.streaming import estimate_prompt_tokens

CLIENT_CLOSED_STATUS = 499
AccountFn = Callable[..., tuple[float, float]]  # `UsageAccountant.account`
CANCELLED = GenerationOutput("", 0, 0, "cancelled")


def cancelled(route: ModelRoute, params: GenerationParams) -> GenerationOutput:
    """What a call the client abandoned is billed: a provider bills the prompt it received,
    so a commercial call gets the estimate a stream cancelled before its first chunk gets."""
    if route.model_type != "commercial":
        return CANCELLED
    return GenerationOutput("", estimate_prompt_tokens(params), 0, "cancelled")


def outcome(output: GenerationOutput | None, error: GatewayError | None) -> str:
    if error is not None:
        return error.error_type
    return "cancelled" if output and output.finish_reason == "cancelled" else "ok"


def status_code(output: GenerationOutput | None, error: GatewayError | None) -> int:
    if error is not None:
        return error.status_code
    return CLIENT_CLOSED_STATUS if output and output.finish_reason == "cancelled" else 200


class UsageAccountant:
    def __init__(self, ledger: Ledger, admission: Admission, metrics: Any = None) -> None:
        self.ledger = ledger
        self.admission = admission
        self.metrics = metrics
        self.counters: dict[str, ModelCounters] = defaultdict(ModelCounters)

    def account(
        self,
        route: ModelRoute,
        request_id: str,
        ctx: RequestContext,
        started: float,
        output: GenerationOutput | None,
        error: GatewayError | None,
        requested: str | None = None,
        cached: bool = False,
    ) -> tuple[float, float]:
        """Counters, metrics, the ledger, the key's spend and the access-log fields: (latency
        ms, cost USD).

        `route` is what served (or failed); `requested` the model asked for, when a fallback
        served it: the ledger keeps both (`model_id` asked, `served_model` answered). A
        `cached` answer costs nothing; the ledger shows what it saved."""
        latency_ms = (time.perf_counter() - started) * 1000
        input_tokens = output.input_tokens if output else 0
        output_tokens = output.output_tokens if output else 0
        cost = cost_usd(route.price, input_tokens, output_tokens)
        saved, cost = (cost, 0.0) if cached else (0.0, cost)
        if not cached:  # the model's own latency and error counters
            self.counters[route.model_id].record(latency_ms, error is None)
        self.ledger.record(
            UsageRecord(
                ts=time.time(),
                request_id=request_id,
                key_id=ctx.key_id,
                model_id=requested or route.model_id,
                provider=route.provider,
                served_model=route.model_id,  # the gateway id (an adapter's, a fallback's)
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cost_usd=cost,
                latency_ms=round(latency_ms, 3),
                outcome=outcome(output, error),
                status=status_code(output, error),
                cache_hit=cached,
                saved_usd=saved,
            )
        )
        self._charge(ctx, request_id, cost)
        ctx.log.update(
            model=requested or route.model_id,
            served_model=route.model_id,
            provider=route.provider,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost_usd=cost,
        )
        if self.metrics is not None and not cached:
            self._observe(route, output, error, latency_ms, cost)
        return latency_ms, cost

    def _charge(self, ctx: RequestContext, request_id: str, cost: float) -> None:
        """The key's running spend, and the budget reservation settled to the real cost."""
        if ctx.key is not None and self.admission.keys is not None and cost:
            self.admission.keys.add_spend(ctx.key.id, cost)
        self.admission.settle(ctx, request_id, cost)

    def _observe(
        self,
        route: ModelRoute,
        output: GenerationOutput | None,
        error: GatewayError | None,
        latency_ms: float,
        cost: float,
    ) -> None:
        self.metrics.record_request(
            route.model_id,
            route.provider,
            str(status_code(output, error)),
            latency_ms,
            output.input_tokens if output else 0,
            output.output_tokens if output else 0,
            cost,
            error.error_type if error else None,
        )
        if error is not None and error.code == "provider_rate_limit":
            self.metrics.record_rate_limited("provider")
