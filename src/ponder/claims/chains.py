"""Recorded greedy chains a live experiment replays, and how its rows are read back.

Claims 7 (forking tokens) and 9 (token functions) start from the same record: per problem,
one greedy chain of the model as the sweep recorded it (its text, token count, per-token
entropies, whether it ended on its own, and its ladder's final answer). Their experiments
feed (part of) it back after the sweep's prompt, force an answer with the sweep's cue and
grade it like the sweep; their checks compare each new answer with the chain's final one.
Claim 8 (search rounds) re-feeds sampled chains after the same prompt. What they share is
here, so every claim selects, re-feeds and compares chains the same way, and claims 7 and 9
refuse and measure their gap between two arms the same way (:class:`ChainClaim`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np
import numpy.typing as npt
import pandas as pd

from ponder.claims.base import Claim, Effect, Finding, insufficient
from ponder.claims.experiments import interleaved_by_band, is_experiment_run, seed_of
from ponder.claims.stats import FloatArray, bootstrap_effect, weighted_mean
from ponder.errors import InputError
from ponder.types import GREEDY_SUFFIX, THINK

if TYPE_CHECKING:
    from ponder.backends import Backend, Message
    from ponder.budgets.ladder import Rung
    from ponder.claims.data import ClaimData
    from ponder.grading import GradeResult

# The sweep's greedy chains: one per problem, and their continuation is deterministic.
GREEDY_MODE = THINK + GREEDY_SUFFIX


# -- answers ----------------------------------------------------------------------------------


def text_or_none(value: object) -> str | None:
    """A recorded answer as text (None when missing: None or NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value)


def answer_key(value: object) -> str | None:
    """An answer as compared across arms (normalize_answer; missing -> None)."""
    from ponder.grading import normalize_answer

    text = text_or_none(value)
    return None if text is None else normalize_answer(text) or None


# -- the recorded chains ----------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedChain:
    """One recorded chain with its problem and its ladder's final rung (an experiment item:
    ``key`` is the chain). ``entropies`` is empty when none were recorded; ``max_budget`` is
    the ladder's largest rung (NaN when unknown)."""

    chain_id: str
    dataset: str
    problem_id: str
    problem_text: str
    gold: str
    text: str
    tokens: int
    finished: bool
    entropies: tuple[float, ...]
    max_budget: float
    original_extracted: str | None
    original_correct: float

    @property
    def key(self) -> str:
        return self.chain_id

    @property
    def cap(self) -> int:
        """The budget the sweep gave the chain: its largest rung, else its length."""
        return self.tokens if math.isnan(self.max_budget) else int(self.max_budget)


ChainT = TypeVar("ChainT", bound=RecordedChain)


def problem_texts(data: ClaimData) -> dict[Any, Any]:
    """Problem id -> problem text (a value that is not a string means: no text)."""
    return dict(zip(data.problems["problem_id"], data.problems["text"], strict=True))


def chains_by_id(data: ClaimData) -> dict[str, dict[Any, Any]]:
    """The recorded chains (rows of ``data.chains``) by chain id."""
    chains = data.chains
    return {} if chains is None else {str(c["chain_id"]): c for c in chains.to_dict("records")}


def final_rungs(rows: pd.DataFrame) -> pd.DataFrame:
    """Each chain's final rung: its row with the highest rung, then budget."""
    return rows.sort_values(["rung", "budget"]).drop_duplicates("chain_id", keep="last")


