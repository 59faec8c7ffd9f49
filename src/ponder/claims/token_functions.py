"""Claim 9: not all reasoning tokens matter equally.

Two parts. The descriptive part tags the word pieces of recorded chains by their function
(computation, restatement of the problem, meta-discourse, other) with a fixed, documented
tagger (:func:`tag_pieces`, no model) and reports each function's share per model. The test
needs a model (:class:`AblationExperiment`, run through ``ponder.claims.experiments``): a
recorded greedy chain is re-fed with one function's pieces removed, or with as many
computation pieces removed at random, and the answer is forced with the sweep's cue. If
meta-discourse (or restatement) carries little of the reasoning, removing it keeps the
chain's answer more often than removing the same number of computation pieces.

Why the chain is cut before its concluding sentence: a chain that ended on its own writes
its answer (``\\boxed{63}``) at the end, and a forced answer after that would only copy it.
The cut text (the reasoning) is what every arm edits and what the tagger describes.

Rows (modes ``ablate-none`` / ``ablate-meta`` / ``ablate-restate`` / ``ablate-compute``,
budget = pieces removed, ``chain_id`` = the recorded chain, ``answer_prob`` = the forced
answer's probability) hold the forced answer. Computation rows are keyed by how many pieces
they remove (``sample_idx`` = the random draw), so one set serves the meta and the
restatement arm when both remove the same number; the check pairs each arm with the
computation rows of its chain at its own budget. The control (``ablate-none``) re-feeds the
cut chain unchanged: what it changes comes from cutting and re-tokenizing, not from an edit.

The probability of the recorded answer: the Chain API gives the probability of the answer it
generated (greedy), not of a given one. When the forced answer is the recorded one, that is
its probability; when it is another, the recorded answer's probability is at most 1 - p (the
two are different completions) and at least 0. Rows store p; the check reports both bounds.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
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
    problem_texts,
    same_answer,
)
from ponder.claims.data import ClaimData
from ponder.claims.experiments import Row, outcome_row, require_prefix_continuation, seed_of
from ponder.errors import InputError

if TYPE_CHECKING:
    from ponder.backends import Backend

CLAIM_ID = "token-functions"
COMPUTE = "computation"
RESTATE = "restatement"
META = "meta-discourse"
OTHER = "other"
CATEGORIES = (COMPUTE, RESTATE, META, OTHER)

NONE_MODE = "ablate-none"
META_MODE = "ablate-meta"
RESTATE_MODE = "ablate-restate"
COMPUTE_MODE = "ablate-compute"
ABLATE_MODES = (NONE_MODE, META_MODE, RESTATE_MODE, COMPUTE_MODE)
# The tested categories and the mode that removes each.
TESTED: tuple[tuple[str, str], ...] = ((META, META_MODE), (RESTATE, RESTATE_MODE))
# The recorded chains the test edits: greedy ones, so each problem has one reference answer.
SOURCE_MODE = GREEDY_MODE

# Removing a category should keep the answer at least this much more often than removing as
# many computation pieces (points) to matter: a smaller gap would not tell a user which
# tokens a shorter chain can drop.
MIN_EFFECT = 5.0
# Random computation draws per removal count (their kept rates are averaged).
DEFAULT_DRAWS = 2
# Chains with fewer pieces before their conclusion are too short to edit meaningfully.
MIN_PIECES = 20
# A restatement is a run of at least this many consecutive words that also occur
# consecutively in the problem text (shorter runs are common phrases: "of the", "is 9").
RESTATE_SPAN = 3

# Meta-discourse: words and phrases that manage the reasoning (plan, signpost, hesitate,
# check) rather than state its content. Matched on whole normalised words, longest first.
META_PHRASES: tuple[str, ...] = (
    # hesitation and self-monitoring
    "wait",
    "hmm",
    "hmmm",
    "oh",
    "oops",
    "okay",
    "ok",
    "alright",
    "well",
    "actually",
    "i think",
    "i guess",
    "it seems",
    "on second thought",
    "hold on",
    # checking
    "check",
    "checking",
    "verify",
    "verifying",
    "double-check",
    "confirm",
    "confirming",
    "make sure",
    "let's see",
    "let me see",
    # planning
    "let me",
    "let's",
    "let us",
    "i need to",
    "we need to",
    "i will",
    "we will",
    "to determine",
    "to find",
    "to solve",
    "step by step",
    "follow these steps",
    "break it down",
    "in detail",
    # signposts and connectives
    "so",
    "now",
    "first",
    "firstly",
    "next",
    "finally",
    "therefore",
    "thus",
    "hence",
    "however",
    "alternatively",
    "again",
    "recall",
    "note that",
    "notice that",
    "in other words",
    "in summary",
    "to summarize",
    "in conclusion",
)
# First word -> the phrases it starts, longest first.
_META_BY_FIRST: dict[str, list[tuple[str, ...]]] = {}
for _phrase in sorted((tuple(p.split()) for p in META_PHRASES), key=lambda p: -len(p)):
    _META_BY_FIRST.setdefault(_phrase[0], []).append(_phrase)
# The tagger's identity: rows made by another tagger never share a run with these.
TAGGER_VERSION = hashlib.sha256(
    json.dumps([list(META_PHRASES), RESTATE_SPAN, 1]).encode()
).hexdigest()[:8]

_PIECE = re.compile(r"(\s*)(\S+)")
_EDGE = re.compile(r"^[^\w']+|[^\w']+$")
_DIGIT = re.compile(r"\d")
_LETTER = re.compile(r"[^\W\d_]")
_OPERATOR = re.compile(r"[=+\-*/^×÷<>≈≤≥%]")
# Layout rather than content: list markers and the delimiters of a displayed formula.
_ENUMERATOR = re.compile(r"^(?:\(?\d{1,2}[.)]|[-*•]|#+)$")
_DELIMITERS = frozenset({"\\[", "\\]", "\\(", "\\)", "$", "$$", "(", ")"})
_MARKUP = re.compile(r"^(?:[*\-#_~`]{2,}|```\w*)$")  # **, ---, ```python
_STEP_NUMBER = re.compile(r"^\d{1,2}:?$")  # the 1 of "Step 1:"
# The sentence that states the final answer starts after the last of these.
_SENTENCE_END = re.compile(r"\n|[.!?](?=\s)")

PROTOCOL = (
    "Pieces: a chain's text (cut before the sentence that holds its final \\boxed{ when it "
    "ended on its own) split at whitespace; punctuation stays with its word. Tags, first "
    f"match wins: restatement = inside a run of >= {RESTATE_SPAN} consecutive words that "
    "occur consecutively in the problem text (case and edge punctuation ignored); other = "
    "list markers and formula delimiters; computation = a piece with a digit, an operator "
    "without letters, or a LaTeX command; meta-discourse = a phrase of the documented "
    "lexicon (wait, let me, let's, check, verify, so, therefore, now, first, ...; "
    "ponder.claims.token_functions.META_PHRASES); other = the rest. Descriptive: each tag's "
    "share of the pieces of every recorded chain, per model. Test, per model, one recorded "
    f"greedy chain ({SOURCE_MODE}) per problem, in a seeded order interleaved by difficulty "
    "band: the cut chain is appended after the prompt (Chain.append) unchanged (control), "
    "and, per tested category, twice with n = min(category pieces, computation pieces) "
    "pieces removed: the category's (all of them, or a random n when it has more) and n "
    f"computation pieces drawn at random (seeded, without replacement; {DEFAULT_DRAWS} "
    "draws by default, averaged). The answer "
    "is then forced at once with the sweep's cue and graded like the sweep's. Kept = the "
    "forced answer equals the recorded chain's final answer after normalize_answer. Effect: "
    "kept rate with the category removed minus kept rate with as many computation pieces "
    "removed (points), per problem then averaged over problems; paired cluster bootstrap "
    "over problems. Supported if the interval is above 0; contradicted if it lies below "
    f"{MIN_EFFECT:g} points."
)

TABLE_COLUMNS = ["panel", "series", "category", "y", "n"]


class TokenFunctions(ChainClaim):
    number: ClassVar[int] = 9
    id: ClassVar[str] = CLAIM_ID
    title: ClassVar[str] = "Token functions: not all reasoning tokens matter equally"
    hypothesis: ClassVar[str] = (
        "Meta-discourse and restatement carry less of the reasoning than computation: "
        "removing either from a chain keeps its forced answer more often than removing the "
        "same number of computation pieces."
    )
    needs: ClassVar[str] = (
        "recorded greedy chains (a live sweep) and the ablation rows of "
        "`ponder experiment token-functions --model MODEL` on them"
    )
    live: ClassVar[bool] = True
    protocol: ClassVar[str] = PROTOCOL
    min_effect: ClassVar[float] = MIN_EFFECT
    panels: ClassVar[tuple[str, str]] = ("shares", "kept")
    panel_height: ClassVar[float] = 3.4
    gap_label: ClassVar[str] = "kept gap"

    def experiment(
        self,
        *,
        draws: int = DEFAULT_DRAWS,
        seed: int = 0,
    ) -> AblationExperiment:
        """The experiment whose rows this claim's check reads."""
        return AblationExperiment(draws=draws, seed=seed)

    def check(self, data: ClaimData) -> list[Finding]:
        profiles = tag_profiles(data)
        rows = ablation_rows(data)
        models = sorted(set(profiles) | set(rows["model"].unique()))
        if not models:
            return [self._refuse(data, f"needs {self.needs}", "all models")]
        findings: list[Finding] = []
        for model in models:
            own = rows[rows["model"] == model]
            profile = profiles.get(model)
            if own.empty:
                command = f"`ponder experiment {self.id} --model {model} --dataset {data.dataset}`"
                reason = (
                    f"no ablation rows for {model}: the tag shares are in the extras; run "
                    f"{command} for the test"
                )
                extras = profile.extras if profile is not None else {}
                table = profile.table if profile is not None else None
                findings.append(self._refuse(data, reason, model, extras=extras, table=table))
                continue
            findings.extend(self._finding(data, model, c, m, own, profile) for c, m in TESTED)
        return findings

    def _draw_panel(self, ax: Any, panel: str, rows: pd.DataFrame) -> None:
        if panel == "shares":
            left = 0.0
            for category in CATEGORIES:
                share = float(rows.loc[rows["category"] == category, "y"].sum())
                ax.barh([0], [100 * share], left=left, label=category)
                left += 100 * share
            ax.set_yticks([0], [str(rows["series"].iloc[0])], fontsize=8)
            ax.set_xlabel("share of the chain's pieces (%)", fontsize=8)
            ax.legend(fontsize=7, frameon=False, ncol=2, loc="upper center")
            ax.set_ylim(-0.6, 1.4)
        else:
            labels = [str(s).replace(" removed", "\nremoved") for s in rows["series"]]
            ax.bar(range(len(rows)), 100 * rows["y"].to_numpy(dtype=float))
            ax.set_xticks(range(len(rows)), labels, fontsize=7)
            ax.set_ylabel("recorded answer kept (%)", fontsize=8)
            ax.set_ylim(0, 105)
        ax.grid(True, axis="x" if panel == "shares" else "y", alpha=0.3)

    # -- findings ----------------------------------------------------------------------------

    def _finding(
        self,
        data: ClaimData,
        model: str,
        category: str,
        mode: str,
        rows: pd.DataFrame,
        profile: TagProfile | None,
    ) -> Finding:
        scope = f"{model}: {category}"
        paired = paired_kept(rows, mode)
        extras = dict(profile.extras) if profile is not None else {}
        extras.update(arm_extras(rows, paired, category))
        tables = [profile.table] if profile is not None else []
        tables.append(kept_table(rows, paired, category))
        table = pd.concat(tables, ignore_index=True)
        n = len(paired)
        if n < data.settings.min_problems:
            command = f"`ponder experiment {self.id} --model {model} --dataset {data.dataset}`"
            reason = (
                f"{n} problems have a {category} ablation paired with computation ablations "
                f"(needs {data.settings.min_problems}): run {command} with more --chains"
            )
            return self._refuse(data, reason, scope, extras=extras, table=table, n_problems=n)
        effect = self._effect(data, paired, category, scope)
        return found(
            self.id,
            data.dataset,
            scope,
            effect,
            n_problems=n,
            protocol=PROTOCOL,
            table=table,
            extras=extras,
            note=_control_note(extras),
        )

    def _effect(self, data: ClaimData, paired: pd.DataFrame, category: str, scope: str) -> Effect:
        gap = 100.0 * (paired["kept"].to_numpy(float) - paired["kept_compute"].to_numpy(float))
        name = f"answer kept rate, {category} removed minus as many computation pieces removed"
        return self._gap_effect(data, gap, scope, name)


