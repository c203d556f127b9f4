from datetime import date

import pytest

from serve_app.contracts.config import PriceConfig
from serve_app.contracts.pricing import cost_usd


def test_cost_is_per_million_tokens() -> None:
    price = PriceConfig(input_per_million_usd=0.15, output_per_million_usd=0.6, as_of=date.today())
    assert cost_usd(price, 1_000_000, 0) == pytest.approx(0.15)
    assert cost_usd(price, 12, 7) == pytest.approx((12 * 0.15 + 7 * 0.6) / 1e6)
    assert cost_usd(PriceConfig(), 10**9, 10**9) == 0.0