def greedy_chains(data: ClaimData, model: str, kind: type[ChainT]) -> list[ChainT]:
    """The model's recorded greedy chains that have their text and their problem's text, as
    ``kind``, in the order of their final rungs. InputError when the dataset has no chains or
    the model has no greedy ones."""
    if data.chains is None or data.chains.empty:
        raise InputError(
            f"dataset {data.dataset!r} has no recorded chains: run a live sweep with "
            "ladders first (`ponder sweep run`)"
        )
    rows = data.outcomes
    source = rows[(rows["mode"] == GREEDY_MODE) & rows["chain_id"].notna()]
    have = sorted(source["model"].astype(str).unique())
    if model not in have:
        raise InputError(
            f"no {GREEDY_MODE} chains of model {model!r} in dataset {data.dataset!r}; "
            f"models with them: {', '.join(have) or 'none'}"
        )
    own = source[source["model"] == model]
    caps = own.groupby("chain_id")["budget"].max()
    texts = problem_texts(data)
    golds = dict(zip(data.problems["problem_id"], data.problems["gold"], strict=True))
    recorded = chains_by_id(data)
    out: list[ChainT] = []
    for row in final_rungs(own).to_dict("records"):
        chain = recorded.get(str(row["chain_id"]))
        problem = str(row["problem_id"])
        text = texts.get(problem)
        if chain is None or not isinstance(text, str) or not isinstance(chain["text"], str):
            continue
        entropies = chain["entropies"]
        out.append(
            kind(
                chain_id=str(chain["chain_id"]),
                dataset=data.dataset,
                problem_id=problem,
                problem_text=text,
                gold=str(golds.get(problem)),
                text=chain["text"],
                tokens=int(chain["tokens"]),
                finished=bool(chain["finished"]),
                entropies=() if entropies is None else tuple(float(e) for e in entropies),
                max_budget=float(caps.get(chain["chain_id"], float("nan"))),
                original_extracted=text_or_none(row["extracted_answer"]),
                original_correct=float(row["correct"]),
            )
        )
    return out


def greedy_items(
    data: ClaimData,
    model: str,
    kind: type[ChainT],
    usable: Callable[[ChainT], bool],
    *,
    seed: int,
    needs: str,
) -> list[ChainT]:
    """The first ``usable`` greedy chain of each problem (see :func:`greedy_chains`), in a
    seeded order interleaved by difficulty band (so a partial run covers every band).
    InputError when none is usable; ``needs`` says what each chain needs."""
    items: dict[str, ChainT] = {}
    for chain in greedy_chains(data, model, kind):
        if usable(chain):
            items.setdefault(chain.problem_id, chain)
    if not items:
        raise InputError(
            f"no usable {GREEDY_MODE} chains of {model!r} in {data.dataset!r} (each needs {needs})"
        )
    rng = np.random.default_rng(seed_of(seed, "order", data.dataset))
    return interleaved_by_band(data, items, rng)


def chain_models(data: ClaimData, experiment_modes: Collection[str]) -> pd.Series:
    """The model of each recorded chain (from its own rows, experiment rows excluded)."""
    rows = data.outcomes
    rows = rows[rows["chain_id"].notna() & ~rows["mode"].isin(experiment_modes)]
    return rows.drop_duplicates("chain_id").set_index("chain_id")["model"].astype(str)


# -- re-feeding a chain -----------------------------------------------------------------------


def think_messages(problem_text: str) -> tuple[Message, ...]:
    """The sweep's prompt for a thinking chain on ``problem_text``."""
    from ponder.budgets import messages_for

    return messages_for(problem_text, THINK)


@dataclass(frozen=True)
class ForcedAnswer:
    """An answer forced after re-fed text: the re-fed text's tokens, the sweep's rung (what
    it cost, its answer's probability) and the answer graded like the sweep's."""

    appended: int
    rung: Rung
    graded: GradeResult


async def force_answer(
    backend: Backend,
    chain: RecordedChain,
    text: str,
    *,
    reserve: int,
    budget: int | None = None,
) -> ForcedAnswer:
    """Append ``text`` after the chain's prompt, think on greedily up to ``budget`` tokens
    (None: not at all), then force the answer with the sweep's cue."""
    from ponder.backends import Sampling
    from ponder.budgets import force_budget
    from ponder.grading import grade

    opened = await backend.open_chain(think_messages(chain.problem_text), Sampling(0.0))
    try:
        appended = await opened.append(text)
        limit = max(1, opened.tokens) if budget is None else max(budget, 1)
        rung = await force_budget(opened, limit, reserve=reserve)
    finally:
        await opened.aclose()
    return ForcedAnswer(appended, rung, grade(rung.answer_text, chain.gold))


# -- reading the experiment's rows back -------------------------------------------------------


