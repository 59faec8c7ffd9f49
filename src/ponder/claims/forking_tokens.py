"""Claim 7: a minority of high-entropy "forking" tokens carries the reasoning.

Two parts. The descriptive part reads the per-token entropies of recorded chains: how many
tokens are uncertain, and how much of the entropy they carry. The test needs a model
(:class:`ForkingExperiment`, run through ``ponder.claims.experiments``): at high-entropy
positions of a greedy chain and at as many other positions at about the same place, the
token is resampled and the chain continued, and we count how often the final answer changes.

Resampling one token, not the whole rest of the chain: a sampled continuation from any
position would also resample every later forking token, so the two arms would differ only
by the few tokens between them. Here only the token at the position is drawn (at the sweep's
sampled decoding) and the chain goes on greedily, as the recorded greedy chain did.

Both arms continue the chain even when the drawn token equals the recorded one. Re-feeding
a prefix as text re-tokenizes it, and the engine's continuation of a re-fed prefix can
differ from the recorded one (measured on qwen2.5-coder-0.5b: 2 of 12 control answers
changed). A high-entropy token is drawn differently far more often than a low-entropy one,
so skipping the continuation for unchanged tokens would credit that noise to the high arm
alone; continuing both arms puts the same noise floor under each.

Rows (mode ``fork-high`` / ``fork-other``, budget = the position = tokens kept before the
resampled one, ``chain_id`` = the recorded chain, ``entropy_tail`` = the entropy at the
position) hold the new answer; ``extra_json`` says whether the drawn token differed
(``token_changed``). Control rows (``fork-null``): the chain re-fed up to a position and
continued greedily with nothing resampled; any change there comes from re-feeding the
prefix (the noise floor of the method), not from a fork.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import numpy.typing as npt
import pandas as pd

from ponder.claims.base import Effect, Finding, found
from ponder.claims.chains import (
    GREEDY_MODE,
    ChainClaim,
    RecordedChain,
    answer_key,
    chain_models,
    control_note,
    experiment_rows,
    final_answers,
    force_answer,
    greedy_items,
    same_answer,
    think_messages,
)
from ponder.claims.data import ClaimData
from ponder.claims.experiments import Row, outcome_row, require_prefix_continuation, seed_of
from ponder.claims.stats import FloatArray
from ponder.errors import InputError

if TYPE_CHECKING:
    from ponder.backends import Backend

CLAIM_ID = "forking-tokens"
HIGH_MODE = "fork-high"
OTHER_MODE = "fork-other"
NULL_MODE = "fork-null"
FORK_MODES = (HIGH_MODE, OTHER_MODE, NULL_MODE)
# The recorded chains the test resamples: greedy ones, whose continuation is deterministic.
SOURCE_MODE = GREEDY_MODE

# "High entropy": above the top-20% cut (the share Wang et al., 2025, call forking tokens).
TOP_SHARE = 0.2
# A fixed cut for comparing models: at 1 nat the next token is about as uncertain as a
# choice among e^1 ~ 2.7 equally likely tokens.
FIXED_CUT_NATS = 1.0
# Shares of the most uncertain tokens at which the concentration curve is tabled.
CURVE_SHARES = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
# Resampling at forking tokens should change the answer at least this much more often than
# at other tokens (points) to matter: a smaller gap would not single out a token minority.
MIN_EFFECT = 5.0
# The sweep's sampled decoding (ponder.sweep.execute.DEFAULT_TEMPERATURE / DEFAULT_TOP_P).
TEMPERATURE = 0.7
TOP_P = 0.95
DEFAULT_CHAINS = 24
DEFAULT_POSITIONS = 4
# Chains shorter than this have too few positions to match an arm against the other.
MIN_CHAIN_TOKENS = 20
POSITION_BINS = 10

PROTOCOL = (
    "Descriptive, per model, over every recorded chain with per-token entropies (nats, the "
    "model's own next-token distribution): the top-20% cut (80th percentile), the share of "
    f"tokens above {FIXED_CUT_NATS:g} nat, and the share of all entropy carried by the 20% "
    "most uncertain tokens (pooled over tokens). Test, per model, on greedy chains (mode "
    f"{SOURCE_MODE}) drawn in a seeded order interleaved by difficulty band: the chain is "
    "replayed greedily and must reproduce the recorded text. Positions: tokens before the "
    "final \\boxed{ of a chain that ended on its own; high = entropy strictly above the "
    "chain's own 80th percentile, other = the rest. Up to m high positions are drawn at "
    "random, each matched to a random other position in the same tenth of the chain (the "
    "nearest tenth with one left otherwise). At each position the chain is cut before the "
    f"token, the token is drawn at temperature {TEMPERATURE:g}, top-p {TOP_P:g}, and the "
    "chain continues greedily up to its recorded budget (also when the drawn token is the "
    "recorded one, so both arms carry the same re-feeding noise), then the answer is forced "
    "with the sweep's cue; answers are compared with the recorded chain's final answer after "
    "normalize_answer. Effect: answer-change rate at high positions minus at matched other "
    "positions (points), per problem then averaged over problems (one chain per problem); "
    "paired cluster bootstrap over problems. Control: one position per chain re-fed and "
    "continued with nothing resampled (the noise floor of re-tokenizing the prefix). "
    f"Supported if the interval is above 0; contradicted if it lies below {MIN_EFFECT:g} "
    "points."
)

TABLE_COLUMNS = ["panel", "series", "x", "y", "n"]


class ForkingTokens(ChainClaim):
    number: ClassVar[int] = 7
    id: ClassVar[str] = CLAIM_ID
    title: ClassVar[str] = "Forking tokens: a high-entropy minority carries the reasoning"
    hypothesis: ClassVar[str] = (
        "A minority of high-entropy tokens carries the reasoning: resampling the token at "
        "those positions changes the final answer more often than resampling it at the same "
        "number of other positions."
    )
    needs: ClassVar[str] = (
        "recorded chains with per-token entropies (a live sweep) and the resampling rows of "
        "`ponder experiment forking-tokens --model MODEL` on them"
    )
    live: ClassVar[bool] = True
    protocol: ClassVar[str] = PROTOCOL
    min_effect: ClassVar[float] = MIN_EFFECT
    panels: ClassVar[tuple[str, str]] = ("concentration", "change")
    panel_height: ClassVar[float] = 3.6
    gap_label: ClassVar[str] = "change gap"

    def experiment(
        self,
        *,
        positions: int = DEFAULT_POSITIONS,
        seed: int = 0,
        temperature: float = TEMPERATURE,
        top_p: float = TOP_P,
    ) -> ForkingExperiment:
        """The experiment whose rows this claim's check reads."""
        return ForkingExperiment(
            positions=positions, seed=seed, temperature=temperature, top_p=top_p
        )

    def check(self, data: ClaimData) -> list[Finding]:
        profiles = entropy_profiles(data)
        changes = answer_changes(data)
        models = sorted(set(profiles) | set(changes["model"].unique()))
        if not models:
            return [self._refuse(data, f"needs {self.needs}", "all models")]
        findings = [self._model_finding(data, m, changes, profiles.get(m)) for m in models]
        tested = [m for m, f in zip(models, findings, strict=True) if f.verdict != "insufficient"]
        if len(tested) >= 2:
            findings.append(self._pooled_finding(data, changes[changes["model"].isin(tested)]))
        return findings

    def _draw_panel(self, ax: Any, panel: str, rows: pd.DataFrame) -> None:
        for series, part in rows.groupby("series", sort=True):
            ax.plot(100 * part["x"], 100 * part["y"], "o-", markersize=3, label=str(series))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, frameon=False)
        if panel == "concentration":
            ax.plot([0, 100], [0, 100], color="grey", linewidth=0.8, linestyle=":")
            ax.set_xlabel("most uncertain tokens (% of tokens)", fontsize=8)
            ax.set_ylabel("share of all entropy (%)", fontsize=8)
        else:
            ax.set_xlabel("position in the chain (% of its tokens)", fontsize=8)
            ax.set_ylabel("answers changed by resampling (%)", fontsize=8)

    # -- findings ----------------------------------------------------------------------------

    def _model_finding(
        self,
        data: ClaimData,
        model: str,
        changes: pd.DataFrame,
        profile: EntropyProfile | None,
    ) -> Finding:
        rows = changes[changes["model"] == model]
        extras = dict(profile.extras) if profile is not None else {}
        extras.update(arm_extras(rows))
        tables = [profile.table] if profile is not None else []
        if not rows.empty:
            tables.append(change_table(rows))
        table = pd.concat(tables, ignore_index=True) if tables else None
        paired = paired_rates(rows)
        n = len(paired)
        command = f"`ponder experiment {self.id} --model {model} --dataset {data.dataset}`"
        if rows.empty:
            reason = (
                f"no resampling rows for {model}: the descriptive figures are in the extras; "
                f"run {command} for the test"
            )
            return self._refuse(data, reason, model, extras=extras, table=table)
        if n < data.settings.min_problems:
            reason = (
                f"{n} problems have rows at both kinds of position (needs "
                f"{data.settings.min_problems}): run {command} with more --chains"
            )
            return self._refuse(data, reason, model, extras=extras, table=table, n_problems=n)
        effect = self._effect(data, paired["high"].to_numpy(), paired["other"].to_numpy(), model)
        return found(
            self.id,
            data.dataset,
            model,
            effect,
            n_problems=n,
            protocol=PROTOCOL,
            table=table,
            extras=extras,
            note=_noise_note(extras),
        )

    def _pooled_finding(self, data: ClaimData, changes: pd.DataFrame) -> Finding:
        """All tested models: each problem's gap averaged over the models that ran it."""
        per_model = []
        for model, rows in changes.groupby("model", sort=True):
            rates = paired_rates(rows).assign(model=model)
            per_model.append(rates.reset_index())
        paired = pd.concat(per_model, ignore_index=True).groupby("problem_id")[["high", "other"]]
        means = paired.mean()
        effect = self._effect(
            data, means["high"].to_numpy(), means["other"].to_numpy(), "all models"
        )
        extras = arm_extras(changes)
        return found(
            self.id,
            data.dataset,
            "all models",
            effect,
            n_problems=len(means),
            protocol=PROTOCOL,
            table=change_table(changes),
            extras=extras,
            note=_noise_note(extras),
        )

    def _effect(self, data: ClaimData, high: FloatArray, other: FloatArray, scope: str) -> Effect:
        name = "answer-change rate, high-entropy minus other positions"
        return self._gap_effect(data, 100.0 * (high - other), scope, name)


