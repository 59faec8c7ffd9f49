"""What a claim check reads: one dataset's outcomes, its problems, and facts about its models.

The facts a few claims need (parameter count for FLOPs, whether a model is a reasoning model)
are not in every store, so they come from, in order: the user's facts file
(``--model-facts``), what the importer recorded (``settings_json``: ``reasoning``), ponder's
model registry (parameter counts of the local models), and the model's name ("1.5b", "7B").
A fact that none of these gives stays ``None`` and the claims that need it say so.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ponder.errors import InputError
from ponder.store.frame import EXPERIMENT_RUN_PREFIX

if TYPE_CHECKING:
    from ponder.evaluate.metrics import Summary
    from ponder.evaluate.protocol import Evaluation
    from ponder.store import Store

# "1.5b", "7B", "0.6b", "70b", "135m": a parameter count in a model's name. Mixture-of-experts
# names ("8x7B") are left alone: their active and total counts differ.
_PARAMS = re.compile(r"(?<![x\d.])(\d+(?:\.\d+)?)\s*([bBmM])(?![a-zA-Z])")


# Budget kinds that form a ladder of one model: recorded hard caps and forced thinking budgets.
LADDER_KINDS: tuple[str, ...] = ("hard_cap", "forced")


@dataclass(frozen=True)
class ModelFacts:
    """What the claims need to know about a model beyond its outcomes.

    ``params`` is the parameter count (FLOPs per generated token = 2 x params);
    ``reasoning`` is True for a model trained to think before answering (R1-style), False for
    one that is not, None when unknown; ``source`` says where the facts came from.
    """

    name: str
    params: float | None = None
    reasoning: bool | None = None
    source: str = ""


@dataclass(frozen=True)
class Settings:
    """How every check measures: interval level, bootstrap size and seed, the least data.

    ``min_problems`` is the fewest problems a comparison may rest on before a check refuses a
    verdict (the reason names the count it had).
    """

    ci: float = 0.95
    n_boot: int = 1000
    seed: int = 0
    min_problems: int = 20


@dataclass(frozen=True)
class ClaimData:
    """One dataset as a check sees it.

    ``outcomes`` has one row per recorded sample (the store's outcome frame with the live-sweep
    signal columns; aggregated rows have ``n_runs`` > 1); ``problems`` one row per problem;
    ``models`` the facts of every model in ``outcomes``; ``chains`` the live sweep's chains
    with their per-token entropies when the store has them (else None); ``evaluation`` the
    policy families' cross-validation of this dataset when the caller already ran it
    (``ponder.analysis.evaluate_policies(keep=...)``), so claim 3 need not run it again;
    ``experiments`` the rows the live claims' experiments generated on this dataset (run ids
    ``claims/...``), kept apart from ``outcomes`` so no other check mistakes them for
    configurations.
    """

    dataset: str
    outcomes: pd.DataFrame
    problems: pd.DataFrame
    models: Mapping[str, ModelFacts]
    settings: Settings = field(default_factory=Settings)
    chains: pd.DataFrame | None = None
    evaluation: tuple[Evaluation, Summary] | None = None
    experiments: pd.DataFrame | None = None

    @property
    def samples(self) -> pd.DataFrame:
        """Rows that are single samples (not aggregates over several runs)."""
        return self.outcomes[self.outcomes["n_runs"] == 1]

    @property
    def budgeted(self) -> pd.DataFrame:
        """Single samples at a token budget (a hard cap or a forced rung) with a known grade:
        the rows every budget curve of a check is built from."""
        rows = self.samples
        keep = (
            rows["budget_kind"].astype(str).isin(LADDER_KINDS)
            & rows["budget"].notna()
            & rows["correct"].notna()
        )
        return rows.loc[keep].reset_index(drop=True)

    @property
    def n_problems(self) -> int:
        return int(self.outcomes["problem_id"].nunique())

    def budgets_of(self, model: str, mode: str | None = None) -> list[float]:
        """The distinct recorded budgets of a model (and mode), ascending, NaN dropped."""
        rows = self.outcomes[self.outcomes["model"] == model]
        if mode is not None:
            rows = rows[rows["mode"] == mode]
        values = rows["budget"].dropna().unique()
        return sorted(float(v) for v in values)


def params_from_name(name: str) -> float | None:
    """A parameter count written in a model's name ("qwen3-1.7b" -> 1.7e9), else None."""
    matches = _PARAMS.findall(name)
    if len(matches) != 1:
        return None  # none, or ambiguous ("7b-1.5b-draft")
    number, unit = matches[0]
    scale = 1e9 if unit.lower() == "b" else 1e6
    return float(number) * scale


