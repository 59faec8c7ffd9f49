"""Importers for the recorded public sweeps, one function per source format.

Each turns one file (plus the problem sets it refers to, when found) into an `ImportBatch`.
Presets are detected from a file's columns, so `ponder import FILE` usually needs no flags.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ponder.errors import InputError
from ponder.problems.sets import (
    aime_problem_id,
    find_problem_file,
    load_gsm8k,
    load_math500,
    load_matharena_competitions,
    load_mmlu_pro_questions,
)
from ponder.store.batch import ImportBatch
from ponder.store.schema import OUTCOME_STORE_COLUMNS, PROBLEM_STORE_COLUMNS
from ponder.tables import Table, read_table
from ponder.types import NO_THINK, THINK, Run

# The one non-reasoning model of the Reasoning Budget Sweep (per its documentation).
RBS_NON_REASONING = frozenset({"qwen25math-1.5b"})
RBS_COLUMNS = (
    "model",
    "model_hf_id",
    "benchmark",
    "item_id",
    "seed",
    "budget",
    "n_new_tokens",
    "reached_cap",
    "has_answer",
    "answer",
    "gold",
    "correct",
)
MMLU_PRO_COLUMNS = ("model", "question_id", "pred", "answer", "correct")
MATHARENA_COLUMNS = ("problem", "model", "accuracy_pct_over_4_runs")


@dataclass(frozen=True)
class Preset:
    """A known source format: the columns that identify it and the function that imports it."""

    name: str
    description: str
    columns: tuple[str, ...]
    load: Callable[[Table], ImportBatch]

    def matches(self, columns: list[str]) -> bool:
        return set(self.columns) <= set(columns)


def _outcomes(data: dict[str, object], n: int) -> pd.DataFrame:
    """An outcome frame with every store column, missing ones as None."""
    frame = pd.DataFrame({c: data.get(c, [None] * n) for c in OUTCOME_STORE_COLUMNS})
    return frame


def _empty_problems() -> pd.DataFrame:
    return pd.DataFrame(columns=list(PROBLEM_STORE_COLUMNS))


def _problem_frames(*frames: pd.DataFrame | None) -> pd.DataFrame:
    present = [f for f in frames if f is not None and len(f)]
    return pd.concat(present, ignore_index=True) if present else _empty_problems()


# -- Reasoning Budget Sweep ------------------------------------------------------------------


def _aime25_id(index: int) -> str:
    """The sweep numbers AIME 2025 items 0..29 (I then II); map them to `2025-I-1` ids."""
    if index < 15:
        return aime_problem_id("aime_2025_I", index + 1)
    return aime_problem_id("aime_2025_II", index - 14)


def _rbs_problem_ids(table: Table, benchmark: pd.Series) -> pd.Series:
    ids = table.text("item_id").astype(str)
    out: list[str] = []
    for row, (bench, item) in enumerate(zip(benchmark, ids, strict=True)):
        if bench == "aime25" and item.isdigit():
            if int(item) > 29:
                raise table.fail(row, "item_id", "aime25 item ids must be 0..29")
            out.append(_aime25_id(int(item)))
        else:
            out.append(item)
    return pd.Series(out, index=ids.index, dtype=object)


def load_reasoning_budget_sweep(table: Table) -> ImportBatch:
    """Reasoning Budget Sweep (S. Hossain, CC-BY-4.0): hard caps (max_new_tokens) x 3 seeds."""
    table.require(RBS_COLUMNS)
    n = len(table)
    model = table.text("model")
    benchmark = table.text("benchmark")
    budget = table.number("budget", integer=True, minimum=1)
    tokens = table.number("n_new_tokens", integer=True, minimum=0)
    truncated = table.boolean("reached_cap")
    answered = table.boolean("has_answer")
    correct = table.boolean("correct")
    seed = table.number("seed", integer=True, minimum=0)
    answer = table.frame["answer"].astype(str)
    problem_id = _rbs_problem_ids(table, benchmark)
    run_id = "rbs/" + model
    mode = np.where(model.isin(RBS_NON_REASONING), NO_THINK, THINK)
    outcomes = _outcomes(
        {
            "run_id": run_id,
            "dataset": benchmark,
            "problem_id": problem_id,
            "model": model,
            "mode": mode,
            "budget": budget.astype("int64"),
            "sample_idx": seed.astype("int64"),
            "output_tokens": tokens.astype("int64"),
            "truncated": truncated,
            "answered": answered,
            "extracted_answer": answer.where(answer != "", None),
            "correct": correct,
            "n_runs": np.ones(n, dtype=np.int64),
        },
        n,
    )
    hf_ids = dict(zip(model, table.frame["model_hf_id"].astype(str), strict=True))
    runs = [
        Run(
            run_id=f"rbs/{m}",
            model=m,
            source="reasoning_budget_sweep",
            budget_kind="hard_cap",
            settings={
                "model_hf_id": hf_ids[m],
                "temperature": 0.6,
                "top_p": 0.95,
                "reasoning": m not in RBS_NON_REASONING,
                "attribution": "Reasoning Budget Sweep, S. Hossain, CC-BY-4.0",
            },
        )
        for m in sorted(set(model))
    ]
    # Problems: gold from the file; text and level from the problem sets when found.
    own = pd.DataFrame(
        {"dataset": benchmark, "problem_id": problem_id, "gold": table.frame["gold"].astype(str)}
    ).drop_duplicates(["dataset", "problem_id"])
    own = own.assign(text=None, level=None, subject=None, metadata_json="{}")[
        list(PROBLEM_STORE_COLUMNS)
    ]
    extra: list[pd.DataFrame] = []
    notes: list[str] = []
    datasets = set(benchmark)
    if "math500" in datasets:
        found = find_problem_file("problem_sets/math500_test.jsonl", table.path)
        if found:
            extra.append(load_math500(found))
        else:
            notes.append("MATH-500 problem set not found: no text or levels for math500")
    if datasets & {"aime24", "aime25"}:
        found = find_problem_file("problem_sets/matharena_competitions.jsonl", table.path)
        if found:
            competitions = load_matharena_competitions(found)
            extra.append(competitions[competitions["dataset"].isin(datasets)])
        else:
            notes.append("MathArena problem set not found: no text for AIME problems")
    # Known problem-set rows first so their text/level/subject win; own gold fills the rest.
    problems = _problem_frames(*extra, own)
    used = set(zip(benchmark, problem_id, strict=True))
    keep = [k in used for k in zip(problems["dataset"], problems["problem_id"], strict=True)]
    problems = problems[keep]
    return ImportBatch(
        runs=runs, outcomes=outcomes, problems=_merge_problems(problems), notes=notes
    )


def _merge_problems(problems: pd.DataFrame) -> pd.DataFrame:
    """One row per problem, taking each field from the first row that has it."""
    if problems.empty:
        return problems
    problems = problems.replace({"{}": None}).astype(object)
    merged = problems.groupby(["dataset", "problem_id"], sort=False, as_index=False).first()
    merged["metadata_json"] = merged["metadata_json"].fillna("{}")
    return merged[list(PROBLEM_STORE_COLUMNS)].astype(object).where(pd.notna(merged), None)


# -- MMLU-Pro math (TIGER-AI-Lab) -------------------------------------------------------------


def load_mmlu_pro(table: Table) -> ImportBatch:
    """MMLU-Pro math: 29 non-reasoning models, 5-shot CoT, one sample each, 10-way choice."""
    table.require(MMLU_PRO_COLUMNS)
    n = len(table)
    raw_model = table.text("model")
    model = raw_model.str.replace(r"_5shots$", "", regex=True)
    pred = table.frame["pred"].astype(str).str.strip()
    correct = table.correctness("correct")
    extra = None
    if "response_words" in table.frame.columns:
        words = table.number("response_words", allow_missing=True)
        extra = [
            None if not w or np.isnan(w) else json.dumps({"response_words": int(w)}) for w in words
        ]
    outcomes = _outcomes(
        {
            "run_id": "mmlu_pro/" + model,
            "dataset": np.full(n, "mmlu_pro_math"),
            "problem_id": table.text("question_id"),
            "model": model,
            "mode": np.full(n, "cot"),
            "budget": [None] * n,
            "sample_idx": np.zeros(n, dtype=np.int64),
            "answered": (pred != "").astype(float),
            "extracted_answer": pred.where(pred != "", None),
            "correct": correct,
            "n_runs": np.ones(n, dtype=np.int64),
            "extra_json": extra or [None] * n,
        },
        n,
    )
    runs = [
        Run(
            run_id=f"mmlu_pro/{m}",
            model=m,
            source="mmlu_pro_math",
            budget_kind="none",
            settings={"shots": 5, "prompting": "chain-of-thought", "options": 10},
        )
        for m in sorted(set(model))
    ]
    found = find_problem_file("mmlu_pro_math_questions.jsonl", table.path)
    problems = load_mmlu_pro_questions(found) if found else None
    gold = pd.DataFrame(
        {
            "dataset": "mmlu_pro_math",
            "problem_id": outcomes["problem_id"],
            "gold": table.frame["answer"].astype(str),
        }
    ).drop_duplicates(["dataset", "problem_id"])
    gold = gold.assign(text=None, level=None, subject=None, metadata_json="{}")
    notes = [] if found else ["MMLU-Pro questions file not found: no question text"]
    merged = _merge_problems(_problem_frames(problems, gold[list(PROBLEM_STORE_COLUMNS)]))
    merged = merged[merged["problem_id"].isin(set(outcomes["problem_id"]))]
    return ImportBatch(runs=runs, outcomes=outcomes, problems=merged, notes=notes)


# -- RouteLLM GSM8K ---------------------------------------------------------------------------


def _routellm_models(columns: list[str]) -> list[str]:
    return [c for c in columns if f"{c}_response" in columns]


def load_routellm_gsm8k(table: Table) -> ImportBatch:
    """RouteLLM's GSM8K responses of a strong/weak pair (wide: one column pair per model)."""
    from ponder.grading import extract_answer

    table.require(["prompt"])
    models = _routellm_models(table.columns)
    if not models:
        raise InputError(
            "no model columns: expected pairs like 'MODEL' and 'MODEL_response'", path=table.path
        )
    prompts = table.text("prompt")
    problems = None
    found = find_problem_file("problem_sets/gsm8k_test.jsonl", table.path)
    notes: list[str] = []
    if found:
        problems = load_gsm8k(found)
        by_text = dict(zip(problems["text"].str.strip(), problems["problem_id"], strict=True))
        ids = [by_text.get(p.strip()) for p in prompts]
    else:
        ids = [None] * len(prompts)
        notes.append("GSM8K problem set not found: problems keyed by prompt hash, no gold")
    import hashlib

    problem_id = [
        pid or "sha1-" + hashlib.sha1(p.strip().encode()).hexdigest()[:12]
        for pid, p in zip(ids, prompts, strict=True)
    ]
    contaminated = _routellm_contaminated(table.path)
    frames = []
    for m in models:
        correct = table.boolean(m)
        responses = table.frame[f"{m}_response"].astype(str)
        extracted = [extract_answer(r, kind="number") if r.strip() else None for r in responses]
        n = len(table)
        frames.append(
            _outcomes(
                {
                    "run_id": [f"routellm/{m}"] * n,
                    "dataset": ["gsm8k"] * n,
                    "problem_id": problem_id,
                    "model": [m] * n,
                    "mode": ["default"] * n,
                    "budget": [None] * n,
                    "sample_idx": np.zeros(n, dtype=np.int64),
                    "answered": [float(e is not None) for e in extracted],
                    "extracted_answer": extracted,
                    "correct": correct,
                    "n_runs": np.ones(n, dtype=np.int64),
                    "response_text": responses.where(responses != "", None),
                },
                n,
            )
        )
    outcomes = pd.concat(frames, ignore_index=True)
    runs = [
        Run(run_id=f"routellm/{m}", model=m, source="routellm_gsm8k", budget_kind="none")
        for m in models
    ]
    if problems is not None:
        problems = problems[problems["problem_id"].isin(set(problem_id))].copy()
        if contaminated:
            flags = problems["text"].str.strip().isin(contaminated)
            problems.loc[flags, "metadata_json"] = json.dumps({"contaminated": True})
    return ImportBatch(
        runs=runs,
        outcomes=outcomes,
        problems=problems if problems is not None else _empty_problems(),
        notes=notes,
    )


