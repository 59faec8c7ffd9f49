"""Claim 4: can think / no-think be decided per request, without labels or RL?

Per model that recorded both modes, the think router (``ponder.policies.router``) is
cross-validated against always thinking: it is fitted on training problems' recorded outcomes
and decides for a held-out request from its text, level and subject alone. The same
per-problem decisions, made in hindsight from the outcomes, are exported as a supervised
dataset (``routing_dataset``) so a model can be fine-tuned to make the call itself.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ponder.claims.adaptive_allocation import (
    ACCURACY_MARGIN,
    FOLDS,
    Comparison,
    accuracy_guard,
    best_per_fold,
    enough_problems,
    held_out,
    iso_accuracy_per_fold,
    token_matrix,
)
from ponder.claims.base import Claim, Finding, found, insufficient
from ponder.claims.data import ClaimData
from ponder.claims.stats import FloatArray
from ponder.decision import Config
from ponder.errors import InputError, PonderError
from ponder.evaluate import OutcomeMatrix
from ponder.evaluate.catalog import REGISTRY, full_configs
from ponder.evaluate.metrics import BASELINE
from ponder.evaluate.protocol import Candidate, Evaluation, cross_validate
from ponder.grading import normalize_answer
from ponder.policies.base import Policy
from ponder.policies.uniform import Uniform
from ponder.types import GREEDY_SUFFIX, NO_THINK, THINK, base_mode

CLAIM_ID = "think-routing"
# Routing must save at least 5% of always-think's tokens to be worth a fitted router.
MIN_EFFECT = 0.05
# A mode "solves" a problem when at least half its samples are right (greedy: the one).
SOLVED = 0.5
# Thinkless control tokens (Fang et al., 2025, "Thinkless: LLM Learns When to Think").
CONTROL_TOKENS = {NO_THINK: "<short>", THINK: "<think>"}


@dataclass(frozen=True)
class Pairing:
    """One model's think and no-think configurations in one sampling variant."""

    model: str
    think_mode: str
    no_think_mode: str
    think: tuple[Config, ...]
    no_think: tuple[Config, ...]

    @property
    def scope(self) -> str:
        return f"{self.model} ({self.think_mode} vs {self.no_think_mode})"


def pairings(configs: tuple[Config, ...] | list[Config]) -> list[Pairing]:
    """Every (model, variant) with both modes: sampled "think"/"no-think" and greedy ones."""
    out = []
    for model in sorted({c.model for c in configs}):
        own = [c for c in configs if c.model == model]
        for suffix in ("", GREEDY_SUFFIX):
            think_mode, no_think_mode = THINK + suffix, NO_THINK + suffix
            think = tuple(c for c in own if c.mode == think_mode)
            no_think = tuple(c for c in own if c.mode == no_think_mode)
            if think and no_think:
                out.append(Pairing(model, think_mode, no_think_mode, think, no_think))
    return out


def _modes_recorded(configs: tuple[Config, ...]) -> str:
    """Which base modes each model recorded, for a refusal."""
    by_model: dict[str, set[str]] = {}
    for c in configs:
        by_model.setdefault(c.model, set()).add(base_mode(c.mode))
    return "; ".join(f"{m}: {'/'.join(sorted(v))}" for m, v in sorted(by_model.items()))


