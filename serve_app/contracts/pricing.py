"""Cost arithmetic: USD from token counts and a per-million-token price."""

from serve_app.contracts.config import PriceConfig

TOKENS_PER_PRICE_UNIT = 1_000_000


def cost_usd(price: PriceConfig, input_tokens: int, output_tokens: int) -> float:
    """Cost of one call, rounded to 1e-9 USD (prices are per million tokens)."""
    raw = (
        input_tokens * price.input_per_million_usd + output_tokens * price.output_per_million_usd
    ) / TOKENS_PER_PRICE_UNIT
    return round(raw, 9)