def _routellm_contaminated(path: Path) -> set[str]:
    """Eval prompts that RouteLLM found in training data (dropped in their protocol)."""
    candidate = path.parent / "contaminated_prompts.jsonl"
    if not candidate.is_file():
        return set()
    table = read_table(candidate)
    if "eval_prompt" not in table.frame.columns:
        return set()
    return {p.strip() for p in table.frame["eval_prompt"].astype(str)}


# -- MathArena AIME 2025 I (aggregated) -------------------------------------------------------


def load_matharena(table: Table) -> ImportBatch:
    """MathArena AIME 2025 I leaderboard: per-problem accuracy over 4 runs (aggregated rows).

    One row per (model, problem) with `correct` = the fraction of 4 runs solved and `n_runs`
    = 4, so analyses can tell aggregates from samples. Mean output tokens and cost per model
    (from `per_model_summary.csv` beside it) go into the run settings.
    """
    table.require(MATHARENA_COLUMNS)
    n = len(table)
    model = table.text("model")
    problem = table.number("problem", integer=True, minimum=1, maximum=15)
    accuracy = table.number("accuracy_pct_over_4_runs", minimum=0, maximum=100) / 100.0
    summary = _matharena_summary(table.path.parent / "per_model_summary.csv")
    outcomes = _outcomes(
        {
            "run_id": "matharena/" + model,
            "dataset": np.full(n, "aime25"),
            "problem_id": [aime_problem_id("aime_2025_I", int(p)) for p in problem],
            "model": model,
            "mode": np.full(n, "default"),
            "budget": [None] * n,
            "sample_idx": np.zeros(n, dtype=np.int64),
            "correct": accuracy,
            "n_runs": np.full(n, 4, dtype=np.int64),
        },
        n,
    )
    effort = re.compile(r"\((low|medium|high)\)")
    runs = []
    for m in sorted(set(model)):
        settings: dict[str, object] = {"aggregated": True, "runs_per_problem": 4}
        settings.update(summary.get(m, {}))
        match = effort.search(m)
        if match:
            settings["reasoning_effort"] = match.group(1)
        runs.append(
            Run(
                run_id=f"matharena/{m}",
                model=m,
                source="matharena_aime2025_I",
                budget_kind="effort" if match else "none",
                settings=settings,
            )
        )
    problems = None
    found = find_problem_file("problem_sets/matharena_competitions.jsonl", table.path)
    if found:
        problems = load_matharena_competitions(found)
        problems = problems[problems["problem_id"].isin(set(outcomes["problem_id"]))]
    return ImportBatch(
        runs=runs,
        outcomes=outcomes,
        problems=problems if problems is not None else _empty_problems(),
        notes=["aggregated rows: correct is the share of 4 runs solved; no per-sample tokens"],
    )