class ThinkRouting(Claim):
    """Does a router fitted without RL save tokens over always thinking, at equal accuracy?"""

    number = 4
    id = CLAIM_ID
    title = "Think / no-think routing per request"
    hypothesis = (
        "A router that decides think or no-think per request from the problem alone, fitted "
        "on other problems' outcomes, spends fewer tokens than always thinking at the same "
        "held-out accuracy."
    )
    needs = (
        "a model with think and no-think samples (with token counts) recorded for every "
        "problem, and enough problems for 5-fold cross-validation"
    )

    def check(self, data: ClaimData) -> list[Finding]:
        matrix = token_matrix(data)
        if isinstance(matrix, str):
            return [insufficient(self.id, data.dataset, matrix, n_problems=data.n_problems)]
        found_pairs = pairings(matrix.configs)
        if not found_pairs:
            return [
                insufficient(
                    self.id,
                    data.dataset,
                    "no model recorded both think and no-think samples for every problem "
                    f"(modes per model: {_modes_recorded(matrix.configs)})",
                    n_problems=matrix.n_problems,
                )
            ]
        return [self._pair(data, matrix, pair) for pair in found_pairs]

    def _pair(self, data: ClaimData, matrix: OutcomeMatrix, pair: Pairing) -> Finding:
        sub = matrix.select_configs([*pair.no_think, *pair.think])
        thin = enough_problems(sub, data.settings)
        if thin:
            return insufficient(
                self.id, data.dataset, thin, scope=pair.scope, n_problems=sub.n_problems
            )
        s = data.settings
        try:
            cands = route_candidates(sub)
            ev = cross_validate(sub, cands, folds=FOLDS, seed=s.seed)
        except PonderError as exc:
            return insufficient(
                self.id,
                data.dataset,
                f"the router cannot be cross-validated: {exc}",
                scope=pair.scope,
                n_problems=sub.n_problems,
            )
        router = ev.family_rows("router")
        if not len(router):
            why = "; ".join(r for _, r in ev.skipped) or "no router point ran"
            return insufficient(
                self.id, data.dataset, why, scope=pair.scope, n_problems=sub.n_problems
            )
        think_rows = _rows_of(ev, sub, pair.think)
        no_think_rows = _rows_of(ev, sub, pair.no_think)
        always_think = best_per_fold(ev, think_rows)
        if (always_think < 0).any():
            return insufficient(
                self.id,
                data.dataset,
                "always-think could not be scored on some training folds",
                scope=pair.scope,
                n_problems=sub.n_problems,
            )
        choice = iso_accuracy_per_fold(ev, router, always_think)
        comparison = Comparison(*held_out(ev, choice), *held_out(ev, always_think))
        saved, change = comparison.effects(
            s,
            f"{data.dataset}/{self.id}/{pair.scope}",
            reference="always-think",
            min_effect=MIN_EFFECT,
        )
        routed = routed_modes(ev, sub, cands, choice, always_think)
        cheapest = _cheapest_per_fold(ev, no_think_rows)
        no_think_correct, no_think_cost = held_out(ev, cheapest)
        solves_no_think = no_think_correct >= SOLVED
        solves_think = comparison.reference_correct >= SOLVED
        label = np.where(solves_no_think, NO_THINK, np.where(solves_think, THINK, ""))
        labelled = label != ""
        agreement = float((routed[labelled] == label[labelled]).mean()) if labelled.any() else 0.0
        share_no_think = float((routed == NO_THINK).mean())
        oracle = np.where(solves_no_think, no_think_cost, comparison.reference_cost)
        oracle_correct = np.where(solves_no_think, no_think_correct, comparison.reference_correct)
        router_folds = int((choice != always_think).sum())
        extras = {
            "saved": saved.value,
            "accuracy_router": float(comparison.policy_correct.mean()),
            "accuracy_always_think": float(comparison.reference_correct.mean()),
            "accuracy_change": change.value,
            "accuracy_change_ci_low": change.low,
            "accuracy_change_ci_high": change.high,
            "tokens_router": float(comparison.policy_cost.mean()),
            "tokens_always_think": float(comparison.reference_cost.mean()),
            "share_no_think": share_no_think,
            "decision_agreement": agreement,
            "hindsight_share_no_think": float(solves_no_think.mean()),
            "folds_router_chosen": float(router_folds),
            "folds": float(len(choice)),
        }
        table = pd.DataFrame(
            [
                _point("always no-think", no_think_correct, no_think_cost, 1.0),
                _point(
                    "router (held out)",
                    comparison.policy_correct,
                    comparison.policy_cost,
                    share_no_think,
                ),
                _point(
                    "always think",
                    comparison.reference_correct,
                    comparison.reference_cost,
                    0.0,
                ),
                _point("hindsight labels", oracle_correct, oracle, float(solves_no_think.mean())),
            ]
        )
        picked = ", ".join(
            dict.fromkeys(ev.labels[c] for c, t in zip(choice, always_think, strict=True) if c != t)
        )
        note = (
            f"router chosen in {router_folds} of {len(choice)} folds"
            + (f" ({picked})" if picked else "")
            + (", always-think kept in the others" if router_folds < len(choice) else "")
            + f"; {share_no_think:.0%} of held-out requests "
            f"routed to no-think ({solves_no_think.mean():.0%} would be with hindsight); "
            f"accuracy {comparison.policy_correct.mean():.3f} vs always-think "
            f"{comparison.reference_correct.mean():.3f}, change {change.value:+.3f} "
            f"[{change.low:+.3f}, {change.high:+.3f}]; decisions agree with the hindsight "
            f"label on {agreement:.0%} of the problems one mode solves"
        )
        finding = found(
            self.id,
            data.dataset,
            pair.scope,
            saved,
            n_problems=sub.n_problems,
            protocol=_protocol(ev, pair, s.ci, s.n_boot),
            table=table,
            extras=extras,
            note=note,
        )
        return accuracy_guard(finding, change, margin=ACCURACY_MARGIN)

    def plot(self, finding: Finding) -> bytes | None:
        """Held-out accuracy against tokens: always no-think, the router, always think, and
        the hindsight labels (what a perfect router would reach)."""
        table = finding.table
        if table is None or table.empty:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        markers = {"router (held out)": "o", "hindsight labels": "*"}
        for policy, tokens, accuracy, share in zip(
            table["policy"],
            table["tokens"].to_numpy(dtype=float),
            table["accuracy"].to_numpy(dtype=float),
            table["share_no_think"].to_numpy(dtype=float),
            strict=True,
        ):
            ax.scatter(
                tokens,
                accuracy,
                marker=markers.get(str(policy), "s"),
                s=70,
                label=f"{policy}: {accuracy:.3f} at {tokens:.0f} tokens, {share:.0%} no-think",
            )
        ax.legend(fontsize=8, loc="lower right")
        ax.set_xlabel("mean output tokens per request (held out)")
        ax.set_ylabel("accuracy (held out)")
        ax.set_title(f"{finding.dataset}, {finding.scope}: {finding.verdict}", fontsize=9)
        ax.margins(0.15)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        return buffer.getvalue()


