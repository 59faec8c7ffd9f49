"""The outcome matrix of one dataset straight from its Parquet segments.

Sequential policies (votes, stop rules, cascades, ladders) replay samples in order, so they
need the dense ``OutcomeMatrix`` arrays, not sums (docs/design/0009-columnar-analysis.md). Here
they are filled from an ordered DuckDB scan of the dataset's segments (only the columns the
matrix needs, ``n_runs = 1``), Arrow batch by batch, without a pandas frame of the rows: memory
is the matrix plus one batch, not the store's frame.

The result equals ``OutcomeMatrix.from_frame`` of the same rows (``Store.outcomes_frame(
datasets=[name], signals=True)``): problems and configurations in the same (sorted) order,
sample slots by ``sample_idx`` with ties in row order (segments keep the store's row order
within a dataset), answer and chain codes numbered by first appearance in row order, costs by
the same ``CostModel``. Answers are normalized once per distinct raw answer. Level, subject and
text come from the problems frame (``Store.problems_frame()``), as the outcome frame gets them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ponder.columnar.stats import checked_segments, configure, connect, run_query
from ponder.curves.passk import normalize_distinct
from ponder.decision import Config
from ponder.errors import InputError
from ponder.grading import normalize_answer
from ponder.outcomes.cost import CostModel
from ponder.outcomes.matrix import (
    NO_ANSWER,
    NO_CHAIN,
    PROBLEM_COLUMNS,
    UNKNOWN_ANSWER,
    CellStats,
    OutcomeMatrix,
    Signals,
)
from ponder.store.frame import decode, to_float

if TYPE_CHECKING:
    import duckdb

# Rows per Arrow batch of the ordered scan: what is alive beside the matrix at a time.
BATCH_ROWS = 1 << 18
# Sample slots of the block of problems whose cell sums are taken at a time when the matrix
# keeps fewer slots than were recorded (about 100 MiB of arrays).
BLOCK_SLOTS = 1 << 22
# A row's place in the store's order: file index (segments sort in write order) then row.
_ORDER = "(fidx::BIGINT << 40) + file_row_number"
_LONE = np.int32(-3)  # answered without recorded text: numbered after the scan
_STAT_FIELDS = tuple(f.name for f in fields(CellStats))


@dataclass(frozen=True)
class _Codes:
    """The matrix's axes and code tables, decided before the rows are scanned."""

    problems: list[str]
    configs: tuple[Config, ...]
    slots: int
    answers: pa.Table  # raw -> code (only raws whose normalized form is not empty)
    n_answers: int
    chains: pa.Table | None  # chain_id -> code; None: no chain, no signals


def matrix_from_parquet(
    root: str | Path,
    dataset: str,
    *,
    problems: pd.DataFrame | None = None,
    models: Sequence[str] | None = None,
    exclude_models: Sequence[str] = (),
    cost_model: CostModel | None = None,
    normalize: Callable[[str], str] | None = normalize_answer,
    con: duckdb.DuckDBPyConnection | None = None,
    memory_limit: str | None = None,
    threads: int | None = None,
    max_slots: int | None = None,
) -> OutcomeMatrix:
    """The ``OutcomeMatrix`` of one dataset's samples in the segments under ``root``.

    ``models`` keeps only those models, ``exclude_models`` drops some (as ``load_matrix``);
    ``problems`` (``Store.problems_frame()``) gives level, subject and text (None: unknown).
    ``normalize`` groups answers for votes (``load_matrix``'s default); ``con``,
    ``memory_limit`` and ``threads`` as for ``stats_from_parquet``. ``max_slots`` keeps the
    first samples of each cell, as ``OutcomeMatrix.head`` does. No sample rows is an
    ``InputError``, a damaged segment a ``StoreError`` naming it.
    """
    if max_slots is not None and max_slots < 1:
        raise ValueError(f"max_slots must be at least 1, got {max_slots}")
    cost_model = cost_model or CostModel()
    files = [str(p) for p in checked_segments(root, [dataset])]
    if not files:
        raise InputError(f"no outcome segments for dataset {dataset!r} under {root}")
    db = connect(memory_limit=memory_limit, threads=threads) if con is None else con
    if con is not None:
        configure(db, memory_limit=memory_limit, threads=threads)
    query = _Query(db, files, dataset, models, exclude_models, root)
    try:
        codes = _codes(query, normalize)
        keep = codes.slots
        if max_slots is not None and codes.chains is None:  # ladders stay whole (as `head`)
            keep = min(max_slots, codes.slots)
        arrays, stats = _scan(query, codes, cost_model, keep)
    finally:
        query.close()
        if con is None:
            db.close()
    return OutcomeMatrix(
        problems=_problem_info(dataset, codes.problems, problems),
        configs=codes.configs,
        correct=arrays["correct"],
        cost=arrays["cost"],
        tokens=arrays["tokens"],
        answer=arrays["answer"],
        unit=cost_model.unit,
        signals=_signals(arrays) if codes.chains is not None else None,
        cell_stats=stats,
    )


