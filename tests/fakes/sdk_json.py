"""Provider answers as the wire modules get them: the JSON the SDK read (`sdk_calls` asks
for no SDK models), checked against the SDK's own model so a test cannot feed a shape the
provider would never send."""

from typing import Any


def real_shape(model: Any, data: dict[str, Any]) -> dict[str, Any]:
    """`data`, once `model` (an SDK pydantic model) has validated it."""
    model.model_validate(data)
    return data
