"""How often our grader agrees with the correctness recorded in the shared datasets.

The recorded labels come from other people's graders, so agreement measures both our grader
and theirs; the disagreement examples say which one is wrong. Run
`python -m ponder.grading.agreement` to print the table quoted in docs/grading.md.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ponder.errors import InputError
from ponder.grading.equivalence import answers_match
from ponder.grading.extract import extract_answer
from ponder.paths import shared_data_dir
from ponder.problems.sets import load_gsm8k
from ponder.tables import read_jsonl

SWEEP_DIR = "reasoning_budget_sweep"
SWEEP_FILES = {
    "AIME": "reasoning_budget_sweep_aime.csv",
    "MATH-500": "reasoning_budget_sweep_math500.csv",
}
GSM8K_RESPONSES = "routellm_gsm8k/gsm8k_responses.csv"
GSM8K_PROBLEMS = "problem_sets/gsm8k_test.jsonl"
MATH500_PROBLEMS = "problem_sets/math500_test.jsonl"
GSM8K_MODELS = ("mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview")
_MAX_EXAMPLES = 8


@dataclass(frozen=True, slots=True)
class Disagreement:
    """One row where our verdict differs from the recorded one."""

    answer: str | None
    gold: str
    recorded: bool


@dataclass(frozen=True, slots=True)
class Agreement:
    """Agreement on one subset; fp = we say correct where the record says wrong, fn = reverse."""

    dataset: str
    subset: str
    n: int
    agreement: float
    fp: int
    fn: int
    note: str = ""
    examples: tuple[Disagreement, ...] = ()


def _tally(
    dataset: str,
    subset: str,
    rows: Iterable[tuple[str | None, str, bool, bool]],
    note: str = "",
) -> Agreement:
    """Count (answer, gold, recorded, ours) rows into an Agreement."""
    n = fp = fn = 0
    examples: list[Disagreement] = []
    for answer, gold, recorded, ours in rows:
        n += 1
        if ours == recorded:
            continue
        fp += ours
        fn += recorded
        if len(examples) < _MAX_EXAMPLES:
            examples.append(Disagreement(answer, gold, recorded))
    rate = (n - fp - fn) / n if n else float("nan")
    return Agreement(dataset, subset, n, rate, fp, fn, note, tuple(examples))


def _require(path: Path) -> Path:
    if not path.is_file():
        raise InputError("recorded data file not found (see shared/data/SOURCES.md)", path=path)
    return path


def _read_csv(path: Path, columns: Iterable[str]) -> Iterator[dict[str, str]]:
    """Rows of a CSV file that must have `columns` (an InputError names the missing one)."""
    with _require(path).open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        for column in columns:
            if column not in (reader.fieldnames or ()):
                raise InputError("missing column", path=path, field=column)
        yield from reader


def _as_bool(value: str, path: Path, field: str) -> bool:
    if value not in ("True", "False"):
        raise InputError(f"expected True or False, got {value!r}", path=path, field=field)
    return value == "True"


def reasoning_budget_sweep(data_dir: Path | None = None) -> list[Agreement]:
    """Agreement of `answers_match(answer, gold)` with `correct`, for AIME and MATH-500.

    Only rows with an extracted answer count: a row without one is wrong under any grader.
    Rows recorded correct store the gold string itself as `answer` (`answer_from_gold`), so
    they test only that gold matches itself; the recorded-wrong rows are the real test, and the
    note says how many there are.
    """
    root = (data_dir or shared_data_dir()) / SWEEP_DIR
    out = []
    for subset, name in SWEEP_FILES.items():
        path = root / name
        rows = []
        for row in _read_csv(path, ("has_answer", "answer", "gold", "correct")):
            answer = row["answer"].strip()
            if not _as_bool(row["has_answer"], path, "has_answer") or not answer:
                continue
            recorded = _as_bool(row["correct"], path, "correct")
            rows.append((answer, row["gold"], recorded, answers_match(answer, row["gold"])))
        wrong = sum(not recorded for _, _, recorded, _ in rows)
        note = f"{wrong} recorded wrong"
        out.append(_tally("reasoning_budget_sweep", subset, rows, note))
    return out


def math500_solutions(data_dir: Path | None = None) -> Agreement:
    """Whether the last `\\boxed{}` of each MATH-500 reference solution matches its answer.

    A check of extraction on real nested LaTeX: every row should match.
    """
    path = (data_dir or shared_data_dir()) / MATH500_PROBLEMS
    rows = []
    for record in _read_jsonl(path):
        extracted = extract_answer(str(record["solution"]))
        gold = str(record["answer"])
        rows.append((extracted, gold, True, answers_match(extracted, gold)))
    return _tally("math500_solutions", "solution vs answer", rows)


def _read_jsonl(path: Path) -> list[dict[Hashable, Any]]:
    """Records of a JSONL file, with the importers' line-numbered errors."""
    return read_jsonl(_require(path)).frame.to_dict("records")