def _noise_note(extras: Mapping[str, float]) -> str:
    key = "control: answers changed with nothing resampled"
    return control_note(
        extras, key, "control (prefix re-fed, nothing resampled) changed {:.0%} of answers"
    )


# -- the descriptive part ---------------------------------------------------------------------


@dataclass(frozen=True)
class EntropyProfile:
    """One model's entropy figures (extras) and its concentration curve (table rows)."""

    extras: dict[str, float]
    table: pd.DataFrame


def concentration(entropies: npt.NDArray[np.floating[Any]], shares: Sequence[float]) -> FloatArray:
    """Share of the total entropy carried by the most uncertain ``shares`` of the tokens."""
    ordered = np.sort(np.asarray(entropies, dtype=np.float64))[::-1]
    total = ordered.sum()
    if len(ordered) == 0 or total <= 0:
        return np.full(len(shares), np.nan)
    cumulative = np.cumsum(ordered)
    counts = np.clip(np.ceil(np.asarray(shares) * len(ordered)).astype(int), 1, len(ordered))
    out: FloatArray = cumulative[counts - 1] / total
    return out


def entropy_profiles(data: ClaimData) -> dict[str, EntropyProfile]:
    """Per model with recorded entropies: the descriptive figures (see PROTOCOL)."""
    chains = data.chains
    if chains is None or chains.empty:
        return {}
    chains = chains[chains["entropies"].map(lambda e: e is not None and len(e) > 0)]
    models = chains["chain_id"].map(chain_models(data, FORK_MODES))
    out: dict[str, EntropyProfile] = {}
    for model, group in chains.groupby(models, sort=True):
        values = np.concatenate([np.asarray(e, dtype=np.float64) for e in group["entropies"]])
        curve = concentration(values, CURVE_SHARES)
        top = float(concentration(values, [TOP_SHARE])[0])
        extras = {
            "chains with entropies": float(len(group)),
            "tokens": float(values.size),
            "top-20% cut (nats)": float(np.quantile(values, 1 - TOP_SHARE)),
            f"share of tokens above {FIXED_CUT_NATS:g} nat": float(
                (values > FIXED_CUT_NATS).mean()
            ),
            "share of entropy in the top 20% of tokens": top,
            "median entropy (nats)": float(np.median(values)),
        }
        table = pd.DataFrame(
            {
                "panel": "concentration",
                "series": str(model),
                "x": list(CURVE_SHARES),
                "y": curve,
                "n": float(values.size),
            }
        )
        out[str(model)] = EntropyProfile(extras, table[TABLE_COLUMNS])
    return out