def _control_note(extras: Mapping[str, float]) -> str:
    key = "control: answers kept, chain re-fed unchanged"
    return control_note(extras, key, "control (cut chain re-fed unchanged) kept {:.0%} of answers")


# -- the tagger -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Piece:
    """One word piece of a chain: the whitespace before it, its text, and its tag."""

    sep: str
    text: str
    tag: str


def split_pieces(text: str) -> list[tuple[str, str]]:
    """(whitespace before, piece) for every whitespace-separated piece of ``text``."""
    return [(m.group(1), m.group(2)) for m in _PIECE.finditer(text)]


def normal_word(piece: str) -> str:
    """The piece lowercased without edge punctuation or markup ("**So," -> "so")."""
    return _EDGE.sub("", piece.lower().replace("’", "'"))


def _is_layout(piece: str, line_start: bool) -> bool:
    if piece in _DELIMITERS or _MARKUP.match(piece):
        return True
    return line_start and _ENUMERATOR.match(piece) is not None


def _is_computation(piece: str) -> bool:
    if _DIGIT.search(piece):
        return True
    if piece.startswith("\\") and len(piece) > 1 and piece[1].isalpha():
        return True  # a LaTeX command: \times, \frac{a}{b}, \cdot
    return _OPERATOR.search(piece) is not None and _LETTER.search(piece) is None