def _gsm8k_gold(path: Path) -> dict[str, str]:
    """Question text (stripped) -> its final answer (the problem set loader's `####` rule)."""
    problems = load_gsm8k(_require(path))
    return dict(zip(problems["text"].str.strip(), problems["gold"], strict=True))


def routellm_gsm8k(data_dir: Path | None = None) -> list[Agreement]:
    """Agreement of our extraction + numeric comparison with RouteLLM's per-model labels.

    Gold answers are joined on the prompt text; the note says how many prompts joined.
    """
    root = data_dir or shared_data_dir()
    gold = _gsm8k_gold(root / GSM8K_PROBLEMS)
    path = root / GSM8K_RESPONSES
    columns = ["prompt", *GSM8K_MODELS, *(f"{m}_response" for m in GSM8K_MODELS)]
    records = list(_read_csv(path, columns))
    joined = [(r, gold[r["prompt"].strip()]) for r in records if r["prompt"].strip() in gold]
    note = f"{len(joined)}/{len(records)} prompts joined to gold"
    out = []
    for model in GSM8K_MODELS:
        rows = []
        for record, gold_answer in joined:
            extracted = extract_answer(record[f"{model}_response"], "number")
            recorded = _as_bool(record[model], path, model)
            ours = answers_match(extracted, gold_answer, kind="number")
            rows.append((extracted, gold_answer, recorded, ours))
        out.append(_tally("routellm_gsm8k", model, rows, note))
    return out


def measure_all(data_dir: Path | None = None) -> list[Agreement]:
    """Every agreement measurement, in the order of the docs table."""
    return [
        *reasoning_budget_sweep(data_dir),
        *routellm_gsm8k(data_dir),
        math500_solutions(data_dir),
    ]


def format_table(results: Iterable[Agreement]) -> str:
    """A Markdown table of the results (examples left out)."""
    lines = [
        "| dataset | subset | n | agreement | fp | fn | note |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.dataset} | {r.subset} | {r.n} | {r.agreement:.4f} | {r.fp} | {r.fn} | {r.note} |"
        )
    return "\n".join(lines)


def format_examples(results: Iterable[Agreement]) -> str:
    """The recorded disagreements, one line each, for reading them by eye."""
    lines = []
    for r in results:
        for ex in r.examples:
            verdict = "recorded correct" if ex.recorded else "recorded wrong"
            lines.append(f"{r.dataset}/{r.subset}: {verdict}: {ex.answer!r} vs gold {ex.gold!r}")
    return "\n".join(lines)


def main() -> None:
    """Print the agreement table and the disagreement examples."""
    try:
        results = measure_all()
    except InputError as exc:
        sys.exit(f"error: {exc}")
    print(format_table(results))
    print()
    print(format_examples(results))


if __name__ == "__main__":
    main()