def route_candidates(matrix: OutcomeMatrix) -> list[Candidate]:
    """One-sample uniform points for every configuration (always-think and always-no-think
    are among them), then the router swept over its price grid."""
    out = [Candidate(f"always {c.label}", BASELINE, _always(c)) for c in matrix.configs]
    return out + REGISTRY["router"](matrix, full_configs(matrix))


def _always(config: Config) -> Callable[[OutcomeMatrix], Policy]:
    return lambda _train: Uniform(config)


def _rows_of(ev: Evaluation, matrix: OutcomeMatrix, configs: tuple[Config, ...]) -> np.ndarray:
    labels = {f"always {c.label}" for c in configs if c in matrix.configs}
    return np.array([i for i, label in enumerate(ev.labels) if label in labels], dtype=np.int64)


def _cheapest_per_fold(ev: Evaluation, rows: np.ndarray) -> np.ndarray:
    """Per fold, the member with the lowest training cost (what the router routes to)."""
    assert ev.train_cost is not None
    return np.array([int(rows[np.argmin(t[rows])]) for t in ev.train_cost], dtype=np.int64)


def routed_modes(
    ev: Evaluation,
    matrix: OutcomeMatrix,
    cands: list[Candidate],
    choice: np.ndarray,
    always_think: np.ndarray,
) -> np.ndarray:
    """The base mode served to each held-out problem by its fold's chosen point.

    The chosen router is refitted on the fold's training problems (deterministic, so these
    are the decisions the evaluation replayed) to read which configuration it picked.
    """
    assert ev.fold is not None
    by_label = {c.label: c for c in cands}
    modes = np.full(matrix.n_problems, THINK, dtype=object)
    for f, (chosen, think) in enumerate(zip(choice, always_think, strict=True)):
        if chosen == think:
            continue
        test = np.flatnonzero(ev.fold == f)
        train = matrix.subset(np.flatnonzero(ev.fold != f))
        policy = by_label[ev.labels[chosen]].make(train).fit(train)
        batch = policy.decide_batch(matrix.subset(test).problems)
        modes[test] = [base_mode(batch[i].steps[0].config.mode) for i in range(len(test))]
    return modes


def _point(policy: str, correct: FloatArray, cost: FloatArray, share: float) -> dict[str, object]:
    return {
        "policy": policy,
        "accuracy": float(correct.mean()),
        "tokens": float(cost.mean()),
        "share_no_think": share,
    }