# -- reading the experiment's rows ------------------------------------------------------------


def answer_changes(data: ClaimData) -> pd.DataFrame:
    """The experiment's rows with ``changed`` (the answer differs from the recorded chain's
    final one), ``token_changed`` and ``where`` (position / chain tokens); rows whose chain
    has no recorded final answer are dropped."""
    rows, mine = experiment_rows(data, CLAIM_ID, FORK_MODES)
    columns = ["model", "problem_id", "chain_id", "mode", "budget", "correct"]
    if mine.empty:
        return pd.DataFrame(columns=[*columns, "changed", "token_changed", "where"])
    last, original = final_answers(rows, mine["chain_id"], FORK_MODES)
    length = _chain_lengths(data, last)
    mine = mine[mine["chain_id"].isin(original)]
    tokens = mine["chain_id"].map(length).to_numpy(dtype=float)
    return (
        mine[columns]
        .assign(
            changed=1.0 - same_answer(mine, original),
            token_changed=_token_changed(mine),
            where=mine["budget"].to_numpy(dtype=float) / tokens,
        )
        .reset_index(drop=True)
    )


def _token_changed(rows: pd.DataFrame) -> npt.NDArray[np.float64]:
    """1.0 where the drawn token differed from the recorded one (``extra_json``); rows of
    older runs, which skipped unchanged tokens, tell it by a continuation having run."""
    out = np.empty(len(rows), dtype=np.float64)
    extras = rows["extra_json"] if "extra_json" in rows else pd.Series([None] * len(rows))
    pairs = zip(extras, rows["reasoning_tokens"], strict=True)
    for i, (extra_json, thinking) in enumerate(pairs):
        extra = json.loads(extra_json) if isinstance(extra_json, str) else {}
        flag = extra.get("token_changed")
        continued = not pd.isna(thinking)
        out[i] = float(flag if isinstance(flag, bool) else continued)
    return out


