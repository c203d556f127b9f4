"""A local model deployment's own metrics: the size of each generation batch."""

from serve_app.contracts.metrics import PREFIX, MetricDef, MetricSet, tags

BATCH_SIZE_BOUNDARIES = (1, 2, 4, 8, 16, 32, 64)

ENGINE_METRICS: tuple[MetricDef, ...] = (
    MetricDef(
        "batch_size",
        "histogram",
        PREFIX + "batch_size",
        "Requests per generation batch.",
        ("model",),
        BATCH_SIZE_BOUNDARIES,
    ),
)


class EngineMetrics(MetricSet):
    """Created once per model replica."""

    def __init__(self, enabled: bool = True) -> None:
        super().__init__(ENGINE_METRICS, enabled)

    def record_batch(self, model: str, size: int) -> None:
        self.observe("batch_size", size, tags(model=model))