def _protocol(ev: Evaluation, pair: Pairing, ci: float, n_boot: int) -> str:
    return (
        f"{ev.protocol}; configurations of {pair.model} in modes {pair.think_mode} and "
        f"{pair.no_think_mode} only. Always-think per fold: the {pair.think_mode} "
        "configuration most accurate on the training folds (cheaper on ties). Router: "
        "ponder.policies.router.ThinkRouter, fitted on the training folds only (per "
        "configuration a logistic regression of P(correct) on the problem's hashed text, "
        "level and subject, plus mean tokens; it routes between the cheapest no-think and the "
        "most accurate think configuration). For a held-out request it reads the text, level "
        "and subject only: no correctness label of that request, no generation, no RL. Its "
        "price is chosen per fold by inner cross-validation: the cheapest router point whose "
        "training accuracy reaches always-think's, else always-think. Effect: 1 - held-out "
        f"tokens of the router / always-think's, {ci:.0%} cluster bootstrap over problems "
        f"({n_boot} resamples) with fold choices fixed. Equivalence: supported only if the "
        f"held-out accuracy change's interval stays above -{ACCURACY_MARGIN:.2f} "
        "(contradicted if it lies wholly below). Decision agreement: share of problems solved "
        f"by exactly one or both modes (solved: at least {SOLVED:.0%} of samples right) where "
        "the router served the cheapest solving mode."
    )


# -- the supervised export ---------------------------------------------------------------------


@dataclass(frozen=True)
class RoutingExport:
    """What ``routing_dataset`` wrote: counts per label and what it left out, and why."""

    path: Path
    written: int
    no_think: int
    think: int
    unsolved: int
    without_text: int
    think_config: str
    no_think_config: str


def routing_dataset(
    data: ClaimData,
    path: str | Path,
    *,
    model: str,
    modes: tuple[str, str] | None = None,
) -> RoutingExport:
    """Write one model's per-problem think / no-think labels as chat-format JSON Lines.

    The label is the cheapest mode that solves the problem (at least half of its samples
    right): no-think when the model's cheapest no-think configuration solves it, else think
    when its most accurate think configuration does. Problems neither mode solves, and
    problems without text, are left out (counted in the result). Format, after Thinkless
    (Fang et al., 2025, "Thinkless: LLM Learns When to Think"), one line per problem::

        {"messages": [{"role": "user", "content": <problem text>},
                      {"role": "assistant", "content": "<short>\\n<answer>"
                                                      or "<think>\\n<reasoning or answer>"}],
         "mode": "no-think" | "think", "control_token": "<short>" | "<think>",
         "response": "answer" | "reasoning", "problem_id": ..., "dataset": ..., "model": ...}

    The assistant turn starts with the control token; what follows is the model's own
    recorded output: its extracted answer, or for think the recorded chain when it ended on
    its own within the configuration's budget ("response" says which). Training on the first
    token alone teaches the decision (Thinkless's control-token loss); the rest is there for
    full supervised fine-tuning where the store kept it.

    ``modes`` = (think mode, no-think mode); by default the sampled pair when the model has
    it, else the greedy one. The file is written atomically (a temporary file in the same
    folder, then renamed), so a reader never sees a partial dataset.
    """
    target = _check_path(path)
    rows = data.samples[data.samples["model"] == model]
    if rows.empty:
        raise InputError(f"no samples of model {model!r} in dataset {data.dataset!r}")
    matrix = OutcomeMatrix.from_frame(rows, problems=data.problems, normalize=normalize_answer)
    pair = _export_pairing(matrix, model, modes)
    matrix = matrix.select_configs([*pair.think, *pair.no_think])
    think, no_think = _defaults(matrix, pair)
    solve = matrix.mean_correct()
    no_think_solves = solve[:, matrix.config_index(no_think)] >= SOLVED
    think_solves = solve[:, matrix.config_index(think)] >= SOLVED
    texts = data.problems.set_index("problem_id")["text"]
    answers = _responses(rows, data.chains, no_think, think)
    lines: list[str] = []
    counts = {NO_THINK: 0, THINK: 0, "unsolved": 0, "no text": 0}
    for i, problem in enumerate(matrix.problems["problem_id"].astype(str)):
        mode = NO_THINK if no_think_solves[i] else THINK if think_solves[i] else None
        if mode is None:
            counts["unsolved"] += 1
            continue
        text = texts.get(problem)
        if not isinstance(text, str) or not text.strip():
            counts["no text"] += 1
            continue
        kind, response = answers[(mode, problem)]
        token = CONTROL_TOKENS[mode]
        record = {
            "messages": [
                {"role": "user", "content": text},
                {"role": "assistant", "content": f"{token}\n{response}"},
            ],
            "mode": mode,
            "control_token": token,
            "response": kind,
            "problem_id": problem,
            "dataset": data.dataset,
            "model": model,
        }
        lines.append(json.dumps(record, ensure_ascii=False))
        counts[mode] += 1
    if not lines:
        raise InputError(
            f"no problem of {data.dataset!r} has a label for {model!r}: "
            f"{counts['unsolved']} unsolved by both modes, {counts['no text']} without text"
        )
    _write_atomic(target, lines)
    return RoutingExport(
        path=target,
        written=len(lines),
        no_think=counts[NO_THINK],
        think=counts[THINK],
        unsolved=counts["unsolved"],
        without_text=counts["no text"],
        think_config=think.label,
        no_think_config=no_think.label,
    )