def _restated(words: Sequence[str], problem_text: str) -> set[int]:
    """Indices of pieces inside a run of >= RESTATE_SPAN words copied from the problem."""
    source = [w for w in (normal_word(p) for _, p in split_pieces(problem_text)) if w]
    grams = {tuple(source[i : i + RESTATE_SPAN]) for i in range(len(source) - RESTATE_SPAN + 1)}
    out: set[int] = set()
    for i in range(len(words) - RESTATE_SPAN + 1):
        gram = tuple(words[i : i + RESTATE_SPAN])
        if all(gram) and gram in grams:
            out.update(range(i, i + RESTATE_SPAN))
    return out


def tag_pieces(text: str, problem_text: str) -> list[Piece]:
    """Tag every piece of a chain's ``text`` (see PROTOCOL for the rules, first match wins)."""
    raw = split_pieces(text)
    words = [normal_word(p) for _, p in raw]
    restated = _restated(words, problem_text)
    tags: list[str | None] = [None] * len(raw)
    for i, (sep, piece) in enumerate(raw):
        line_start = i == 0 or "\n" in sep
        step_number = i > 0 and words[i - 1] == "step" and _STEP_NUMBER.match(piece) is not None
        if i in restated:
            tags[i] = RESTATE
        elif _is_layout(piece, line_start) or step_number:
            tags[i] = OTHER
        elif _is_computation(piece):
            tags[i] = COMPUTE
    i = 0
    while i < len(raw):
        for phrase in _META_BY_FIRST.get(words[i], ()):
            end = i + len(phrase)
            if tuple(words[i:end]) == phrase and all(t is None for t in tags[i:end]):
                tags[i:end] = [META] * len(phrase)
                i = end
                break
        else:
            i += 1
    return [Piece(sep, piece, tag or OTHER) for (sep, piece), tag in zip(raw, tags, strict=True)]