def _chain_lengths(data: ClaimData, last: pd.DataFrame) -> dict[str, float]:
    """Tokens of each chain: the chains table, else the last rung's thinking tokens."""
    out = dict(zip(last["chain_id"], last["reasoning_tokens"].astype(float), strict=True))
    if data.chains is not None and len(data.chains):
        out.update(zip(data.chains["chain_id"], data.chains["tokens"].astype(float), strict=True))
    return out


def paired_rates(rows: pd.DataFrame) -> pd.DataFrame:
    """Per problem with rows in both arms: the answer-change rate at high and other positions."""
    arms = rows[rows["mode"].isin((HIGH_MODE, OTHER_MODE))]
    if arms.empty:
        return pd.DataFrame(columns=["high", "other"], dtype=float)
    rates = arms.pivot_table(index="problem_id", columns="mode", values="changed", aggfunc="mean")
    if HIGH_MODE not in rates.columns or OTHER_MODE not in rates.columns:
        return pd.DataFrame(columns=["high", "other"], dtype=float)
    rates = rates.rename(columns={HIGH_MODE: "high", OTHER_MODE: "other"})[["high", "other"]]
    return rates.dropna().sort_index()


def _rate(values: pd.Series) -> float:
    return float(values.mean()) if len(values) else float("nan")