def _check_path(path: str | Path) -> Path:
    """A writable ``*.jsonl`` file path in an existing folder (errors name the path)."""
    target = Path(path)
    if target.suffix != ".jsonl":
        raise InputError("the routing dataset is JSON Lines: name the file *.jsonl", path=target)
    if target.is_dir():
        raise InputError("expected a file path, got a directory", path=target)
    if not target.parent.is_dir():
        raise InputError("the folder to write into does not exist", path=target.parent)
    return target


def _export_pairing(matrix: OutcomeMatrix, model: str, modes: tuple[str, str] | None) -> Pairing:
    complete = matrix.complete_configs()
    found_pairs = pairings(complete)
    if modes is not None:
        found_pairs = [p for p in found_pairs if (p.think_mode, p.no_think_mode) == modes]
    if not found_pairs:
        wanted = f" in modes {modes}" if modes else ""
        raise InputError(
            f"model {model!r} has no think and no-think configurations{wanted} recorded for "
            f"every problem (recorded: {_modes_recorded(matrix.configs)})"
        )
    return found_pairs[0]  # sampled before greedy (see ``pairings``)


def _defaults(matrix: OutcomeMatrix, pair: Pairing) -> tuple[Config, Config]:
    """The router's defaults on all problems: the most accurate think configuration
    (cheaper on ties) and the cheapest no-think one."""
    solve = matrix.mean_correct().mean(axis=0)
    recorded = ~np.isnan(matrix.cost)
    cost = np.nansum(matrix.cost, axis=(0, 2)) / np.maximum(recorded.sum(axis=(0, 2)), 1)

    def key_think(c: Config) -> tuple[float, float]:
        i = matrix.config_index(c)
        return (-solve[i], cost[i])

    think = min(pair.think, key=key_think)
    no_think = min(pair.no_think, key=lambda c: cost[matrix.config_index(c)])
    return think, no_think


def _responses(
    rows: pd.DataFrame, chains: pd.DataFrame | None, no_think: Config, think: Config
) -> dict[tuple[str, str], tuple[str, str]]:
    """Per (mode, problem), what the assistant turn holds after the control token.

    A right sample's extracted answer; for think, the recorded chain instead when it ended
    on its own within the configuration's budget (a longer chain was cut off to answer).
    """
    text_of: dict[str, str] = {}
    if chains is not None and len(chains):
        finished = chains[(chains["finished"] == 1) & chains["text"].notna()]
        if think.budget is not None:
            finished = finished[finished["tokens"] <= think.budget]
        text_of = dict(zip(finished["chain_id"], finished["text"], strict=True))
    out: dict[tuple[str, str], tuple[str, str]] = {}
    for mode, config in ((NO_THINK, no_think), (THINK, think)):
        budget = rows["budget"]
        same_budget = budget.isna() if config.budget is None else budget == config.budget
        picked = rows[(rows["mode"] == config.mode) & same_budget & (rows["correct"] >= SOLVED)]
        for problem, group in _first_per_problem(picked):
            chain = group["chain_id"]
            reasoning = text_of.get(chain) if isinstance(chain, str) else None
            if mode == THINK and reasoning:
                out[(mode, problem)] = ("reasoning", reasoning)
            else:
                out[(mode, problem)] = ("answer", str(group["extracted_answer"]))
    return out


def _first_per_problem(rows: pd.DataFrame) -> Iterator[tuple[str, pd.Series]]:
    """Each problem's right sample with the lowest sample index."""
    ordered = rows.sort_values(["problem_id", "sample_idx"]).drop_duplicates("problem_id")
    for _, row in ordered.iterrows():
        yield str(row["problem_id"]), row


def _write_atomic(target: Path, lines: list[str]) -> None:
    """Write lines to a temporary file beside ``target``, then rename it into place."""
    handle, temporary = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write("\n".join(lines) + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
