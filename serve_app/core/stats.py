"""Per-model request figures kept by each ingress replica for /api/v1/status."""

from collections import deque
from dataclasses import dataclass, field


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of an already sorted list; None when it is empty."""
    if not sorted_values:
        return None
    rank = max(0, min(len(sorted_values) - 1, round(fraction * len(sorted_values)) - 1))
    return sorted_values[rank]


@dataclass(slots=True)
class ModelCounters:
    """Requests, errors and a sliding window of recent latencies for one model."""

    window: int = 2048
    requests: int = 0
    errors: int = 0
    latencies_ms: deque[float] = field(default_factory=deque)

    def record(self, latency_ms: float, ok: bool) -> None:
        self.requests += 1
        if not ok:
            self.errors += 1
            return
        self.latencies_ms.append(latency_ms)
        if len(self.latencies_ms) > self.window:
            self.latencies_ms.popleft()

    def latency_percentiles(self) -> tuple[float | None, float | None]:
        ordered = sorted(self.latencies_ms)
        p50, p95 = percentile(ordered, 0.5), percentile(ordered, 0.95)
        return (
            round(p50, 3) if p50 is not None else None,
            round(p95, 3) if p95 is not None else None,
        )