def load_facts_file(path: Path) -> dict[str, ModelFacts]:
    """Read a JSON facts file: ``{"model": {"params": 1.5e9, "reasoning": true}, ...}``.

    Errors name the file and the model entry that is wrong.
    """
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("model facts file not found", path=path) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"model facts file is not valid JSON: {exc}", path=path) from None
    if not isinstance(raw, dict):
        raise InputError(
            'expected an object {"model": {"params": ..., "reasoning": ...}}', path=path
        )
    out: dict[str, ModelFacts] = {}
    for model, entry in raw.items():
        if not isinstance(entry, dict):
            raise InputError(
                f"{model!r}: expected an object with params and/or reasoning", path=path
            )
        unknown = set(entry) - {"params", "reasoning"}
        if unknown:
            raise InputError(
                f"{model!r}: unknown field(s) {sorted(unknown)}; expected params, reasoning",
                path=path,
            )
        params = entry.get("params")
        if params is not None and (
            isinstance(params, bool)
            or not isinstance(params, int | float)
            or not math.isfinite(params)
            or params <= 0
        ):
            raise InputError(
                f"{model!r}.params: expected a positive number, got {params!r}", path=path
            )
        reasoning = entry.get("reasoning")
        if reasoning is not None and not isinstance(reasoning, bool):
            raise InputError(
                f"{model!r}.reasoning: expected true or false, got {reasoning!r}", path=path
            )
        out[str(model)] = ModelFacts(
            str(model),
            float(params) if params is not None else None,
            reasoning,
            source=str(path.name),
        )
    return out


def model_facts(
    models: Sequence[str], runs: pd.DataFrame, overrides: Mapping[str, ModelFacts] | None = None
) -> dict[str, ModelFacts]:
    """Facts for each model, from the overrides, the runs' settings, the registry, the name."""
    from ponder.models.registry import MODELS

    recorded: dict[str, dict[str, Any]] = {}
    for model, settings in zip(runs["model"], runs["settings_json"], strict=True):
        try:
            parsed = json.loads(settings or "{}")
        except json.JSONDecodeError:
            continue
        if isinstance(parsed, dict):
            entry = recorded.setdefault(str(model), {})
            if isinstance(parsed.get("reasoning"), bool):
                entry["reasoning"] = parsed["reasoning"]
            hub = parsed.get("model_hf_id")
            if isinstance(hub, str):
                entry["hub"] = hub
    out: dict[str, ModelFacts] = {}
    for model in models:
        given = (overrides or {}).get(model)
        entry = recorded.get(model, {})
        sources = []
        params = given.params if given and given.params is not None else None
        if params is not None:
            sources.append("facts file")
        elif model in MODELS:
            params = float(MODELS[model].params)
            sources.append("registry")
        else:
            params = params_from_name(model)
            if params is None and "hub" in entry:
                params = params_from_name(entry["hub"].split("/")[-1])
            if params is not None:
                sources.append("name")
        reasoning = given.reasoning if given and given.reasoning is not None else None
        if reasoning is not None:
            sources.append("facts file")
        elif "reasoning" in entry:
            reasoning = bool(entry["reasoning"])
            sources.append("importer")
        elif model in MODELS:
            reasoning = MODELS[model].reasoning
            sources.append("registry")
        out[model] = ModelFacts(model, params, reasoning, source=", ".join(dict.fromkeys(sources)))
    return out