def join_pieces(pieces: Sequence[Piece], drop: frozenset[int] = frozenset()) -> str:
    """The text of ``pieces`` without those at ``drop``; a dropped piece's line break is kept
    (so removing a line's first word does not glue two lines)."""
    out: list[str] = []
    pending = ""
    for i, piece in enumerate(pieces):
        sep = piece.sep if piece.sep.count("\n") >= pending.count("\n") else pending
        if i in drop:
            pending = sep
            continue
        out.append((sep if out else "") + piece.text)
        pending = ""
    return "".join(out)


def cut_before_answer(text: str, finished: bool) -> str:
    """The reasoning of a chain: for a chain that ended on its own, the text before the
    sentence holding its last ``\\boxed{`` (else all of it, as the sweep forced it)."""
    at = text.rfind("\\boxed{") if finished else -1
    if at < 0:
        return text.rstrip()
    ends = [m.end() for m in _SENTENCE_END.finditer(text, 0, at)]
    return text[: ends[-1] if ends else 0].rstrip()


def tag_counts(pieces: Sequence[Piece]) -> dict[str, int]:
    """Pieces per tag (every tag present, zero when absent)."""
    counts = dict.fromkeys(CATEGORIES, 0)
    for piece in pieces:
        counts[piece.tag] += 1
    return counts


