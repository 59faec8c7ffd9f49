"""Import any harness's per-sample results with a column mapping.

`ponder import results.csv --map problem_id=item_id --map correct=is_right` reads a CSV or JSONL
whose columns have other names. Columns already named like a field are used without a mapping.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import get_args

import numpy as np
import pandas as pd

from ponder.errors import InputError
from ponder.store.batch import ImportBatch
from ponder.store.schema import OUTCOME_STORE_COLUMNS, PROBLEM_STORE_COLUMNS
from ponder.tables import Table
from ponder.types import BudgetKind, Run

FIELDS: dict[str, str] = {
    "problem_id": "id of the problem (required)",
    "model": "model name (required unless --model is given)",
    "correct": "true/false or a 0..1 score (else graded from the answer and gold)",
    "dataset": "benchmark name (default: --dataset, else the file name)",
    "mode": "think / no-think / ... (default: default)",
    "budget": "token budget (integer; empty for none)",
    "sample_idx": "sample index (default: order of appearance per configuration)",
    "prompt_tokens": "input tokens",
    "reasoning_tokens": "thinking tokens",
    "answer_tokens": "answer tokens",
    "output_tokens": "all generated tokens",
    "latency_s": "seconds",
    "truncated": "the generation hit its cap (true/false)",
    "answered": "an answer was extracted (true/false)",
    "extracted_answer": "the extracted answer",
    "response_text": "the full response",
    "gold": "the reference answer",
    "problem_text": "the problem statement",
    "level": "difficulty level (integer)",
    "subject": "subject",
    "run_id": "run id (as `ponder export` writes it; default: LABEL/model)",
    "n_runs": "runs an aggregated row averages (default 1: a sample)",
    "budget_kind": "hard_cap, forced, effort, none or unspecified, per run "
    "(default: --budget-kind)",
}

_TOKEN_FIELDS = ("prompt_tokens", "reasoning_tokens", "answer_tokens", "output_tokens")


def parse_mapping(pairs: list[str]) -> dict[str, str]:
    """`["problem_id=item_id", ...]` -> {"problem_id": "item_id"}, validating field names."""
    mapping: dict[str, str] = {}
    for pair in pairs:
        field, sep, column = pair.partition("=")
        field, column = field.strip(), column.strip()
        if not sep or not field or not column:
            raise InputError(f"--map {pair!r}: expected FIELD=COLUMN")
        if field not in FIELDS:
            raise InputError(
                f"--map {pair!r}: unknown field {field!r}; known fields: {', '.join(FIELDS)}"
            )
        mapping[field] = column
    return mapping


def load_mapped(
    table: Table,
    mapping: Mapping[str, str],
    *,
    dataset: str | None = None,
    model: str | None = None,
    run: str | None = None,
    budget_kind: str = "unspecified",
    default_run: str | None = None,
) -> ImportBatch:
    """Build a batch from a table whose columns are named by `mapping` (field -> column).

    Runs are labelled `LABEL/model`, LABEL being `run`, else `default_run` (the importer passes
    the file name plus a hash of its content, so two different files that share a name never
    collide), else the file name. A `run_id` column (an export) is used as it is.
    """
    if budget_kind not in get_args(BudgetKind):
        raise InputError(
            f"budget kind {budget_kind!r} is not one of {', '.join(get_args(BudgetKind))}"
        )
    columns = dict(mapping)
    for field in FIELDS:
        if field not in columns and field in table.frame.columns:
            columns[field] = field
    table.require(columns.values(), what="mapped column(s) not in the file:")
    n = len(table)
    if n == 0:
        raise InputError("no data rows", path=table.path)

    def col(field: str) -> str:
        return columns[field]

    if "problem_id" not in columns:
        raise InputError(
            "no problem_id column (and the columns match no preset): map one with "
            f"--map problem_id=COLUMN; the file has: {', '.join(table.columns)}",
            path=table.path,
            line=table.header_line,
        )
    if "model" not in columns and model is None:
        raise InputError(
            "no model column: map one with --map model=COLUMN or give --model",
            path=table.path,
            line=table.header_line,
        )
    # Columns stay pandas Series (Arrow-backed strings, numpy numbers): converting them to
    # Python objects row by row was most of an import's time.
    index = pd.RangeIndex(n)

    def series(values: pd.Series) -> pd.Series:
        return values.reset_index(drop=True)

    def constant(value: object) -> pd.Series:
        return pd.Series([value] * n, index=index, dtype="str" if isinstance(value, str) else None)

    problem_id = series(table.text(col("problem_id")))
    models = series(table.text(col("model"))) if "model" in columns else constant(model)
    datasets = (
        series(table.text(col("dataset")))
        if "dataset" in columns
        else constant(dataset or table.path.stem)
    )
    modes = series(table.text(col("mode"))) if "mode" in columns else constant("default")
    budget = (
        series(table.number(col("budget"), allow_missing=True, integer=True, minimum=0))
        if "budget" in columns
        else pd.Series(np.nan, index=index)
    )
    data: dict[str, pd.Series] = {
        "dataset": datasets,
        "problem_id": problem_id,
        "model": models,
        "mode": modes,
        "budget": budget,
    }
    for field in (*_TOKEN_FIELDS, "latency_s"):
        if field in columns:
            data[field] = series(
                table.number(
                    col(field), allow_missing=True, integer=field != "latency_s", minimum=0
                )
            )
    for field in ("truncated", "answered"):
        if field in columns:
            data[field] = series(table.boolean(col(field), allow_missing=True))
    for field in ("extracted_answer", "response_text"):
        if field in columns:
            values = series(table.frame[col(field)].astype(str))
            data[field] = values.where(values != "", None)
    if "answered" not in data and "extracted_answer" in data:
        data["answered"] = data["extracted_answer"].notna().astype(float)
    gold = series(table.frame[col("gold")].astype(str)) if "gold" in columns else None
    if "correct" in columns:
        data["correct"] = series(table.correctness(col("correct")))
    else:
        data["correct"] = pd.Series(_grade(table, columns, gold), index=index)
    label = run or default_run or table.path.stem
    if "run_id" in columns:
        data["run_id"] = series(table.text(col("run_id")))
    else:
        data["run_id"] = (label + "/") + models.astype(str)
    frame = pd.DataFrame(data, index=index)
    if "sample_idx" in columns:
        frame["sample_idx"] = series(
            table.number(col("sample_idx"), integer=True, minimum=0)
        ).astype("int64")
    else:
        key = ["run_id", "dataset", "problem_id", "model", "mode", "budget"]
        frame["sample_idx"] = frame.groupby(key, dropna=False, sort=False).cumcount()
    _check_duplicate_keys(table, frame)
    frame["n_runs"] = (
        series(table.number(col("n_runs"), integer=True, minimum=1)).astype("int64")
        if "n_runs" in columns
        else 1
    )
    outcomes = frame.reindex(columns=list(OUTCOME_STORE_COLUMNS))  # absent fields -> NULL
    runs = _runs(table, frame, columns, budget_kind)
    first = ~pd.DataFrame({"d": datasets, "p": problem_id}).duplicated().to_numpy()

    def firsts(values: pd.Series | None) -> object:
        return None if values is None else values[first].to_numpy(dtype=object)

    level = (
        series(table.number(col("level"), allow_missing=True, integer=True))
        if "level" in columns
        else None
    )
    problems = pd.DataFrame(
        {
            "dataset": firsts(datasets),
            "problem_id": firsts(problem_id),
            "text": firsts(_optional_text(table, columns.get("problem_text"))),
            "gold": firsts(gold.where(gold != "", None)) if gold is not None else None,
            "level": firsts(level),
            "subject": firsts(_optional_text(table, columns.get("subject"))),
            "metadata_json": "{}",
        }
    )
    problems = problems[list(PROBLEM_STORE_COLUMNS)].astype(object)
    notes = []
    ignored = [c for c in table.columns if c not in set(columns.values())]
    if ignored:
        notes.append(
            f"column(s) ignored (not mapped to a field): {', '.join(ignored)}; map them with "
            "--map FIELD=COLUMN if they hold one (`ponder import --help` lists the fields)"
        )
    return ImportBatch(
        runs=runs, outcomes=outcomes, problems=problems.where(pd.notna(problems)), notes=notes
    )


def _runs(
    table: Table, frame: pd.DataFrame, columns: Mapping[str, str], default_kind: str
) -> list[Run]:
    """One Run per run id: its model and budget kind must be the same on all its rows."""
    kinds = (
        table.text(columns["budget_kind"]).reset_index(drop=True)
        if "budget_kind" in columns
        else pd.Series(default_kind, index=frame.index, dtype="str")
    )
    allowed = set(get_args(BudgetKind))
    bad = (~kinds.isin(allowed)).to_numpy()
    if bad.any():
        row = int(np.argmax(bad))
        raise table.fail(
            row,
            columns.get("budget_kind", "budget_kind"),
            f"{kinds.iloc[row]!r} is not one of {', '.join(sorted(allowed))}",
        )
    # The distinct (run, model, kind) triples, each at the row where it first appears: a run
    # with a second triple disagrees with itself there.
    triples = pd.DataFrame(
        {"run_id": frame["run_id"], "model": frame["model"], "kind": kinds}, index=frame.index
    ).drop_duplicates()
    clash = triples["run_id"].duplicated(keep="first").to_numpy()
    if clash.any():
        row = int(triples.index[clash].min())
        run_id = frame["run_id"].iloc[row]
        seen = triples[triples["run_id"] == run_id].iloc[0]
        raise table.fail(
            row,
            columns.get("run_id", "model"),
            f"run {run_id!r} has model/budget kind {(seen['model'], seen['kind'])}, this row "
            f"{(frame['model'].iloc[row], kinds.iloc[row])}",
        )
    return [
        Run(
            run_id=str(run_id),
            model=str(model),
            source=f"import:{table.path.name}",
            budget_kind=kind,
        )
        for run_id, model, kind in sorted(
            zip(triples["run_id"], triples["model"], triples["kind"], strict=True)
        )
    ]


def _optional_text(table: Table, column: str | None) -> pd.Series | None:
    if column is None:
        return None
    values = table.frame[column].astype(str).reset_index(drop=True)
    return values.where(values != "", None)


def _grade(table: Table, columns: Mapping[str, str], gold: pd.Series | None) -> np.ndarray:
    """Grade rows that carry an answer (or a response) and a gold answer but no correctness."""
    from ponder.grading import answers_match, extract_answer

    if gold is None or not ({"extracted_answer", "response_text"} & set(columns)):
        raise InputError(
            "no correctness: map correct=COLUMN, or map gold= and extracted_answer= "
            "(or response_text=) so ponder can grade",
            path=table.path,
        )
    if "extracted_answer" in columns:
        answers = table.frame[columns["extracted_answer"]].astype(str).tolist()
    else:
        answers = [
            extract_answer(r) or "" for r in table.frame[columns["response_text"]].astype(str)
        ]
    return np.array(
        [
            float(answers_match(a or None, g)) if g else np.nan
            for a, g in zip(answers, gold, strict=True)
        ]
    )


def _check_duplicate_keys(table: Table, frame: pd.DataFrame) -> None:
    key = ["run_id", "dataset", "problem_id", "model", "mode", "budget", "sample_idx"]
    dup = frame.duplicated(key, keep="first").to_numpy()
    if dup.any():
        row = int(np.argmax(dup))
        raise table.fail(
            row,
            "sample_idx",
            "duplicate key (problem, model, mode, budget, sample_idx) seen on an earlier row",
        )
    if np.isnan(frame["correct"].to_numpy(dtype=float)).any():
        row = int(np.argmax(np.isnan(frame["correct"].to_numpy(dtype=float))))
        raise table.fail(row, "gold", "no gold answer to grade this row against")