def load_claim_data(
    store: Store,
    *,
    datasets: Sequence[str] | None = None,
    settings: Settings | None = None,
    facts: Mapping[str, ModelFacts] | None = None,
    evaluations: Mapping[str, tuple[Evaluation, Summary]] | None = None,
) -> list[ClaimData]:
    """One :class:`ClaimData` per dataset in the store (or in ``datasets``), in name order.

    ``evaluations`` are policy evaluations already run, by dataset (see ClaimData).
    """
    frame = store.outcomes_frame(datasets=datasets, signals=True, experiments=True)
    if frame.empty:
        what = f"no outcomes for datasets={list(datasets)}" if datasets else "the store is empty"
        raise InputError(f"{what}: import or sweep something first (`ponder ls` lists it)")
    if datasets:
        missing = sorted(set(datasets) - set(frame["dataset"].unique()))
        if missing:
            raise InputError(f"no outcomes for dataset(s) {missing}: see `ponder ls`")
    problems = store.problems_frame()
    runs = store.runs_frame()
    chains = _chains(store, datasets)
    known = model_facts(sorted(frame["model"].unique()), runs, facts)
    out = []
    generated = frame["run_id"].str.startswith(EXPERIMENT_RUN_PREFIX)
    for name, rows in frame[~generated].groupby("dataset", sort=True):
        rows = rows.reset_index(drop=True)
        own_experiments = frame[generated & (frame["dataset"] == name)].reset_index(drop=True)
        own_experiments = _with_extras(store, own_experiments)
        models = {m: known[m] for m in sorted(rows["model"].unique())}
        own = problems[problems["dataset"] == name].reset_index(drop=True)
        own_chains = None
        if chains is not None:
            ids = set(rows["chain_id"].dropna().unique())
            picked = chains[chains["chain_id"].isin(ids)]
            own_chains = picked.reset_index(drop=True) if len(picked) else None
        out.append(
            ClaimData(
                str(name),
                rows,
                own,
                models,
                settings=settings or Settings(),
                chains=own_chains,
                evaluation=(evaluations or {}).get(str(name)),
                experiments=own_experiments if len(own_experiments) else None,
            )
        )
    return out


# The outcome key (the store's unique index; a NULL budget is keyed as -1).
_KEY = ["run_id", "dataset", "problem_id", "model", "mode", "budget", "sample_idx"]


def _with_extras(store: Store, experiments: pd.DataFrame) -> pd.DataFrame:
    """The experiment rows with their ``extra_json`` (what an experiment recorded beyond the
    outcome columns, e.g. whether a resampled token changed): the outcome frame leaves it out
    and experiment rows are few."""
    if experiments.empty:
        return experiments.assign(extra_json=pd.Series(dtype=object))
    datasets = sorted(experiments["dataset"].astype(str).unique())
    marks = ", ".join("?" for _ in datasets)
    rows = store.query(
        "SELECT run_id, dataset, problem_id, model, mode, IFNULL(budget, -1), sample_idx, "
        f"extra_json FROM outcomes WHERE run_id LIKE ? AND dataset IN ({marks})",
        [EXPERIMENT_RUN_PREFIX + "%", *datasets],
    )
    extras = pd.DataFrame.from_records(rows, columns=[*_KEY, "extra_json"])
    extras["budget"] = extras["budget"].astype(float)
    extras["sample_idx"] = extras["sample_idx"].astype(experiments["sample_idx"].dtype)
    keyed = experiments.assign(budget=experiments["budget"].fillna(-1.0))
    merged = keyed.merge(extras, on=_KEY, how="left", validate="one_to_one")
    return merged.assign(budget=experiments["budget"].to_numpy())


def _chains(store: Store, datasets: Sequence[str] | None) -> pd.DataFrame | None:
    """The live sweep's chains (with per-token entropies as float32 arrays), if any."""
    chains = store.chains_frame(datasets=datasets)
    return chains if len(chains) else None


def difficulty(data: ClaimData) -> tuple[pd.Series, str]:
    """A difficulty band per problem (1 = easiest), and how it was set.

    The problem's own level when every problem has one (generated problems, MATH); otherwise
    quartiles of the problem's solve rate over all models ("empirical": it is measured on the
    same outcomes, so say so when a claim uses it).
    """
    levels = data.outcomes.groupby("problem_id")["level"].first()
    if len(levels) and levels.notna().all():
        return levels.astype(float), "level"
    rate = data.samples.groupby("problem_id")["correct"].mean()
    if rate.nunique() < 2:
        return pd.Series(np.ones(len(rate)), index=rate.index), "single band"
    ranks = rate.rank(method="first", ascending=False)
    bands = np.ceil(4 * ranks.to_numpy(dtype=float) / len(ranks)).clip(1, 4)
    return pd.Series(bands, index=rate.index), "empirical solve-rate quartile"
