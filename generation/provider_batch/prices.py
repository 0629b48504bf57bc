"""Cost of tokens online and in batch mode: ``Settings.prices`` (USD per 1M prompt/completion tokens) times
``Settings.batch_discount`` (OpenAI: 0.5) for batch jobs."""

from __future__ import annotations

from typing import Any


def cost(settings: Any, model: str, prompt_tokens: int, completion_tokens: int, *, batch: bool) -> float:
    price = (settings.prices or {}).get(model)
    if price is None:
        return 0.0
    usd = (prompt_tokens * price[0] + completion_tokens * price[1]) / 1_000_000
    return float(usd * (settings.batch_discount if batch else 1.0))


def side_by_side(settings: Any, model: str, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    online = cost(settings, model, prompt_tokens, completion_tokens, batch=False)
    batch = cost(settings, model, prompt_tokens, completion_tokens, batch=True)
    return {"online_usd": online, "batch_usd": batch, "saved_usd": online - batch,
            "priced": model in (settings.prices or {})}