class _Query:
    """SQL over the dataset's sample rows (``src``), with the files and filters bound."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        files: list[str],
        dataset: str,
        models: Sequence[str] | None,
        exclude_models: Sequence[str],
        root: str | Path,
    ) -> None:
        self.con, self.root = con, root
        self.params: dict[str, Any] = {"files": files, "dataset": dataset}
        where = ["dataset = $dataset", "n_runs = 1"]
        if models is not None:
            where.append("list_contains($models, model)")
            self.params["models"] = [str(m) for m in models]
        if exclude_models:
            where.append("NOT list_contains($exclude, model)")
            self.params["exclude"] = [str(m) for m in exclude_models]
        self.names: list[str] = []
        self.register("ponder_matrix_files", pa.table({"path": files, "fidx": range(len(files))}))
        self.source = (
            "WITH src AS (SELECT r.*, f.fidx FROM read_parquet($files, filename = true, "
            "file_row_number = true, hive_partitioning = false, union_by_name = false) r "
            f"JOIN ponder_matrix_files f ON r.filename = f.path WHERE {' AND '.join(where)}) "
        )

    def register(self, name: str, table: pa.Table) -> None:
        self.con.register(name, table)
        self.names.append(name)

    def table(self, sql: str) -> pa.Table:
        """``sql`` (reading ``src``) as an Arrow table."""
        table: pa.Table = run_query(self.con, self.source + sql, self.params, self.root)
        return table

    def batches(self, sql: str) -> pa.RecordBatchReader:
        """``sql`` (reading ``src``) as a stream of Arrow batches."""
        import duckdb

        try:
            relation = self.con.sql(self.source + sql, params=self.params)
            return relation.to_arrow_reader(BATCH_ROWS)
        except duckdb.Error as exc:
            first = str(exc).strip().splitlines()[0]
            raise InputError(f"{self.root}: cannot scan the segments ({first})") from exc

    def close(self) -> None:
        for name in self.names:
            self.con.unregister(name)


def _codes(query: _Query, normalize: Callable[[str], str] | None) -> _Codes:
    """Problems and configurations sorted as ``from_frame`` sorts them, the most samples of
    any (problem, configuration), and the answer and chain codes by first appearance."""
    problems = sorted(
        str(p) for p in query.table("SELECT DISTINCT problem_id FROM src")[0].to_pylist()
    )
    if not problems:
        raise InputError(
            f"no per-sample rows (n_runs = 1) for dataset {query.params['dataset']!r} in this "
            "selection: aggregated rows cannot be replayed, policies need per-sample outcomes"
        )
    found = query.table("SELECT DISTINCT model, mode, coalesce(budget, -1) AS b FROM src")
    keys = sorted(
        zip(
            found["model"].to_pylist(),
            found["mode"].to_pylist(),
            found["b"].to_pylist(),
            strict=True,
        )
    )
    configs = tuple(Config(str(m), str(o), None if b < 0 else int(b)) for m, o, b in keys)
    slots = query.table(
        "SELECT max(n) FROM (SELECT count(*) AS n FROM src "
        "GROUP BY problem_id, model, mode, budget)"
    )[0][0].as_py()
    answers = query.table(
        f"SELECT extracted_answer, min({_ORDER}) AS first FROM src WHERE extracted_answer IS "
        "NOT NULL AND answered IS DISTINCT FROM 0 GROUP BY ALL"
    )
    answer_table, n_answers = _answer_table(answers, normalize)
    chains = query.table(
        f"SELECT chain_id, min({_ORDER}) AS first FROM src WHERE chain_id IS NOT NULL GROUP BY ALL"
    )
    chain_table = None
    if chains.num_rows:
        order = np.argsort(chains["first"].to_numpy(), kind="stable")
        chain_table = pa.table(
            {
                "chain_id": chains["chain_id"].take(order),
                "k": pa.array(np.arange(len(order), dtype=np.int64)),
            }
        )
    return _Codes(problems, configs, int(slots), answer_table, n_answers, chain_table)


def _answer_table(
    answers: pa.Table, normalize: Callable[[str], str] | None
) -> tuple[pa.Table, int]:
    """Raw answer -> code of its normalized form, forms numbered by their first appearance
    (``pd.factorize`` of the rows' normalized answers); empty forms get no code."""
    raw = pd.Series(answers["extracted_answer"].to_pylist(), dtype=object)
    first = answers["first"].to_numpy()
    if normalize is None:
        forms: list[str | None] = [r if r else None for r in raw.tolist()]
    else:
        codes, distinct = normalize_distinct(raw, normalize)
        forms = [distinct[c] for c in codes.tolist()]
    pairs = [(r, f, at) for r, f, at in zip(raw.tolist(), forms, first.tolist(), strict=True) if f]
    seen: dict[str, int] = {}
    for _, form, at in pairs:
        seen[form] = min(at, seen.get(form, at))
    number = {form: i for i, form in enumerate(sorted(seen, key=seen.__getitem__))}
    table = pa.table(
        {
            "raw": pa.array([r for r, _, _ in pairs], pa.string()),
            "a": pa.array([number[f] for _, f, _ in pairs], pa.int32()),
        }
    )
    return table, len(number)


_SCAN = (
    "SELECT p.p, c.c, src.sample_idx, src.correct, src.output_tokens, src.prompt_tokens, "
    "src.answered, src.extracted_answer IS NOT NULL AS extracted, a.a, {signals}{order} AS o "
    "FROM src JOIN ponder_matrix_problems p USING (problem_id) "
    "JOIN ponder_matrix_configs c ON src.model = c.model AND src.mode = c.mode "
    "AND coalesce(src.budget, -1) = c.b "
    "LEFT JOIN ponder_matrix_answers a ON src.extracted_answer = a.raw "
    "AND src.answered IS DISTINCT FROM 0 {chains}"
    "ORDER BY p.p, c.c, src.sample_idx, o"
)
_SIGNALS = "src.answer_tokens, src.answer_prob, src.entropy_tail, src.natural, k.k, "


def _scan(
    query: _Query, codes: _Codes, cost_model: CostModel, keep: int
) -> tuple[dict[str, np.ndarray], CellStats | None]:
    """Fill the arrays from the ordered rows, one Arrow batch at a time.

    With ``keep`` slots fewer than recorded, only the first ``keep`` samples of each cell are
    stored, and the cell sums over all of them are taken a block of problems at a time, by
    ``CellStats.of`` on the block's whole arrays: equal to the sums over the whole matrix,
    since each cell is reduced on its own. Otherwise the sums are left to ``OutcomeMatrix``.
    """
    n_c, n_s = len(codes.configs), codes.slots
    shape = (len(codes.problems), n_c, keep)
    query.register(
        "ponder_matrix_problems",
        pa.table({"problem_id": codes.problems, "p": range(len(codes.problems))}),
    )
    query.register(
        "ponder_matrix_configs",
        pa.table(
            {
                "model": [c.model for c in codes.configs],
                "mode": [c.mode for c in codes.configs],
                "b": pa.array(
                    [-1 if c.budget is None else c.budget for c in codes.configs], pa.int64()
                ),
                "c": range(n_c),
            }
        ),
    )
    query.register("ponder_matrix_answers", codes.answers)
    signals = codes.chains is not None
    if signals:
        query.register("ponder_matrix_chains", codes.chains)
    sql = _SCAN.format(
        signals=_SIGNALS if signals else "",
        order=_ORDER,
        chains="LEFT JOIN ponder_matrix_chains k USING (chain_id) " if signals else "",
    )
    arrays = _empty(shape, signals)
    blocks = _Blocks(len(codes.problems), n_c, n_s) if keep < n_s else None
    # Each configuration's model, as codes into the distinct model names (for prices).
    model_of, models = pd.factorize(pd.Index([c.model for c in codes.configs]))
    lone_at: list[np.ndarray] = []
    lone_order: list[np.ndarray] = []
    previous = (-1, 0)  # last (group, slot) of the previous batch
    for batch in query.batches(sql):
        p = _ints(batch, "p")
        c = _ints(batch, "c")
        group = p * n_c + c
        slot, previous = _slots(group, previous)
        rows = pd.DataFrame(
            {
                "output_tokens": _floats(batch, "output_tokens"),
                "prompt_tokens": _floats(batch, "prompt_tokens"),
                "model": pd.Categorical.from_codes(model_of[c], categories=models),
            }
        )
        correct, cost, answer = (
            _floats(batch, "correct"),
            cost_model.sample_costs(rows),
            _answers(batch),
        )
        if blocks is not None:
            blocks.add(p, c, slot, correct, cost, answer)
        kept = slot < keep  # every row unless the matrix is cut
        at = np.where(kept, group * keep + slot, -1)
        lone = answer == _LONE
        lone_at.append(at[lone])  # -1: not kept, but numbered all the same
        lone_order.append(_ints(batch, "o")[lone])
        into = at[kept]
        arrays["correct"].flat[into] = correct[kept]
        arrays["tokens"].flat[into] = rows["output_tokens"].to_numpy()[kept]
        arrays["cost"].flat[into] = cost[kept]
        arrays["answer"].flat[into] = answer[kept]
        if signals:  # a matrix with chains is never cut: every row is kept
            _fill_signals(arrays, at, batch, rows, cost_model)
    _number_lone(arrays["answer"], codes.n_answers, lone_at, lone_order)
    return arrays, None if blocks is None else blocks.finish()


class _Blocks:
    """Cell sums over every recorded sample, a block of problems at a time, for a matrix that
    keeps fewer slots than were recorded."""

    def __init__(self, n_p: int, n_c: int, n_s: int) -> None:
        self.n_p, self.n_c, self.n_s = n_p, n_c, n_s
        self.size = max(1, BLOCK_SLOTS // (n_c * n_s))
        self.block = -1
        shape = (self.size, n_c, n_s)
        self.correct, self.cost = np.empty(shape), np.empty(shape)
        self.answer = np.empty(shape, dtype=np.int32)
        self.parts: list[CellStats] = []

    def add(
        self,
        p: np.ndarray,
        c: np.ndarray,
        slot: np.ndarray,
        correct: np.ndarray,
        cost: np.ndarray,
        answer: np.ndarray,
    ) -> None:
        """A batch's rows (in scan order: problems ascending), into their blocks."""
        block = p // self.size
        cuts = np.flatnonzero(np.diff(block)) + 1
        for run in np.split(np.arange(len(p)), cuts):
            if len(run) == 0:
                continue
            b = int(block[run[0]])
            while self.block < b:
                self._flush()
            at = ((p[run] - b * self.size) * self.n_c + c[run]) * self.n_s + slot[run]
            self.correct.flat[at] = correct[run]
            self.cost.flat[at] = cost[run]
            self.answer.flat[at] = answer[run]

    def _flush(self) -> None:
        """Close the current block (its sums) and open the next one, empty."""
        if self.block >= 0:
            rows = min(self.size, self.n_p - self.block * self.size)
            answer = self.answer[:rows]
            self.parts.append(
                CellStats.of(
                    self.correct[:rows], self.cost[:rows], np.where(answer == _LONE, 0, answer)
                )
            )
        self.block += 1
        self.correct.fill(np.nan)
        self.cost.fill(np.nan)
        self.answer.fill(NO_ANSWER)

    def finish(self) -> CellStats:
        while self.block * self.size < self.n_p:
            self._flush()
        return CellStats(
            *(np.concatenate([getattr(part, f) for part in self.parts]) for f in _STAT_FIELDS)
        )


def _empty(shape: tuple[int, int, int], signals: bool) -> dict[str, np.ndarray]:
    """The arrays ``from_frame`` allocates: NaN where nothing was recorded, no answer, no chain."""
    names = ["correct", "cost", "tokens"]
    if signals:
        names += ["prob", "token_prob", "entropy", "natural", "probe_cost"]
    arrays = {name: np.full(shape, np.nan) for name in names}
    arrays["answer"] = np.full(shape, NO_ANSWER, dtype=np.int32)
    if signals:
        arrays["chain"] = np.full(shape, NO_CHAIN, dtype=np.int64)
    return arrays


def _slots(group: np.ndarray, previous: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """Each row's slot, its rank within its (problem, configuration) in scan order; a group
    that started in the previous batch continues its count."""
    n = len(group)
    if n == 0:
        return np.zeros(0, dtype=np.int64), previous
    starts = np.ones(n, dtype=bool)
    starts[1:] = group[1:] != group[:-1]
    start_at = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
    slot = np.arange(n) - start_at
    if group[0] == previous[0]:
        slot[start_at == 0] += previous[1] + 1
    return slot, (int(group[-1]), int(slot[-1]))


def _answers(batch: pa.RecordBatch) -> np.ndarray:
    """``from_frame``'s answer code of each row: its form's code, else NO_ANSWER when known to
    have none, a lone code (numbered later) when it answered without text, else UNKNOWN."""
    code = batch.column("a")
    blank = np.asarray(code.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    out = np.array(pc.fill_null(code, 0).to_numpy(zero_copy_only=False), dtype=np.int32)
    answered = _floats(batch, "answered")
    extracted = batch.column("extracted").to_numpy(zero_copy_only=False).astype(bool)
    known_none = (answered == 0) | extracted
    out[blank & known_none] = NO_ANSWER
    out[blank & ~known_none & (answered > 0)] = _LONE
    out[blank & ~known_none & ~(answered > 0)] = UNKNOWN_ANSWER
    return out


def _number_lone(
    answer: np.ndarray, n_answers: int, at: list[np.ndarray], order: list[np.ndarray]
) -> None:
    """Lone answers get codes after every form's, in row order (as ``from_frame`` numbers them);
    a position of -1 is a lone answer not kept, which still takes its code."""
    where, when = np.concatenate(at), np.concatenate(order)
    if len(where):
        ordered = where[np.argsort(when, kind="stable")]
        code = n_answers + np.arange(len(where), dtype=np.int32)
        kept = ordered >= 0
        answer.flat[ordered[kept]] = code[kept]


def _fill_signals(
    arrays: dict[str, np.ndarray],
    at: np.ndarray,
    batch: pa.RecordBatch,
    rows: pd.DataFrame,
    cost_model: CostModel,
) -> None:
    """The live-sweep signals as ``from_frame`` derives them from the same columns."""
    answer_prob, answer_tokens = _floats(batch, "answer_prob"), _floats(batch, "answer_tokens")
    with np.errstate(invalid="ignore", divide="ignore"):
        token_prob = np.where(answer_tokens > 0, answer_prob ** (1.0 / answer_tokens), np.nan)
    natural = _floats(batch, "natural")
    probe_rows = rows.assign(output_tokens=answer_tokens, prompt_tokens=0.0)
    probe = np.where(natural == 1, 0.0, cost_model.sample_costs(probe_rows))
    for name, values in (
        ("prob", answer_prob),
        ("token_prob", token_prob),
        ("entropy", _floats(batch, "entropy_tail")),
        ("natural", natural),
        ("probe_cost", probe),
    ):
        arrays[name].flat[at] = values
    chain = pc.fill_null(batch.column("k"), NO_CHAIN).to_numpy(zero_copy_only=False)
    arrays["chain"].flat[at] = chain


def _signals(arrays: dict[str, np.ndarray]) -> Signals:
    return Signals(
        prob=arrays["prob"],
        entropy=arrays["entropy"],
        natural=arrays["natural"],
        probe_cost=arrays["probe_cost"],
        chain=arrays["chain"],
        token_prob=arrays["token_prob"],
    )


def _ints(batch: pa.RecordBatch, name: str) -> np.ndarray:
    values: np.ndarray = np.asarray(
        batch.column(name).to_numpy(zero_copy_only=False), dtype=np.int64
    )
    return values


def _floats(batch: pa.RecordBatch, name: str) -> np.ndarray:
    """A numeric column as float64 with NaN for NULL, as the outcome frame holds it."""
    column = batch.column(name).cast(pa.float64())
    values: np.ndarray = np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)
    return values


def _problem_info(dataset: str, ids: list[str], problems: pd.DataFrame | None) -> pd.DataFrame:
    """``from_frame``'s problem table: level and subject typed as the outcome frame types
    them when it joins ``problems`` (``ponder.store.frame``), text from ``problems``; all
    unknown without it."""
    info = pd.DataFrame({"dataset": [dataset] * len(ids), "problem_id": ids})
    index = pd.MultiIndex.from_frame(info)
    known = None
    if problems is not None and len(problems):
        known = problems.astype({"dataset": str, "problem_id": str}).set_index(
            ["dataset", "problem_id"]
        )

    def stored(column: str) -> np.ndarray:
        """The problems' values as the store gives them: Python objects, None when unknown."""
        if known is None or column not in known.columns:
            return np.full(len(ids), None, dtype=object)
        values = known[column].reindex(index).astype(object)
        out: np.ndarray = values.where(values.notna(), None).to_numpy(dtype=object)
        return out

    info["level"] = to_float(stored("level"))
    info["subject"] = pd.Series(decode(stored("subject"), np.arange(len(ids)))).to_numpy()
    info["text"] = None
    if known is not None and "text" in known.columns:
        info["text"] = known["text"].reindex(index).to_numpy()
    return info[list(PROBLEM_COLUMNS)]