# -- the descriptive part ---------------------------------------------------------------------


@dataclass(frozen=True)
class TagProfile:
    """One model's tag shares (extras) and the rows of the plot's left panel."""

    extras: dict[str, float]
    table: pd.DataFrame


def tag_profiles(data: ClaimData) -> dict[str, TagProfile]:
    """Per model with recorded chains: each tag's share of all their pieces (pooled)."""
    chains = data.chains
    if chains is None or chains.empty:
        return {}
    texts = problem_texts(data)
    models = chains["chain_id"].map(chain_models(data, ABLATE_MODES))
    out: dict[str, TagProfile] = {}
    for model, group in chains.groupby(models, sort=True):
        totals = dict.fromkeys(CATEGORIES, 0)
        tagged = 0
        for chain in group.to_dict("records"):
            if not isinstance(chain["text"], str):
                continue
            problem = texts.get(chain["problem_id"])
            cut = cut_before_answer(chain["text"], bool(chain["finished"]))
            pieces = tag_pieces(cut, problem if isinstance(problem, str) else "")
            for tag, count in tag_counts(pieces).items():
                totals[tag] += count
            tagged += 1
        pieces_total = sum(totals.values())
        if pieces_total == 0:
            continue
        extras = {"chains tagged": float(tagged), "pieces": float(pieces_total)}
        extras.update({f"share of pieces: {c}": totals[c] / pieces_total for c in CATEGORIES})
        table = pd.DataFrame(
            {
                "panel": "shares",
                "series": str(model),
                "category": list(CATEGORIES),
                "y": [totals[c] / pieces_total for c in CATEGORIES],
                "n": float(pieces_total),
            }
        )
        out[str(model)] = TagProfile(extras, table[TABLE_COLUMNS])
    return out


# -- reading the experiment's rows ------------------------------------------------------------


def ablation_rows(data: ClaimData) -> pd.DataFrame:
    """The experiment's rows with ``kept`` (the forced answer is the recorded chain's final
    one) and the recorded answer's probability bounds ``prob_low`` / ``prob_high`` (NaN
    when the backend gave none); rows whose chain has no recorded answer are dropped."""
    columns = ["model", "problem_id", "chain_id", "mode", "budget", "sample_idx"]
    empty = pd.DataFrame(columns=[*columns, "kept", "prob_low", "prob_high"])
    rows, mine = experiment_rows(data, CLAIM_ID, ABLATE_MODES)
    if mine.empty:
        return empty
    _, answers = final_answers(rows, mine["chain_id"], ABLATE_MODES)
    original = {c: a for c, a in answers.items() if a is not None}
    mine = mine[mine["chain_id"].isin(original)]
    if mine.empty:
        return empty
    kept = same_answer(mine, original)
    prob = mine["answer_prob"].to_numpy(dtype=float)
    return (
        mine[columns]
        .assign(
            kept=kept,
            prob_low=np.where(kept == 1, prob, np.where(np.isnan(prob), np.nan, 0.0)),
            prob_high=np.where(kept == 1, prob, 1.0 - prob),
        )
        .reset_index(drop=True)
    )


_MEASURES = ["kept", "prob_low", "prob_high"]


def paired_kept(rows: pd.DataFrame, mode: str) -> pd.DataFrame:
    """Per problem: the category arm's measures and those of the computation rows of the
    same chain that removed as many pieces (columns ``kept``, ``kept_compute``, ...)."""
    arm = rows.loc[rows["mode"] == mode, ["problem_id", "chain_id", "budget", *_MEASURES]]
    compute = rows[rows["mode"] == COMPUTE_MODE]
    if arm.empty or compute.empty:
        return pd.DataFrame(columns=[*_MEASURES, *(f"{m}_compute" for m in _MEASURES)])
    matched = compute.groupby(["chain_id", "budget"], as_index=False)[_MEASURES].mean()
    merged = arm.merge(matched, on=["chain_id", "budget"], suffixes=("", "_compute"))
    return merged.groupby("problem_id", sort=True)[
        [*_MEASURES, *(f"{m}_compute" for m in _MEASURES)]
    ].mean()


