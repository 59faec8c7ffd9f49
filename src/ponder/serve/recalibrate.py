"""Refit a served policy on its explored traffic and show what changes, with intervals.

Explored requests (``ponder serve --explore``) carry every configuration of their plan run in
full; with the caller's gold answer (feedback) each configuration is graded, so the requests
form an outcome matrix like a sweep's, on live traffic. The policy in service is replayed on
it (what it did, measured on today's traffic); a policy of the same family and parameters is
refitted by k-fold cross-validation (fit on k-1 folds, replayed on the held-out one), so the
figures compared never score a refit on the requests it was fitted on. Differences come with
95% paired bootstrap intervals over requests.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ponder.errors import InputError
from ponder.outcomes.replay import replay
from ponder.policies.base import Policy
from ponder.serve.explore import EXPLORE_FORMAT, dataset_for
from ponder.types import Run

MIN_REQUESTS = 10
THIN = 100  # below this many requests, say the figures are thin


@dataclass(frozen=True)
class Explored:
    """An explored request with its gold answer, and what the server did with it (the
    correctness graded at feedback, the generated tokens billed)."""

    request_id: str
    gold: str
    payload: str
    served_correct: float
    served_tokens: float


def _explored(store_path: Path, policy: str) -> list[Explored]:
    """The explored requests of `policy` that have a gold answer, in exploration order."""
    if not store_path.is_file():
        raise InputError(f"no store at {store_path}")
    from ponder.store import Store

    with Store(store_path, readonly=True) as store:
        rows = store.query(
            "SELECT e.request_id, r.gold, e.payload, r.correct, COALESCE(r.reasoning_tokens, 0) "
            "+ COALESCE(r.answer_tokens, 0) + COALESCE(r.probe_tokens, 0) "
            "FROM explorations e JOIN requests r USING (request_id) "
            "WHERE e.policy = ? AND r.gold IS NOT NULL ORDER BY e.created_at, e.request_id",
            [policy],
        )
    return [
        Explored(str(i), str(g), str(p), np.nan if c is None else float(c), float(t))
        for i, g, p, c, t in rows
    ]


def explored_matrix(
    store_path: Path, policy: str, work_dir: Path
) -> tuple[Any, dict[str, Explored]]:
    """The outcome matrix of a policy's explored requests with gold answers, built in a
    scratch store under `work_dir` (the serving store is only read); and those requests by id."""
    from ponder.analysis import load_matrix
    from ponder.grading import grade
    from ponder.store import Store

    explored = _explored(store_path, policy)
    if len(explored) < MIN_REQUESTS:
        raise InputError(
            f"{len(explored)} explored request(s) of policy {policy!r} have a gold answer in "
            f"{store_path}; recalibrating needs at least {MIN_REQUESTS}: serve with "
            "--explore and post gold answers to /v1/ponder/feedback"
        )
    dataset = dataset_for(policy)
    runs: dict[str, Run] = {}
    problems: list[dict[str, Any]] = []
    items: list[tuple[str, list[dict[str, Any]], dict[str, Any] | None]] = []
    for request in explored:
        request_id, gold = request.request_id, request.gold
        data = json.loads(request.payload)
        if data.get("format") != EXPLORE_FORMAT:
            raise InputError(
                f"request {request_id}: unknown exploration format {data.get('format')}"
            )
        problems.append(
            {"dataset": dataset, "problem_id": request_id, "text": data["text"], "gold": gold,
             "level": None, "subject": None, "metadata_json": "{}"}
        )  # fmt: skip
        for item in data["items"]:
            runs.setdefault(
                item["run_id"],
                Run(
                    item["run_id"], item["model"], "openai", f"serve:{policy}", item["budget_kind"]
                ),
            )
            rows = []
            for row in item["rows"]:
                graded = grade(row["response_text"], gold)
                rows.append({**row, "correct": 1.0 if graded.match else 0.0,
                             "extracted_answer": graded.extracted,
                             "answered": int(graded.extracted is not None)})  # fmt: skip
            chain = item.get("chain")
            if chain is not None and isinstance(chain.get("entropies"), str):
                chain = {**chain, "entropies": bytes.fromhex(chain["entropies"])}
            items.append((item["key"], rows, chain))
    scratch = work_dir / "explored.sqlite"
    with Store(scratch) as store:
        store.begin_sweep(dataset, "{}", list(runs.values()), pd.DataFrame(problems))
        for key, rows, chain in items:
            store.write_sweep_item(dataset, key, rows, chain, attempts=1)
        matrix = load_matrix(store, datasets=[dataset])
    return matrix, {request.request_id: request for request in explored}


@dataclass(frozen=True)
class Figures:
    accuracy: float
    accuracy_ci: tuple[float, float]
    cost: float
    cost_ci: tuple[float, float]


@dataclass(frozen=True)
class Recalibration:
    """The policy in service and its refit, on the same explored requests."""

    policy: str
    requests: int
    current: Figures  # the policy in service, replayed on the explored requests
    served: Figures  # what the server actually answered on those requests (the log)
    replay_minus_served_ci: tuple[float, float]  # accuracy, paired over requests
    refit: Figures  # the refit, cross-validated (held-out folds)
    accuracy_change_ci: tuple[float, float]
    cost_change_ci: tuple[float, float]  # relative to the current cost
    current_plan: str
    refit_plan: str
    refit_policy: Policy
    thin: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "requests": self.requests,
            "current": self.current.__dict__,
            "served": self.served.__dict__,
            "replay_minus_served_ci": list(self.replay_minus_served_ci),
            "refit": self.refit.__dict__,
            "accuracy_change_ci": list(self.accuracy_change_ci),
            "cost_change_ci": list(self.cost_change_ci),
            "current_plan": self.current_plan,
            "refit_plan": self.refit_plan,
            "thin": self.thin,
        }


def _interval(values: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def recalibrate(
    policy: Policy,
    name: str,
    store_path: Path,
    *,
    folds: int = 5,
    n_boot: int = 1000,
    seed: int = 0,
) -> Recalibration:
    """Replay `policy` on its explored requests and refit it there (see the module doc)."""
    with tempfile.TemporaryDirectory(prefix="ponder-recalibrate-") as work:
        try:
            matrix, explored = explored_matrix(store_path, name, Path(work))
        except sqlite3.Error as exc:
            raise InputError(f"{store_path}: cannot read the request log ({exc})") from exc
    problems = matrix.problems
    current = replay(matrix, policy.decide_batch(problems))
    # what the server did with the same requests, in the matrix's problem order
    served = [explored[str(i)] for i in problems["problem_id"]]
    served_correct = np.array([r.served_correct for r in served])
    served_cost = np.array([r.served_tokens for r in served])
    n = len(served)
    folds = min(folds, n)
    order = np.random.default_rng(seed).permutation(n)
    fold_of = np.empty(n, dtype=int)
    fold_of[order] = np.arange(n) % folds
    held_correct, held_cost = np.zeros(n), np.zeros(n)
    cls = type(policy)
    for f in range(folds):
        train, test = np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)
        fitted = cls.from_params(policy.get_params()).fit(matrix.subset(train))
        part = matrix.subset(test)
        result = replay(part, fitted.decide_batch(part.problems))
        held_correct[test], held_cost[test] = result.correct, result.cost
    refit = cls.from_params(policy.get_params()).fit(matrix)
    rng = np.random.default_rng(seed + 1)
    picks = rng.integers(0, n, size=(n_boot, n))
    acc_old, acc_new = current.correct[picks].mean(1), held_correct[picks].mean(1)
    cost_old, cost_new = current.cost[picks].mean(1), held_cost[picks].mean(1)
    acc_served, cost_served = served_correct[picks].mean(1), served_cost[picks].mean(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        change = (cost_new - cost_old) / cost_old
    finite = change[np.isfinite(change)]
    nan = (float("nan"), float("nan"))
    now = Figures(
        float(current.correct.mean()),
        _interval(acc_old),
        float(current.cost.mean()),
        _interval(cost_old),
    )
    new = Figures(
        float(held_correct.mean()),
        _interval(acc_new),
        float(held_cost.mean()),
        _interval(cost_new),
    )
    live = Figures(
        float(served_correct.mean()),
        _interval(acc_served),
        float(served_cost.mean()),
        _interval(cost_served),
    )
    return Recalibration(
        policy=name,
        requests=n,
        current=now,
        served=live,
        replay_minus_served_ci=_interval(acc_old - acc_served),
        refit=new,
        accuracy_change_ci=_interval(acc_new - acc_old),
        cost_change_ci=_interval(finite) if len(finite) else nan,
        current_plan=policy.describe(),
        refit_plan=refit.describe(),
        refit_policy=refit,
        thin=n < THIN,
    )
