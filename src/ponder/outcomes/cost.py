"""What a sample costs: tokens, dollars from a price table, FLOPs, or calls.

Costs are computed per recorded sample from its token counts, so every unit is replayable.
A unit that needs token counts fails loudly on data that has none (RouteLLM, MMLU-Pro):
use `calls` there, with per-call prices if the models differ in price.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from ponder.errors import InputError

CostUnit = Literal["tokens", "dollars", "flops", "calls"]
COST_UNITS: tuple[str, ...] = ("tokens", "dollars", "flops", "calls")


@dataclass(frozen=True)
class Price:
    """Prices and size of one model; missing entries are unknown, never assumed."""

    input_per_mtok: float | None = None
    output_per_mtok: float | None = None
    per_call: float | None = None
    params_b: float | None = None


@dataclass(frozen=True)
class CostModel:
    """Turns recorded samples into costs in one unit."""

    unit: CostUnit = "tokens"
    prices: Mapping[str, Price] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.unit not in COST_UNITS:
            raise InputError(f"unknown cost unit {self.unit!r}; use one of {', '.join(COST_UNITS)}")

    def sample_costs(self, frame: pd.DataFrame) -> np.ndarray:
        """Cost of each row of an outcome frame (NaN where the unit's inputs are unknown)."""
        out_tokens = frame["output_tokens"].to_numpy(dtype=float)
        in_tokens = frame["prompt_tokens"].to_numpy(dtype=float)
        if self.unit == "tokens":
            return out_tokens
        models = frame["model"].astype(str).to_numpy()
        unique = pd.unique(models)
        missing = [m for m in unique if m not in self.prices]
        if self.unit == "calls":
            if not self.prices:
                return np.ones(len(models))  # no table: every call costs 1
            if missing:
                raise InputError(
                    "the price table has no entry for model(s) "
                    f"{', '.join(map(str, missing[:5]))}: add them or leave them out"
                )
            per_call = {m: _need(p.per_call, m, "per_call") for m, p in self.prices.items()}
            return np.array([per_call[m] for m in models], dtype=float)
        if missing:
            raise InputError(
                f"cost unit {self.unit!r} needs a price entry for every model; missing: "
                f"{', '.join(map(str, missing[:5]))}"
            )
        if self.unit == "dollars":
            out_price = np.array(
                [_need(self.prices[m].output_per_mtok, m, "output_per_mtok") for m in models]
            )
            in_price = np.array([self.prices[m].input_per_mtok or 0.0 for m in models])
            call = np.array([self.prices[m].per_call or 0.0 for m in models])
            prompt = np.where(np.isnan(in_tokens), 0.0, in_tokens)
            dollars: np.ndarray = (out_tokens * out_price + prompt * in_price) / 1e6 + call
            return dollars
        params = np.array([_need(self.prices[m].params_b, m, "params_b") for m in models])
        prompt = np.where(np.isnan(in_tokens), 0.0, in_tokens)
        flops: np.ndarray = 2.0 * params * 1e9 * (out_tokens + prompt)
        return flops


def _need(value: float | None, model: str, key: str) -> float:
    if value is None:
        raise InputError(f"price table has no {key} for model {model!r}")
    return value


def load_prices(path: Path) -> dict[str, Price]:
    """Read a price table: JSON `{"model": {"output_per_mtok": 0.6, "params_b": 1.5, ...}}`."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise InputError("no such file", path=path) from exc
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON: {exc.msg}", path=path, line=exc.lineno) from exc
    if not isinstance(data, dict):
        raise InputError("expected an object mapping model names to prices", path=path)
    prices: dict[str, Price] = {}
    allowed = {"input_per_mtok", "output_per_mtok", "per_call", "params_b"}
    for model, entry in data.items():
        if not isinstance(entry, dict):
            raise InputError("expected an object of prices", path=path, field=model)
        unknown = set(entry) - allowed
        if unknown:
            raise InputError(
                f"unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}",
                path=path,
                field=model,
            )
        try:
            prices[str(model)] = Price(**{k: float(v) for k, v in entry.items()})
        except (TypeError, ValueError) as exc:
            raise InputError(f"prices must be numbers: {exc}", path=path, field=model) from exc
    return prices
