"""What a call costs: the price tables of the chat models and of the image models, in US dollars.

The figures are OpenAI's list prices (standard tier; docs/costs.md names the source and the date). A model is
found by its exact name, else by the longest name it starts with followed by "-" (a dated snapshot such as
`gpt-4o-mini-2024-07-18` is priced as `gpt-4o-mini`). The settings override the table: CONTENTQ_OPENAI_PRICE_IN_
PER_1M, _CACHED_PER_1M and _OUT_PER_1M for every chat model (a local model: set them to 0), CONTENTQ_IMAGE_PRICE
for every image. Budgets (rewrite/budget.py) and `contentq usage` use the costs computed here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from contentq.settings import Settings


@dataclass(frozen=True)
class ModelPrice:
    """Dollars per 1M tokens: input, input served from the prompt cache, output."""

    input: float
    cached: float
    output: float

    def cost(self, tokens_in: int, tokens_out: int, tokens_cached: int = 0) -> float:
        cached = max(0, min(tokens_cached, tokens_in))
        return ((tokens_in - cached) * self.input + cached * self.cached + tokens_out * self.output) / 1e6

    def cache_saving(self, tokens_cached: int) -> float:
        """What the cached tokens cost less than they would have at the full input price."""
        return max(0, tokens_cached) * (self.input - self.cached) / 1e6


MODEL_PRICES: dict[str, ModelPrice] = {
    "gpt-4o-mini": ModelPrice(0.15, 0.075, 0.60),
    "gpt-4o": ModelPrice(2.50, 1.25, 10.00),
    "gpt-4.1": ModelPrice(2.00, 0.50, 8.00),
    "gpt-4.1-mini": ModelPrice(0.40, 0.10, 1.60),
    "gpt-4.1-nano": ModelPrice(0.10, 0.025, 0.40),
    "gpt-5": ModelPrice(1.25, 0.125, 10.00),
    "gpt-5-mini": ModelPrice(0.25, 0.025, 2.00),
    "gpt-5-nano": ModelPrice(0.05, 0.005, 0.40),
    "gpt-5.4": ModelPrice(2.50, 0.25, 15.00),
    "gpt-5.4-mini": ModelPrice(0.75, 0.075, 4.50),
    "gpt-5.4-nano": ModelPrice(0.20, 0.02, 1.25),
    "o3": ModelPrice(2.00, 0.50, 8.00),
    "o4-mini": ModelPrice(1.10, 0.275, 4.40),
}
"""Chat models, dollars per 1M tokens (input, cached input, output)."""

DEFAULT_MODEL_PRICE = MODEL_PRICES["gpt-4o-mini"]
"""A model the table does not know (set CONTENTQ_OPENAI_PRICE_* for it): priced as the default model."""

IMAGE_PRICES: dict[str, dict[tuple[str, str], float]] = {
    "gpt-image-1": {
        ("low", "1024x1024"): 0.011, ("low", "1024x1536"): 0.016, ("low", "1536x1024"): 0.016,
        ("medium", "1024x1024"): 0.042, ("medium", "1024x1536"): 0.063, ("medium", "1536x1024"): 0.063,
        ("high", "1024x1024"): 0.167, ("high", "1024x1536"): 0.25, ("high", "1536x1024"): 0.25,
    },
    "dall-e-3": {
        ("standard", "1024x1024"): 0.04, ("standard", "1024x1792"): 0.08, ("standard", "1792x1024"): 0.08,
        ("hd", "1024x1024"): 0.08, ("hd", "1024x1792"): 0.12, ("hd", "1792x1024"): 0.12,
    },
    "dall-e-2": {("standard", "256x256"): 0.016, ("standard", "512x512"): 0.018, ("standard", "1024x1024"): 0.02},
}  # fmt: skip
"""Image models, dollars per image by (quality, size) as requested."""

UNKNOWN_IMAGE_PRICE = 0.25
"""An image whose model the table does not know (set CONTENTQ_IMAGE_PRICE): the dearest image of the table, so a
budget errs on the safe side."""


T = TypeVar("T")


def _lookup(table: dict[str, T], model: str) -> T | None:
    if model in table:
        return table[model]
    prefixes = [name for name in table if model.startswith(name + "-")]
    return table[max(prefixes, key=len)] if prefixes else None


def model_price(settings: Settings, model: str) -> ModelPrice:
    """The price of a chat model: the settings where set, else the table (else the default model's)."""
    listed = _lookup(MODEL_PRICES, model) or DEFAULT_MODEL_PRICE
    given_in = settings.openai_price_in_per_1m
    price_in = listed.input if given_in is None else given_in
    if settings.openai_price_cached_per_1m is not None:
        cached = settings.openai_price_cached_per_1m
    else:  # a price set for input alone keeps the table's share for cached input
        cached = listed.cached if given_in is None else given_in * listed.cached / listed.input
    price_out = listed.output if settings.openai_price_out_per_1m is None else settings.openai_price_out_per_1m
    return ModelPrice(price_in, cached, price_out)


def image_quality(model: str, quality: str | None) -> str:
    """The quality an image is billed at: GPT image models' `auto` at `high` (the dearest it may pick), DALL·E's
    names as sent (`standard`, `hd`)."""
    name = (quality or "").lower()
    if model.startswith("dall-e"):
        return "hd" if name in ("hd", "high") else "standard"
    return "high" if name in ("", "auto") else name


def image_price(settings: Settings, model: str, size: str | None, quality: str | None) -> float:
    """Dollars for one image: CONTENTQ_IMAGE_PRICE where set, else the table; a size or quality the table does not
    list costs the model's dearest image, a model it does not know UNKNOWN_IMAGE_PRICE."""
    if settings.image_price is not None:
        return settings.image_price
    prices = _lookup(IMAGE_PRICES, model)
    if prices is None:
        return UNKNOWN_IMAGE_PRICE
    return prices.get((image_quality(model, quality), size or ""), max(prices.values()))