def arm_extras(rows: pd.DataFrame) -> dict[str, float]:
    """Secondary figures of the test (empty when there are no rows)."""
    if rows.empty:
        return {}
    out: dict[str, float] = {}
    for mode, label in ((HIGH_MODE, "high-entropy"), (OTHER_MODE, "other")):
        arm = rows[rows["mode"] == mode]
        drawn = arm[arm["token_changed"] == 1]
        out[f"{label} positions resampled"] = float(len(arm))
        out[f"answers changed, {label} positions"] = _rate(arm["changed"])
        out[f"token changed, {label} positions"] = _rate(arm["token_changed"])
        out[f"answers changed when the token changed, {label}"] = _rate(drawn["changed"])
        out[f"accuracy after resampling, {label}"] = _rate(arm["correct"])
    control = rows[rows["mode"] == NULL_MODE]
    out["control: answers changed with nothing resampled"] = _rate(control["changed"])
    return out


def change_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Answer-change rate per arm and tenth of the chain (the plot's right panel)."""
    labels = {HIGH_MODE: "high-entropy", OTHER_MODE: "other", NULL_MODE: "control"}
    if rows.empty:
        return pd.DataFrame(columns=TABLE_COLUMNS)
    bins = np.clip(np.floor(rows["where"].to_numpy(dtype=float) * POSITION_BINS), 0, 9)
    frame = rows.assign(x=(bins + 0.5) / POSITION_BINS, series=rows["mode"].map(labels))
    grouped = frame.groupby(["series", "x"], sort=True)["changed"].agg(["mean", "size"])
    out = grouped.reset_index().rename(columns={"mean": "y", "size": "n"})
    return out.assign(panel="change", n=out["n"].astype(float))[TABLE_COLUMNS]


# -- the experiment ---------------------------------------------------------------------------


class ForkItem(RecordedChain):
    """One recorded greedy chain to resample: one entropy per token, at least
    ``MIN_CHAIN_TOKENS`` of them."""

    def usable(self) -> bool:
        return MIN_CHAIN_TOKENS <= len(self.entropies) == self.tokens


@dataclass(frozen=True)
class Answer:
    """What one continuation answered and what it cost."""

    extracted: str | None
    correct: bool
    thinking_tokens: int | None
    answer_tokens: int | None
    generated_tokens: int
    natural: bool | None
    answer_prob: float | None


class ReplayMismatch(Exception):
    """The backend does not reproduce the recorded chain (another model, build or prompt)."""


def pick_positions(
    entropies: Sequence[float],
    candidates: Sequence[int],
    positions: int,
    rng: np.random.Generator,
) -> list[tuple[int, int]]:
    """Up to ``positions`` (high, other) pairs: high = entropy strictly above the candidates'
    80th percentile, other = the rest; each high matched to a random unused other position in
    its tenth of the chain (the nearest tenth with one left otherwise). Ascending by high."""
    chosen = np.asarray(candidates, dtype=np.int64)
    if len(chosen) < 2:
        return []
    values = np.asarray(entropies, dtype=np.float64)[chosen]
    cut = np.quantile(values, 1 - TOP_SHARE)
    high = chosen[values > cut]
    other = chosen[values <= cut]
    if len(high) == 0 or len(other) == 0:
        return []
    n_tokens = len(entropies)

    def tenth(position: int) -> int:
        return min(POSITION_BINS - 1, position * POSITION_BINS // n_tokens)

    free: dict[int, list[int]] = {}
    for position in other:
        free.setdefault(tenth(int(position)), []).append(int(position))
    picked = sorted(int(p) for p in rng.choice(high, size=min(positions, len(high)), replace=False))
    pairs: list[tuple[int, int]] = []
    for position in picked:
        bins = sorted(
            (b for b, left in free.items() if left), key=lambda b: (abs(b - tenth(position)), b)
        )
        if not bins:
            break
        pool = free[bins[0]]
        pairs.append((position, pool.pop(int(rng.integers(len(pool))))))
    return pairs


@dataclass(frozen=True)
class ForkingExperiment:
    """Resample one token at high-entropy and matched other positions of greedy chains.

    ``positions`` pairs per chain, ``seed`` for the chain order, the positions and the draws;
    ``temperature`` / ``top_p`` the draw of the resampled token; ``reserve`` the forced
    answer's tokens (the sweep's).
    """

    positions: int = DEFAULT_POSITIONS
    seed: int = 0
    temperature: float = TEMPERATURE
    top_p: float = TOP_P
    reserve: int = 16

    claim_id: ClassVar[str] = CLAIM_ID

    def __post_init__(self) -> None:
        if self.positions < 1:
            raise InputError(f"positions must be >= 1, got {self.positions}")
        if not (self.temperature > 0 and 0 < self.top_p <= 1):
            raise InputError("resampling needs temperature > 0 and top_p in (0, 1]")

    @property
    def settings(self) -> Mapping[str, Any]:
        from ponder.budgets.prompts import prompt_version

        return {
            "positions": self.positions,
            "seed": self.seed,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "reserve": self.reserve,
            "top_share": TOP_SHARE,
            # rows of runs that skipped the continuation of unchanged tokens are not comparable
            "continue_unchanged": True,
            "prompts": prompt_version(),
        }

    def check_backend(self, backend: Backend) -> None:
        require_prefix_continuation(backend, "the forking-tokens experiment needs a chain")

    def items(self, data: ClaimData, model: str) -> list[ForkItem]:
        """The model's recorded greedy chains with entropies, one per problem, in a seeded
        order interleaved by difficulty band (so a partial run covers every band)."""
        needs = f"per-token entropies, at least {MIN_CHAIN_TOKENS} tokens and its problem text"
        return greedy_items(data, model, ForkItem, ForkItem.usable, seed=self.seed, needs=needs)

    async def run_item(self, backend: Backend, item: ForkItem) -> list[Row]:
        from ponder.backends import BackendError

        try:
            prefixes = await self._replay(backend, item)
        except ReplayMismatch as exc:
            raise BackendError(str(exc), retryable=False) from None
        rng = np.random.default_rng(seed_of(self.seed, "positions", item.chain_id))
        pairs = pick_positions(item.entropies, _candidates(item, prefixes), self.positions, rng)
        if not pairs:
            raise BackendError(f"chain {item.chain_id}: no matched positions", retryable=False)
        rows: list[Row] = []
        for high, other in pairs:
            for mode, position in ((HIGH_MODE, high), (OTHER_MODE, other)):
                seed = seed_of(self.seed, item.chain_id, mode, position)
                drawn = await self._resample(backend, item, prefixes, position, seed)
                answer, token, changed = drawn
                rows.append(self._row(item, mode, position, answer, token, changed, seed))
        control = pairs[int(rng.integers(len(pairs)))][0]
        answer = await self._continue(backend, item, prefixes[control], force_now=False)
        rows.append(self._row(item, NULL_MODE, control, answer, None, False, None))
        return rows

    # -- steps of one item -------------------------------------------------------------------

    async def _replay(self, backend: Backend, item: ForkItem) -> list[str]:
        """The text of the chain's first k tokens for every k, by greedy replay token by
        token (the Chain API has no tokenizer); it must reproduce the recorded text."""
        from ponder.backends import Sampling

        chain = await backend.open_chain(think_messages(item.problem_text), Sampling(0.0))
        prefixes = [""]
        try:
            while chain.tokens < item.tokens and not chain.finished:
                segment = await chain.extend(1)
                if segment.tokens == 0:
                    break
                prefixes.append(chain.text)
        finally:
            await chain.aclose()
        for k, prefix in enumerate(prefixes):
            if not item.text.startswith(prefix):
                raise ReplayMismatch(
                    f"chain {item.chain_id}: the greedy replay differs from the recorded chain "
                    f"at token {k} (another model, build or prompt than the one that recorded it)"
                )
        if len(prefixes) != item.tokens + 1 or prefixes[-1] != item.text:
            raise ReplayMismatch(
                f"chain {item.chain_id}: the greedy replay has {len(prefixes) - 1} tokens, the "
                f"recorded chain {item.tokens}"
            )
        return prefixes

    async def _resample(
        self, backend: Backend, item: ForkItem, prefixes: Sequence[str], position: int, seed: int
    ) -> tuple[Answer, str, bool]:
        """Draw the token at ``position``, continue greedily and force the answer; returns
        the answer, the drawn token's text and whether it differs from the recorded one."""
        from ponder.backends import Sampling

        chain = await backend.open_chain(
            think_messages(item.problem_text), Sampling(self.temperature, self.top_p, seed)
        )
        try:
            await chain.append(prefixes[position])
            segment = await chain.extend(1)
            drawn = chain.text
        finally:
            await chain.aclose()
        ended = segment.tokens == 0 and segment.finished
        # an unchanged token is continued too: see the module docstring (noise floor)
        text = prefixes[position] if ended else drawn
        answer = await self._continue(backend, item, text, force_now=ended)
        token = "<end>" if ended else segment.text
        changed = ended or drawn != prefixes[position + 1]
        return replace(answer, generated_tokens=answer.generated_tokens + 1), token, changed

    async def _continue(
        self, backend: Backend, item: ForkItem, text: str, *, force_now: bool
    ) -> Answer:
        """Greedy from ``text`` up to the chain's recorded budget, then the sweep's forced
        answer (or at once when the drawn token ended the chain)."""
        budget = None if force_now else item.cap
        forced = await force_answer(backend, item, text, reserve=self.reserve, budget=budget)
        rung = forced.rung
        return Answer(
            extracted=forced.graded.extracted,
            correct=forced.graded.match,
            thinking_tokens=rung.thinking_tokens,
            answer_tokens=rung.answer_tokens,
            generated_tokens=max(0, rung.thinking_tokens - forced.appended) + rung.answer_tokens,
            natural=rung.natural,
            answer_prob=rung.answer_prob,
        )

    def _row(
        self,
        item: ForkItem,
        mode: str,
        position: int,
        answer: Answer,
        token: str | None,
        token_changed: bool,
        seed: int | None,
    ) -> Row:
        entropy = item.entropies[position]
        changed = answer_key(answer.extracted) != answer_key(item.original_extracted)
        extra = {
            "position": position,
            "entropy": entropy,
            "drawn_token": token,
            "token_changed": token_changed,
            "original_answer": item.original_extracted,
            "answer_changed": changed,
            "seed": seed,
            "temperature": self.temperature if seed is not None else 0.0,
            "top_p": self.top_p if seed is not None else 1.0,
        }
        return outcome_row(
            dataset=item.dataset,
            problem_id=item.problem_id,
            chain_id=item.chain_id,
            mode=mode,
            budget=position,
            extracted=answer.extracted,
            correct=1.0 if answer.correct else 0.0,
            extra=extra,
            reasoning_tokens=answer.thinking_tokens,
            answer_tokens=answer.answer_tokens,
            output_tokens=answer.generated_tokens,
            natural=None if answer.natural is None else int(answer.natural),
            answer_prob=answer.answer_prob,
            entropy_tail=entropy,
        )


def _candidates(item: ForkItem, prefixes: Sequence[str]) -> list[int]:
    """Positions 1 .. n-1 whose token ends before the final ``\\boxed{`` of a chain that
    ended on its own (resampling inside the written answer would change it trivially)."""
    answer_at = item.text.rfind("\\boxed{") if item.finished else -1
    limit = answer_at if answer_at >= 0 else len(item.text) + 1
    return [k for k in range(1, item.tokens) if len(prefixes[k + 1]) <= limit]