def _matharena_summary(path: Path) -> dict[str, dict[str, float]]:
    if not path.is_file():
        return {}
    table = read_table(path)
    if "model" not in table.frame.columns:
        return {}
    out: dict[str, dict[str, float]] = {}
    wanted = {
        "Output Tokens": "mean_output_tokens",
        "Input Tokens": "mean_input_tokens",
        "Cost": "cost_usd",
    }
    for row in table.frame.to_dict("records"):
        values: dict[str, float] = {}
        for column, key in wanted.items():
            try:
                values[key] = float(str(row.get(column, "")).lstrip("$").rstrip("*"))
            except ValueError:
                continue
        out[str(row["model"])] = values
    return out


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "reasoning_budget_sweep",
            "Reasoning Budget Sweep: 12 models x AIME24/25/MATH-500 x hard caps x 3 seeds",
            RBS_COLUMNS,
            load_reasoning_budget_sweep,
        ),
        Preset(
            "mmlu_pro_math",
            "MMLU-Pro math: 29 models, 5-shot CoT, one sample each",
            MMLU_PRO_COLUMNS,
            load_mmlu_pro,
        ),
        Preset(
            "routellm_gsm8k",
            "RouteLLM GSM8K: strong/weak pair with responses",
            ("prompt",),
            load_routellm_gsm8k,
        ),
        Preset(
            "matharena_aime2025_I",
            "MathArena AIME 2025 I: per-problem accuracy over 4 runs (aggregated)",
            MATHARENA_COLUMNS,
            load_matharena,
        ),
    )
}


def detect_preset(table: Table) -> Preset | None:
    """The preset whose identifying columns the file has (RouteLLM needs model/response pairs)."""
    return detect_columns(table.columns)


def detect_columns(columns: list[str]) -> Preset | None:
    """``detect_preset`` from the column names alone."""
    for preset in PRESETS.values():
        if not preset.matches(columns):
            continue
        if preset.name == "routellm_gsm8k" and not _routellm_models(columns):
            continue
        return preset
    return None