def _mean(values: pd.Series) -> float:
    return float(values.mean()) if len(values) and values.notna().any() else float("nan")


def arm_extras(rows: pd.DataFrame, paired: pd.DataFrame, category: str) -> dict[str, float]:
    """Secondary figures of one comparison (on its paired problems) and the control."""
    control = rows[rows["mode"] == NONE_MODE]
    mode = dict(TESTED)[category]
    removed = rows.loc[rows["mode"] == mode, "budget"]
    return {
        "control: answers kept, chain re-fed unchanged": _mean(control["kept"]),
        f"answers kept, {category} removed": _mean(paired["kept"]),
        "answers kept, as many computation pieces removed": _mean(paired["kept_compute"]),
        f"pieces removed per chain, {category} (mean)": _mean(removed),
        f"P(recorded answer), {category} removed: lower bound": _mean(paired["prob_low"]),
        f"P(recorded answer), {category} removed: upper bound": _mean(paired["prob_high"]),
        "P(recorded answer), computation removed: lower bound": _mean(paired["prob_low_compute"]),
        "P(recorded answer), computation removed: upper bound": _mean(paired["prob_high_compute"]),
        "P(recorded answer), control": _mean(control["prob_low"]),
    }


def kept_table(rows: pd.DataFrame, paired: pd.DataFrame, category: str) -> pd.DataFrame:
    """The kept rate of the control and of the two compared arms (the plot's right panel)."""
    control = rows.loc[rows["mode"] == NONE_MODE, "kept"]
    arms = [
        ("control", control),
        (f"{category} removed", paired["kept"]),
        ("computation removed", paired["kept_compute"]),
    ]
    return pd.DataFrame(
        {
            "panel": "kept",
            "series": [label for label, _ in arms],
            "category": ["none", category, COMPUTE],
            "y": [_mean(values) for _, values in arms],
            "n": [float(len(values)) for _, values in arms],
        }
    )[TABLE_COLUMNS]


# -- the experiment ---------------------------------------------------------------------------


class AblationItem(RecordedChain):
    """One recorded greedy chain to edit, cut before its conclusion."""

    @property
    def reasoning(self) -> str:
        """The text every arm edits: the chain cut before its concluding sentence."""
        return cut_before_answer(self.text, self.finished)

    def usable(self) -> bool:
        """It has a recorded answer to compare with and at least MIN_PIECES pieces."""
        if answer_key(self.original_extracted) is None:
            return False
        return len(split_pieces(self.reasoning)) >= MIN_PIECES


# (what is drawn, how many, which draw) -> the generator of that draw
DrawRng = Callable[[str, int, int], np.random.Generator]


@dataclass(frozen=True)
class Arm:
    """One edit of a chain: its mode, the pieces it removes, and which random draw it is."""

    mode: str
    drop: frozenset[int]
    draw: int = 0


def ablation_arms(pieces: Sequence[Piece], draws: int, rng_for: DrawRng) -> list[Arm]:
    """The control, each tested category removed, and as many computation pieces removed.

    Both edits of a comparison remove n = min(category pieces, computation pieces): all of
    the category's pieces, or ``draws`` random subsets of n when it outnumbers the
    computation pieces (so no chain drops out of a comparison for being wordy); ``draws``
    random sets of n computation pieces (one set when n is all of them). A category with no
    pieces has no edit. ``rng_for(what, n, draw)`` gives the generator of one draw.
    """
    by_tag: dict[str, list[int]] = {c: [] for c in CATEGORIES}
    for i, piece in enumerate(pieces):
        by_tag[piece.tag].append(i)
    arms = [Arm(NONE_MODE, frozenset())]
    counts: set[int] = set()
    for category, mode in TESTED:
        chosen = by_tag[category]
        n = min(len(chosen), len(by_tag[COMPUTE]))
        if n == 0:
            continue
        arms.extend(Arm(mode, drop, d) for d, drop in _subsets(chosen, n, draws, category, rng_for))
        counts.add(n)
    for n in sorted(counts):
        drawn = _subsets(by_tag[COMPUTE], n, draws, COMPUTE, rng_for)
        arms.extend(Arm(COMPUTE_MODE, drop, d) for d, drop in drawn)
    return arms


