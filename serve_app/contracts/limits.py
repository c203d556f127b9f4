"""What crosses a handle to a rate limiter: the counters asked for, and the answer."""

from dataclasses import dataclass

WINDOW_S = 60.0


@dataclass(frozen=True, slots=True)
class LimitSpec:
    """One counter: `key` allows `rpm` requests and `tpm` tokens per window (None = no cap)."""

    key: str
    rpm: int | None = None
    tpm: int | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    retry_after_s: float
    remaining_requests: int | None
    remaining_tokens: int | None
    reset_s: float
