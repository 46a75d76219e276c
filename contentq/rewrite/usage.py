"""Usage of the paid APIs: tokens (cached ones apart) and cost per LLM call, and each image an image API made;
summed per post, day and route. Prices come from rewrite/prices.py."""

from __future__ import annotations

from typing import Any

from contentq.clock import iso
from contentq.rewrite.prices import image_price, model_price
from contentq.settings import Settings
from contentq.store import Store
from contentq.store.usage import insert_usage, usage_by_day
from contentq.store.usage import last_answered_at as last_answered_at
from contentq.store.usage import post_usage as post_usage


def estimate_cost(settings: Settings, tokens_in: int, tokens_out: int, *, model: str | None = None,
                  tokens_cached: int = 0) -> float:  # fmt: skip
    """Dollars for one call of `model` (default: CONTENTQ_OPENAI_MODEL) at the price table or the settings."""
    return model_price(settings, model or settings.openai_model).cost(tokens_in, tokens_out, tokens_cached)


def record_usage(
    store: Store,
    settings: Settings,
    *,
    post_id: int | None,
    route: str | None,
    job_id: str | None,
    model: str,
    tokens_in: int,
    tokens_out: int,
    tokens_cached: int = 0,
    error: str | None = None,
    batch: bool = False,
) -> float:
    """One request to the LLM: what it cost (the part of the prompt its cache served at the cached price), or
    (with `error`, no tokens) why it failed. A `batch` request (a line of the Batch API) costs
    CONTENTQ_OPENAI_BATCH_PRICE_SHARE of a direct one."""
    price = model_price(settings, model)
    share = settings.openai_batch_price_share if batch else 1.0
    cost = price.cost(tokens_in, tokens_out, tokens_cached) * share
    insert_usage(
        store,
        {
            "at": iso(), "post_id": post_id, "route": route, "job_id": job_id, "model": model, "kind": "llm",
            "tokens_in": tokens_in, "tokens_cached": tokens_cached, "tokens_out": tokens_out, "cost": cost,
            "saved": price.cache_saving(tokens_cached) * share, "error": error[:500] if error else None,
            "batch": int(batch),
        },
    )  # fmt: skip
    return cost


def record_image_usage(
    store: Store,
    settings: Settings,
    *,
    post_id: int | None,
    route: str | None,
    job_id: str | None,
    model: str,
    size: str | None,
    quality: str | None,
    images: int = 1,
) -> float:
    """Images an image API made: their price by model, size and quality (the image price table)."""
    cost = image_price(settings, model, size, quality) * images
    detail = " ".join(part for part in (size, quality) if part) or None
    insert_usage(
        store,
        {"at": iso(), "post_id": post_id, "route": route, "job_id": job_id, "model": model, "kind": "image",
         "images": images, "cost": cost, "detail": detail},
    )  # fmt: skip
    return cost


def usage_summary(store: Store, *, since: str | None = None, route: str | None = None) -> list[dict[str, Any]]:
    """One row per (day, route), days in UTC, oldest first (store/usage.usage_by_day), with `cache_share`: the
    share of the input tokens the prompt cache served."""
    rows = usage_by_day(store, since=since, route=route)
    for row in rows:
        row["cache_share"] = cache_share(row)
    return rows


def cache_share(row: dict[str, Any]) -> float | None:
    tokens_in = row.get("tokens_in") or 0
    return round((row.get("tokens_cached") or 0) / tokens_in, 4) if tokens_in else None


def usage_totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    totals: dict[str, Any] = {
        key: sum(r.get(key) or 0 for r in rows)
        for key in ("calls", "failed", "batch", "tokens_in", "tokens_cached", "tokens_out", "images")
    }
    for key in ("cost", "saved", "image_cost"):
        totals[key] = round(sum(r.get(key) or 0 for r in rows), 6)
    totals["cache_share"] = cache_share(totals)
    return totals