def _subsets(
    indices: Sequence[int], n: int, draws: int, what: str, rng_for: DrawRng
) -> list[tuple[int, frozenset[int]]]:
    """(draw, n of ``indices``): all of them once when n is all, else ``draws`` seeded draws."""
    if n == len(indices):
        return [(0, frozenset(indices))]
    pool = np.asarray(indices, dtype=int)
    out = []
    for draw in range(draws):
        picked = rng_for(what, n, draw).choice(pool, size=n, replace=False)
        out.append((draw, frozenset(int(i) for i in picked)))
    return out


@dataclass(frozen=True)
class AblationExperiment:
    """Force the answer of recorded greedy chains with some of their pieces removed.

    ``draws`` random computation edits per removal count; ``seed`` for the chain order and
    the draws; ``reserve`` the forced answer's tokens (the sweep's).
    """

    draws: int = DEFAULT_DRAWS
    seed: int = 0
    reserve: int = 16

    claim_id: ClassVar[str] = CLAIM_ID

    def __post_init__(self) -> None:
        if self.draws < 1:
            raise InputError(f"draws must be >= 1, got {self.draws}")

    @property
    def settings(self) -> Mapping[str, Any]:
        from ponder.budgets.prompts import prompt_version

        return {
            "draws": self.draws,
            "seed": self.seed,
            "reserve": self.reserve,
            "tagger": TAGGER_VERSION,
            "prompts": prompt_version(),
        }

    def check_backend(self, backend: Backend) -> None:
        require_prefix_continuation(backend, "the token-functions experiment needs a chain")

    def items(self, data: ClaimData, model: str) -> list[AblationItem]:
        """The model's recorded greedy chains with an answer, one per problem, in a seeded
        order interleaved by difficulty band."""
        needs = f"a recorded answer, its problem text and at least {MIN_PIECES} pieces"
        return greedy_items(
            data, model, AblationItem, AblationItem.usable, seed=self.seed, needs=needs
        )

    async def run_item(self, backend: Backend, item: AblationItem) -> list[Row]:
        pieces = tag_pieces(item.reasoning, item.problem_text)
        counts = tag_counts(pieces)

        def rng_for(what: str, n: int, draw: int) -> np.random.Generator:
            return np.random.default_rng(seed_of(self.seed, item.chain_id, what, n, draw))

        rows: list[Row] = []
        for arm in ablation_arms(pieces, self.draws, rng_for):
            rows.append(
                await self._force(backend, item, join_pieces(pieces, arm.drop), arm, counts)
            )
        return rows

    async def _force(
        self,
        backend: Backend,
        item: AblationItem,
        text: str,
        arm: Arm,
        counts: Mapping[str, int],
    ) -> Row:
        """Append the edited chain after the prompt and force the answer at once with the
        sweep's cue; the row records it graded like the sweep's."""
        forced = await force_answer(backend, item, text, reserve=self.reserve)
        rung, graded = forced.rung, forced.graded
        kept = answer_key(graded.extracted) == answer_key(item.original_extracted)
        extra = {
            "removed": len(arm.drop),
            "draw": arm.draw,
            "counts": dict(counts),
            "original_answer": item.original_extracted,
            "answer_kept": kept,
            "tagger": TAGGER_VERSION,
        }
        return outcome_row(
            dataset=item.dataset,
            problem_id=item.problem_id,
            chain_id=item.chain_id,
            mode=arm.mode,
            budget=len(arm.drop),
            extracted=graded.extracted,
            correct=1.0 if graded.match else 0.0,
            extra=extra,
            sample_idx=arm.draw,
            reasoning_tokens=rung.thinking_tokens,
            answer_tokens=rung.answer_tokens,
            output_tokens=rung.answer_tokens,
            latency_s=rung.latency_s,
            answer_prob=rung.answer_prob,
            natural=int(rung.natural),
        )