def experiment_rows(
    data: ClaimData, claim_id: str, modes: Collection[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every row of ``data`` (recorded and experiment), and of those ``claim_id``'s
    experiment rows in ``modes`` that name their chain."""
    rows = data.outcomes
    if data.experiments is not None:
        rows = pd.concat([rows, data.experiments], ignore_index=True)
    mine = rows[rows["run_id"].map(lambda r: is_experiment_run(r, claim_id))]
    return rows, mine[mine["mode"].isin(modes) & mine["chain_id"].notna()]


def final_answers(
    rows: pd.DataFrame, chain_ids: Collection[str], experiment_modes: Collection[str]
) -> tuple[pd.DataFrame, dict[str, str | None]]:
    """The final recorded rung of each of ``chain_ids`` (rows in ``experiment_modes`` are not
    recorded ones), and its answer as compared (:func:`answer_key`) by chain."""
    source = rows[rows["chain_id"].isin(set(chain_ids)) & ~rows["mode"].isin(experiment_modes)]
    last = final_rungs(source)
    answers = zip(last["chain_id"], last["extracted_answer"], strict=True)
    return last, {c: answer_key(a) for c, a in answers}


def same_answer(rows: pd.DataFrame, original: Mapping[str, str | None]) -> npt.NDArray[np.float64]:
    """1.0 where a row's answer is its chain's ``original`` one (compared by answer_key)."""
    keys = [answer_key(a) for a in rows["extracted_answer"]]
    pairs = zip(keys, rows["chain_id"], strict=True)
    return np.array([k == original[c] for k, c in pairs], dtype=float)


# -- the findings of a claim on recorded chains -----------------------------------------------


class ChainClaim(Claim):
    """A live claim tested on recorded chains: a refusal keeps the descriptive figures, the
    effect is the mean over problems of a paired gap between two arms (points), and the plot
    shows the descriptive panel next to the test's (``panels``, drawn by ``_draw_panel``)."""

    protocol: ClassVar[str]
    min_effect: ClassVar[float]
    panels: ClassVar[tuple[str, str]]
    panel_height: ClassVar[float]
    gap_label: ClassVar[str]

    def plot(self, finding: Finding) -> bytes | None:
        table = finding.table
        if table is None or table.empty:
            return None
        import matplotlib.pyplot as plt

        from ponder.report.plots import figure_png

        panels = [p for p in self.panels if (table["panel"] == p).any()]
        size = (5.0 * len(panels), self.panel_height)
        fig, axes = plt.subplots(1, len(panels), figsize=size, squeeze=False)
        for ax, panel in zip(axes[0], panels, strict=True):
            self._draw_panel(ax, panel, table[table["panel"] == panel])
        effect = finding.effect
        gap = f"; {self.gap_label} {effect.value:+.1f} pts" if effect else ""
        fig.suptitle(f"{finding.dataset}: {finding.scope}{gap} ({finding.verdict})", fontsize=9)
        return figure_png(fig)

    def _draw_panel(self, ax: Any, panel: str, rows: pd.DataFrame) -> None:
        """Draw ``panel`` (one of ``panels``) from its rows of the finding's table."""
        raise NotImplementedError

    def _refuse(
        self,
        data: ClaimData,
        reason: str,
        scope: str,
        *,
        extras: Mapping[str, float] | None = None,
        table: pd.DataFrame | None = None,
        n_problems: int = 0,
    ) -> Finding:
        """An "insufficient" finding that still carries the descriptive figures."""
        return insufficient(
            self.id,
            data.dataset,
            reason,
            scope=scope,
            n_problems=n_problems,
            protocol=self.protocol,
            table=table,
            extras=extras,
        )

    def _gap_effect(self, data: ClaimData, gap: FloatArray, scope: str, name: str) -> Effect:
        """The mean of ``gap`` (one value per problem, points), cluster bootstrap over
        problems."""

        def statistic(weights: FloatArray) -> FloatArray:
            return weighted_mean(gap, weights)

        settings = data.settings
        return bootstrap_effect(
            statistic,
            len(gap),
            name=name,
            unit="points",
            n_boot=settings.n_boot,
            seed=settings.seed,
            key=f"{data.dataset}:{self.id}:{scope}",
            ci=settings.ci,
            min_effect=self.min_effect,
        )


def control_note(extras: Mapping[str, float], key: str, template: str) -> str:
    """A finding's note on its control arm: ``template`` filled with the share in
    ``extras[key]`` ("" when there is no control)."""
    share = extras.get(key)
    if share is None or math.isnan(share):
        return ""
    return template.format(share)
