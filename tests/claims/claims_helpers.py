"""Synthetic outcome frames for the claims' verdict-flip tests, the recorded store, and the
fake engines and toy sweep the live claims' experiments run on.

``claim_data`` fills every outcome column a check may read with a sensible default, so a test
writes only the columns its claim is about.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from ponder.backends import BackendError, Capabilities, Message, Sampling, Segment
from ponder.backends.fake import true_answer
from ponder.budgets import messages_for, run_ladder
from ponder.claims import ClaimData, ModelFacts, Settings, load_claim_data
from ponder.claims.experiments import ExperimentSummary, run_experiment
from ponder.grading import grade
from ponder.store import Store
from ponder.sweep.rows import entropies_blob
from ponder.types import Run

# Small bootstrap: the tests check verdicts on clear-cut data, not interval precision.
FAST = Settings(ci=0.95, n_boot=200, seed=0, min_problems=20)

_DEFAULTS: dict[str, object] = {
    "run_id": "run",
    "dataset": "synthetic",
    "mode": "think",
    "budget": np.nan,
    "sample_idx": 0,
    "prompt_tokens": 50.0,
    "reasoning_tokens": np.nan,
    "answer_tokens": np.nan,
    "output_tokens": 100.0,
    "latency_s": np.nan,
    "truncated": 0.0,
    "answered": 1.0,
    "extracted_answer": "",
    "n_runs": 1,
    "budget_kind": "hard_cap",
    "level": np.nan,
    "subject": None,
    "chain_id": None,
    "rung": np.nan,
    "natural": np.nan,
    "answer_prob": np.nan,
    "entropy_tail": np.nan,
    "stop_cost_tokens": np.nan,
}


def outcome_frame(rows: pd.DataFrame | list[dict[str, object]]) -> pd.DataFrame:
    """``rows`` (needs model, problem_id, correct) with every other outcome column defaulted."""
    frame = pd.DataFrame(rows).copy()
    for column in ("model", "problem_id", "correct"):
        if column not in frame.columns:
            raise ValueError(f"synthetic outcomes need a {column!r} column")
    for column, default in _DEFAULTS.items():
        if column not in frame.columns:
            frame[column] = default
    frame["correct"] = frame["correct"].astype(float)
    frame["extracted_answer"] = frame["extracted_answer"].astype(str)
    return frame.reset_index(drop=True)


def claim_data(
    rows: pd.DataFrame | list[dict[str, object]],
    *,
    models: Mapping[str, ModelFacts] | None = None,
    settings: Settings = FAST,
    chains: pd.DataFrame | None = None,
) -> ClaimData:
    """A ClaimData of synthetic outcomes; models without given facts get empty ones."""
    frame = outcome_frame(rows)
    dataset = str(frame["dataset"].iloc[0])
    problems = (
        frame.groupby("problem_id", sort=True)["level"]
        .first()
        .reset_index()
        .assign(dataset=dataset, text="", gold="", subject=None, metadata_json="{}")
    )
    facts = {m: (models or {}).get(m, ModelFacts(m)) for m in sorted(frame["model"].unique())}
    return ClaimData(dataset, frame, problems, facts, settings=settings, chains=chains)


def recorded_data(shared_data: Path, store_path: Path, datasets: list[str]) -> dict[str, ClaimData]:
    """The recorded datasets (and ponder's built-in sweep) imported into a store, as ClaimData."""
    from ponder.builtin import builtin_folder
    from ponder.importers import import_paths

    with Store(store_path) as store:
        import_paths(store, [shared_data, builtin_folder()])
        return {d.dataset: d for d in load_claim_data(store, datasets=datasets, settings=FAST)}


# -- the live claims' experiments: fake engines and a recorded toy sweep ----------------------

TOY = "toy"
GREEDY = Sampling(0.0)


def add_problem(i: int) -> str:
    """The i-th toy problem; the fake engines answer the sum of its numbers."""
    return f"Add {10 + i} and {3 * i + 1}."


class WordChain:
    """A fake chain of one word per token (``text`` joins them with spaces): token t is
    ``word(t)`` until token ``length``, which writes ``\\boxed{final()}`` and ends the chain.
    With ``with_entropy`` every segment reports ``entropy(t)`` per token. Subclasses answer
    the probes (``fork``)."""

    with_entropy: ClassVar[bool] = False

    def __init__(self, length: int) -> None:
        self.length = length
        self.words: list[str] = []
        self._finished = False

    @property
    def text(self) -> str:
        return " ".join(self.words)

    @property
    def tokens(self) -> int:
        return len(self.words)

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def prompt_tokens(self) -> int:
        return 10

    def word(self, t: int) -> str:
        return f"w{t}"

    def final(self) -> int:
        raise NotImplementedError

    def entropy(self, t: int) -> float:
        return 0.0

    async def extend(self, max_tokens: int, on_text: object = None) -> Segment:
        new: list[str] = []
        entropies: list[float] = []
        while len(new) < max_tokens and not self._finished:
            t = self.tokens + 1
            if t >= self.length:
                word = f"\\boxed{{{self.final()}}}"
                self._finished = True
            else:
                word = self.word(t)
            self.words.append(word)
            new.append(word)
            entropies.append(self.entropy(t))
        reported = tuple(entropies) if self.with_entropy else None
        return Segment(" ".join(new), len(new), self._finished, entropies=reported)

    async def append(self, text: str) -> int:
        self.words.extend(text.split())
        self._finished = False
        return len(text.split())

    async def aclose(self) -> None:
        return None


class FakeBackend:
    """A backend of fake chains (``make_chain``) for an experiment: ``fail_on`` makes the
    chains of problems whose text holds it fail (where ``fails``), ``unreachable`` fails the
    upstream check, ``prefix=False`` takes away prefix continuation; ``opened`` counts the
    chains opened."""

    name: ClassVar[str] = "fake"
    logprobs: ClassVar[bool] = False
    entropy: ClassVar[bool] = False

    def __init__(
        self,
        *,
        model: str,
        fail_on: str | None = None,
        unreachable: bool = False,
        prefix: bool = True,
    ) -> None:
        self._model = model
        self.fail_on, self.unreachable, self.prefix = fail_on, unreachable, prefix
        self.opened = 0

    @property
    def model(self) -> str:
        return self._model

    def capabilities(self) -> Capabilities:
        return Capabilities(
            name=self.name,
            logprobs=self.logprobs,
            entropy=self.entropy,
            prefix_continuation=self.prefix,
        )

    async def check(self) -> None:
        if self.unreachable:
            raise BackendError("connection refused")

    def problem_text(self, messages: tuple[Message, ...]) -> str:
        return messages[-1].content

    def fails(self, sampling: Sampling) -> bool:
        return True

    def make_chain(self, text: str, sampling: Sampling) -> Any:
        raise NotImplementedError

    async def open_chain(
        self, messages: tuple[Message, ...], sampling: Sampling, *, entropy: bool = False
    ) -> Any:
        text = self.problem_text(messages)
        if self.fail_on is not None and self.fail_on in text and self.fails(sampling):
            raise BackendError("engine crashed", retryable=False)
        self.opened += 1
        return self.make_chain(text, sampling)

    async def aclose(self) -> None:
        return None


def toy_problems(
    n: int,
    text_of: Callable[[int], str] = add_problem,
    gold_of: Callable[[int], str] | None = None,
    *,
    digits: int = 2,
) -> pd.DataFrame:
    """``n`` problems of dataset "toy" (levels 1 to 4 in turn); gold = the fake engines'
    answer (the sum of the text's numbers) unless ``gold_of`` says."""
    texts = [text_of(i) for i in range(n)]
    return pd.DataFrame(
        {
            "dataset": TOY,
            "problem_id": [f"p{i:0{digits}d}" for i in range(n)],
            "text": texts,
            "gold": [gold_of(i) if gold_of else str(true_answer(t)) for i, t in enumerate(texts)],
            "level": [1 + i % 4 for i in range(n)],
            "subject": None,
            "metadata_json": "{}",
        }
    )


def toy_run(run_id: str, model: str) -> Run:
    return Run(run_id, model, backend="fake", source="test", budget_kind="forced")


def begin_toy_sweep(store: Store, problems: pd.DataFrame, runs: list[Run]) -> None:
    store.begin_sweep("src", "{}", runs, problems)


def store_chain(
    store: Store,
    run: Run,
    problem: Mapping[str, Any],
    chain_id: str,
    rows: list[dict[str, object]],
    *,
    text: str,
    finished: bool,
    tokens: int | None = None,
    entropies: bytes | None = None,
    sample_idx: int = 0,
) -> None:
    """Store one recorded chain of ``problem`` and its ladder's rows, as a live sweep does
    (``tokens``: the chain's words unless given)."""
    chain_row = {
        "chain_id": chain_id,
        "run_id": run.run_id,
        "dataset": TOY,
        "problem_id": problem["problem_id"],
        "sample_idx": sample_idx,
        "text": text,
        "tokens": len(text.split()) if tokens is None else tokens,
        "finished": int(finished),
        "entropies": entropies,
    }
    store.write_sweep_item("src", chain_id, rows, chain_row, attempts=1)


def record_ladder(
    store: Store,
    backend: FakeBackend,
    problem: Mapping[str, Any],
    run: Run,
    *,
    mode: str,
    rungs: Sequence[int],
    chain_id: str,
    sample_idx: int = 0,
    sampling: Sampling = GREEDY,
) -> None:
    """Run one probe ladder of ``backend`` on ``problem`` (think prompt) and store it: a row
    per rung, graded against the problem's gold, and the chain with its entropies."""
    chain = asyncio.run(backend.open_chain(messages_for(problem["text"], "think"), sampling))
    result = asyncio.run(run_ladder(chain, list(rungs)))
    rows: list[dict[str, object]] = []
    for index, rung in enumerate(result.rungs):
        graded = grade(rung.answer_text, problem["gold"])
        rows.append(
            {
                "run_id": run.run_id,
                "dataset": TOY,
                "problem_id": problem["problem_id"],
                "model": run.model,
                "mode": mode,
                "budget": rung.budget,
                "sample_idx": sample_idx,
                "reasoning_tokens": rung.thinking_tokens,
                "answer_tokens": rung.answer_tokens,
                "output_tokens": rung.output_tokens,
                "truncated": 0,
                "answered": int(graded.extracted is not None),
                "extracted_answer": graded.extracted,
                "correct": 1.0 if graded.match else 0.0,
                "n_runs": 1,
                "chain_id": chain_id,
                "rung": index,
                "natural": int(rung.natural),
                "stop_cost_tokens": rung.stop_cost_tokens,
            }
        )
    store_chain(
        store,
        run,
        problem,
        chain_id,
        rows,
        text=result.chain_text,
        tokens=result.chain_tokens,
        finished=result.finished,
        entropies=entropies_blob(result.entropies),
        sample_idx=sample_idx,
    )


def load_toy(store: Store) -> ClaimData:
    return load_claim_data(store, datasets=[TOY], settings=FAST)[0]


def run_live(
    store: Store, data: ClaimData, experiment: Any, backend: Any, limit: int
) -> ExperimentSummary:
    """Run ``experiment`` on ``backend`` as `ponder experiment` does."""
    return asyncio.run(run_experiment(experiment, backend, store, data, limit=limit))


def builtin_claim_data(folder: Path, dataset: str = "arith") -> ClaimData:
    """Ponder's built-in sweep (real recorded chains) imported into a store in ``folder``."""
    from ponder.builtin import builtin_folder
    from ponder.importers import import_paths

    with Store(folder / "s.sqlite") as store:
        import_paths(store, [builtin_folder()])
        return load_claim_data(store, datasets=[dataset], settings=FAST)[0]
