"""Circuit breakers and the fallback rule, kept in each ingress replica (no hop to ask them).

A breaker per deployment (a provider's proxy, or a local model) opens after
`failure_threshold` consecutive upstream failures; while open, calls fail at once (so a dead
provider costs no timeout per request) and the request goes to its fallbacks. After
`cooldown_s` one trial call is let through (half-open): success closes the breaker, failure
opens it again.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from serve_app.contracts.config import CircuitBreakerConfig
from serve_app.contracts.errors import GatewayError, ServiceUnavailableError

State = Literal["closed", "open", "half_open"]
# Errors worth trying another model for: rate limited, unavailable, failed, timed out.
FALLBACK_STATUSES = frozenset({429, 500, 502, 503, 504})
# Errors that say the upstream itself is unwell (a 429 says it is alive but busy).
BREAKER_STATUSES = frozenset({500, 502, 504})
# Neither healthy nor failing: busy (back-pressure), shed, or cut short by the client.
NEUTRAL_CODES = frozenset(
    {"backpressure", "circuit_open", "adapter_unavailable", "rate_limiter_unavailable"}
)


def is_our_bug(error: GatewayError) -> bool:
    """A 500 internal_error is a programming error of ours, not the upstream's health: it
    neither trips a breaker nor starts a fallback."""
    return error.error_type == "internal_error"


def worth_a_fallback(error: GatewayError) -> bool:
    return error.status_code in FALLBACK_STATUSES and not is_our_bug(error)


@dataclass(slots=True)
class CircuitBreaker:
    threshold: int
    cooldown_s: float
    state: State = "closed"
    failures: int = 0
    opened_at: float = 0.0
    trial_in_flight: bool = False
    trial_started: float = 0.0

    def allow(self, now: float) -> bool:
        if self.state == "closed":
            return True
        if self.state == "open" and now - self.opened_at >= self.cooldown_s:
            self.state, self.trial_in_flight = "half_open", False
        # A trial that never reported back (cancelled) stops blocking after a cool-down.
        stale_trial = self.trial_in_flight and now - self.trial_started >= self.cooldown_s
        if self.state == "half_open" and (not self.trial_in_flight or stale_trial):
            self.trial_in_flight, self.trial_started = True, now
            return True
        return False

    def release(self) -> None:
        """The call let through ended without telling anything about the upstream."""
        self.trial_in_flight = False

    def record_success(self) -> None:
        self.state, self.failures, self.trial_in_flight = "closed", 0, False

    def record_failure(self, now: float) -> None:
        self.failures += 1
        if self.state == "half_open" or self.failures >= self.threshold:
            self.state, self.opened_at, self.trial_in_flight = "open", now, False

    def retry_after_s(self, now: float) -> float:
        return max(1.0, self.cooldown_s - (now - self.opened_at))


class CircuitBreakers:
    def __init__(
        self, config: CircuitBreakerConfig, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config
        self.clock = clock
        self._breakers: dict[str, CircuitBreaker] = {}

    def _breaker(self, deployment: str) -> CircuitBreaker:
        breaker = self._breakers.get(deployment)
        if breaker is None:
            breaker = CircuitBreaker(self.config.failure_threshold, self.config.cooldown_s)
            self._breakers[deployment] = breaker
        return breaker

    def check(self, deployment: str) -> None:
        """Raise 503 `circuit_open` when calls to `deployment` are being shed."""
        if not self.config.enabled:
            return
        breaker = self._breaker(deployment)
        now = self.clock()
        if not breaker.allow(now):
            raise ServiceUnavailableError(
                f"The {deployment!r} upstream is failing; calls are paused for a while.",
                code="circuit_open",
                retry_after_s=breaker.retry_after_s(now),
            )

    def record(self, deployment: str, error: GatewayError | None) -> None:
        if not self.config.enabled:
            return
        breaker = self._breaker(deployment)
        if error is None:
            breaker.record_success()
        elif error.code in NEUTRAL_CODES or is_our_bug(error):
            breaker.release()
        elif error.status_code in BREAKER_STATUSES or error.code == "deployment_unavailable":
            breaker.record_failure(self.clock())
        else:  # the upstream answered (e.g. 400, 429): it is alive
            breaker.record_success()

    def release(self, deployment: str) -> None:
        """A call let through was cancelled: it says nothing about the upstream."""
        if self.config.enabled:
            self._breaker(deployment).release()

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return {
            name: {"state": breaker.state, "consecutive_failures": breaker.failures}
            for name, breaker in sorted(self._breakers.items())
        }
