"""Arithmetic word problems whose difficulty is set by construction.

Recorded benchmarks mix many kinds of difficulty; these problems turn a few of them into knobs,
so a sweep can tell "the prompt is harder" apart from "the model is weaker":

- ``steps``: arithmetic operations between the first quantity and the answer (1..8);
- ``digits``: digits of the quantities added or taken away (1..4);
- ``distractors``: sentences with quantities the answer never needs (0..3);
- ``ops``: ``add,sub`` only, or also ``mul,div`` (small factors, always exact).

A ``level`` 1..5 picks ranges of the knobs (:data:`LEVELS`); every problem records the knobs it
got, its program (start value and one ``[op, operand]`` per step) and its seed in its metadata,
so analysis can separate the knobs and anyone can recompute the gold answer. The same seed gives
the same problems byte for byte (``random.Random`` seeded with a string is stable across runs
and platforms).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import pandas as pd

from ponder.errors import InputError
from ponder.types import PROBLEM_FIELDS, Problem

GENERATOR = "arith-v1"
ADD_SUB: tuple[str, ...] = ("add", "sub")
ALL_OPS: tuple[str, ...] = ("add", "sub", "mul", "div")
MAX_STEPS = 8
MAX_DIGITS = 4
MAX_DISTRACTORS = 3
_FACTORS = range(2, 10)  # multipliers and divisors: "3 times as many", "into 4 equal boxes"
_MAX_ATTEMPTS = 1000


@dataclass(frozen=True, slots=True)
class Knobs:
    """One setting of the construction knobs."""

    steps: int
    digits: int
    distractors: int
    ops: tuple[str, ...] = ADD_SUB

    def __post_init__(self) -> None:
        if not 1 <= self.steps <= MAX_STEPS:
            raise ValueError(f"steps must be 1..{MAX_STEPS}, got {self.steps}")
        if not 1 <= self.digits <= MAX_DIGITS:
            raise ValueError(f"digits must be 1..{MAX_DIGITS}, got {self.digits}")
        if not 0 <= self.distractors <= MAX_DISTRACTORS:
            raise ValueError(f"distractors must be 0..{MAX_DISTRACTORS}, got {self.distractors}")
        if not self.ops or any(op not in ALL_OPS for op in self.ops) or "add" not in self.ops:
            raise ValueError(f"ops must include add and be among {ALL_OPS}, got {self.ops}")


@dataclass(frozen=True, slots=True)
class LevelSpec:
    """The knob ranges (inclusive) of one difficulty level."""

    steps: tuple[int, int]
    digits: tuple[int, int]
    distractors: tuple[int, int]
    ops: tuple[str, ...]


# The level table (docs/problems.md). Every range's ends are non-decreasing with the level, so
# a higher level is never easier on any knob. ponder's recorded sweep (sweeps/arith-v1.yaml) was
# generated with this table: changing it changes the problems, so it needs a new GENERATOR
# version.
LEVELS: dict[int, LevelSpec] = {
    1: LevelSpec(steps=(1, 1), digits=(1, 1), distractors=(0, 0), ops=ADD_SUB),
    2: LevelSpec(steps=(2, 2), digits=(1, 2), distractors=(0, 1), ops=ADD_SUB),
    3: LevelSpec(steps=(3, 4), digits=(2, 2), distractors=(1, 1), ops=ALL_OPS),
    4: LevelSpec(steps=(4, 5), digits=(2, 3), distractors=(1, 2), ops=ALL_OPS),
    5: LevelSpec(steps=(6, 8), digits=(3, 4), distractors=(2, 3), ops=ALL_OPS),
}


# --- story material -------------------------------------------------------------------------
# Names carry their pronouns; themes carry what is counted and the verbs that change it. No
# template contains a digit, so every number in a text is a quantity of the program or a
# distractor (the tests rely on it).

_NAMES: tuple[tuple[str, str, str], ...] = (
    ("Ana", "she", "her"),
    ("Ben", "he", "his"),
    ("Chloe", "she", "her"),
    ("Diego", "he", "his"),
    ("Emma", "she", "her"),
    ("Farid", "he", "his"),
    ("Grace", "she", "her"),
    ("Hiro", "he", "his"),
    ("Ines", "she", "her"),
    ("Jamal", "he", "his"),
    ("Kiri", "she", "her"),
    ("Liam", "he", "his"),
    ("Maya", "she", "her"),
    ("Noah", "he", "his"),
    ("Olga", "she", "her"),
    ("Pedro", "he", "his"),
    ("Rosa", "she", "her"),
    ("Sami", "he", "his"),
    ("Tara", "she", "her"),
    ("Victor", "he", "his"),
)


@dataclass(frozen=True, slots=True)
class _Theme:
    name: str
    items: str  # plural noun of what is counted
    ownable: bool  # "Tom keeps 7 <items> of his own" reads well (not for passengers)
    other_items: tuple[str, ...]  # things a distractor may count instead
    start: tuple[str, ...]
    add: tuple[str, ...]
    sub: tuple[str, ...]
    question: tuple[str, ...]


_THEMES: tuple[_Theme, ...] = (
    _Theme(
        "stickers",
        "stickers",
        True,
        ("pencils", "erasers", "comic books"),
        (
            "{N} has {n} stickers in {p} album.",
            "{N} starts the month with {n} stickers.",
        ),
        (
            "{N} buys {n} more stickers at the shop.",
            "A classmate gives {N} {n} stickers.",
            "{S} wins {n} stickers in a school contest.",
        ),
        (
            "{N} gives {n} stickers to {O}.",
            "{S} uses {n} stickers to decorate a notebook.",
            "{S} trades away {n} stickers.",
        ),
        (
            "How many stickers does {N} have now?",
            "How many stickers are in {N}'s album at the end?",
        ),
    ),
    _Theme(
        "bakery",
        "cookies",
        True,
        ("cakes", "loaves of bread", "muffins"),
        (
            "A bakery has {n} cookies on its shelves in the morning.",
            "{N} bakes {n} cookies for the bakery's counter.",
        ),
        (
            "The baker takes {n} more cookies out of the oven.",
            "A delivery brings {n} cookies to the counter.",
            "{N} bakes another {n} cookies.",
        ),
        (
            "Customers buy {n} cookies.",
            "{N} packs {n} cookies for a party order, and they leave the shop.",
            "{n} cookies are sold before noon.",
        ),
        (
            "How many cookies does the bakery have now?",
            "How many cookies does the bakery have left?",
        ),
    ),
    _Theme(
        "bus",
        "passengers",
        False,
        ("seats", "windows", "bags"),
        (
            "A bus leaves the station with {n} passengers on board.",
            "{N} drives a bus that starts its route with {n} passengers.",
        ),
        (
            "At the next stop, {n} people get on.",
            "{n} more passengers board at the market.",
            "At the school stop, {n} students climb aboard.",
        ),
        (
            "At the next stop, {n} people get off.",
            "{n} passengers leave the bus at the park.",
            "At the station, {n} riders step off.",
        ),
        (
            "How many passengers are on the bus now?",
            "How many people are riding the bus at the end?",
        ),
    ),
    _Theme(
        "savings",
        "dollars",
        True,
        ("coins in a jar", "gift cards", "stamps"),
        (
            "{N} has {n} dollars saved in a piggy bank.",
            "{N} opens a savings account with {n} dollars.",
        ),
        (
            "{S} earns {n} dollars walking dogs.",
            "{N}'s aunt gives {o} {n} dollars for a birthday.",
            "{S} sells an old bike for {n} dollars and saves the money.",
        ),
        (
            "{S} spends {n} dollars on a book.",
            "{S} pays {n} dollars for a concert ticket.",
            "{N} lends {n} dollars to {O}.",
        ),
        (
            "How many dollars does {N} have now?",
            "How much money, in dollars, does {N} have left?",
        ),
    ),
    _Theme(
        "farm",
        "eggs",
        True,
        ("cows", "goats", "ducks"),
        (
            "{N}'s farm has {n} eggs in the storeroom.",
            "On Monday, {N} collects {n} eggs from the hens.",
        ),
        (
            "The hens lay {n} more eggs.",
            "{N} collects another {n} eggs from the barn.",
            "A neighbor brings over {n} eggs.",
        ),
        (
            "{N} sells {n} eggs at the market.",
            "{n} eggs crack and are thrown away.",
            "{S} uses {n} eggs to make omelets.",
        ),
        (
            "How many eggs does {N} have now?",
            "How many eggs are left on the farm?",
        ),
    ),
    _Theme(
        "library",
        "books",
        True,
        ("magazines", "maps", "chairs"),
        (
            "A school library has {n} books on one shelf.",
            "{N} looks after a reading room that holds {n} books.",
        ),
        (
            "The library receives a donation of {n} books.",
            "{N} adds {n} new books to the shelf.",
            "Students return {n} books.",
        ),
        (
            "Students borrow {n} books.",
            "{N} removes {n} worn-out books.",
            "{n} books are sent to another school.",
        ),
        (
            "How many books are on the shelf now?",
            "How many books does the library have on that shelf at the end?",
        ),
    ),
)

# Steps that multiply or divide the running quantity; {items} is the theme's noun.
_MUL: tuple[str, ...] = (
    "By the end of the week there are {k} times as many {items} as before.",
    "Then the number of {items} grows to {k} times what it was.",
    "After a busy day, the count of {items} is {k} times as large.",
)
_DIV: tuple[str, ...] = (
    "Then the {items} are split into {k} equal groups, and only one of those groups remains.",
    "The {items} are divided equally into {k} parts, and all parts but one are taken away.",
    "After that, only one of {k} equal shares of the {items} is left.",
)
# Sentences with quantities the answer never needs: {d} is the irrelevant number, a quantity
# of the problem's size ("q") or a small one where a large one would read oddly ("small").
_DISTRACT: tuple[tuple[str, str], ...] = (
    ("{O} has {d} {other} at home.", "q"),
    ("{N} also owns {d} {other}, which are not part of this count.", "q"),
    ("The building next door has {d} windows.", "q"),
    ("{O} keeps {d} {items} of {op} own, separate from these.", "q"),
    ("It takes {N} {d} minutes to walk to the park.", "small"),
    ("A shop down the street sells {d} {other} each week.", "q"),
    ("{O} is {d} years old.", "small"),
)
# How often each op is tried first when the knobs allow it: stories are mostly additions and
# removals, with the occasional scaling.
_WEIGHTS = {"add": 3, "sub": 3, "mul": 1, "div": 1}


@dataclass(frozen=True, slots=True)
class _Built:
    text: str
    start: int
    program: list[tuple[str, int]]
    distractor_values: list[int]
    theme: str


def _number(rng: random.Random, digits: int) -> int:
    """A quantity with exactly `digits` digits (1-digit quantities start at 2)."""
    low = 2 if digits == 1 else 10 ** (digits - 1)
    return rng.randint(low, 10**digits - 1)


def _apply(value: int, op: str, operand: int) -> int:
    if op == "add":
        return value + operand
    if op == "sub":
        return value - operand
    if op == "mul":
        return value * operand
    return value // operand


def _choose_step(
    rng: random.Random, value: int, knobs: Knobs, ceiling: int
) -> tuple[str, int] | None:
    """One feasible step: never below zero, division exact, values under `ceiling`."""
    first = rng.choices(knobs.ops, weights=[_WEIGHTS[op] for op in knobs.ops])[0]
    rest = [op for op in knobs.ops if op != first]
    rng.shuffle(rest)
    for op in [first, *rest]:
        if op == "add":
            operand = _number(rng, knobs.digits)
            if value + operand < ceiling:
                return op, operand
        elif op == "sub":
            low = 2 if knobs.digits == 1 else 10 ** (knobs.digits - 1)
            high = min(10**knobs.digits - 1, value - 1)  # something is always left
            if high >= low:
                return op, rng.randint(low, high)
        elif op == "mul":
            factors = [k for k in _FACTORS if value * k < ceiling]
            if factors and value > 0:
                return op, rng.choice(factors)
        else:
            factors = [k for k in _FACTORS if value % k == 0 and value // k >= 2]
            if factors:
                return op, rng.choice(factors)
    return None


def _program(rng: random.Random, knobs: Knobs) -> tuple[int, list[tuple[str, int]]]:
    """Start value and steps; the mix is retried until it uses a multiplicative op whenever
    the knobs allow one, so `ops` means what the metadata says."""
    ceiling = 10 ** (knobs.digits + 1)
    for _ in range(_MAX_ATTEMPTS):
        start = _number(rng, knobs.digits)
        value, steps = start, []
        for _ in range(knobs.steps):
            step = _choose_step(rng, value, knobs, ceiling)
            if step is None:
                break
            steps.append(step)
            value = _apply(value, *step)
        if len(steps) < knobs.steps:
            continue
        used = {op for op, _ in steps}
        if "mul" in knobs.ops and knobs.steps >= 2 and not used & {"mul", "div"}:
            continue
        if knobs.steps >= 2 and {"sub", "div"} & set(knobs.ops) and not used & {"sub", "div"}:
            continue  # a story that only grows is too easy to pattern-match
        return start, steps
    raise RuntimeError(f"no program found for {knobs}")  # pragma: no cover - never seen


def _build(rng: random.Random, knobs: Knobs) -> _Built:
    theme = rng.choice(_THEMES)
    (name, subj, poss), (other, _, other_poss) = rng.sample(_NAMES, 2)
    start, program = _program(rng, knobs)

    def fill(template: str, **extra: object) -> str:
        text = template.format(
            N=name,
            S=subj.capitalize(),
            p=poss,
            o="her" if subj == "she" else "him",
            O=other,
            op=other_poss,
            items=theme.items,
            **extra,
        )
        return text[0].upper() + text[1:]

    decks: dict[str, list[str]] = {}

    def draw(op: str, templates: Sequence[str]) -> str:
        """Templates without repeats within a story until all of an op's are used."""
        if not decks.get(op):
            decks[op] = rng.sample(list(templates), len(templates))
        return decks[op].pop()

    sentences = [fill(rng.choice(theme.start), n=start)]
    for op, operand in program:
        if op == "add":
            sentences.append(fill(draw(op, theme.add), n=operand))
        elif op == "sub":
            sentences.append(fill(draw(op, theme.sub), n=operand))
        elif op == "mul":
            sentences.append(fill(draw(op, _MUL), k=operand))
        else:
            sentences.append(fill(draw(op, _DIV), k=operand))
    question = fill(rng.choice(theme.question))  # drawn before the distractors: adding
    # distractors to a seed's story then changes nothing else in it
    marks: list[int | None] = [None] * len(sentences)  # a distractor's number, by position
    fitting = [d for d in _DISTRACT if theme.ownable or "{items}" not in d[0]]
    for template, kind in rng.sample(fitting, knobs.distractors):
        value = rng.randint(5, 59) if kind == "small" else _number(rng, knobs.digits)
        # Anywhere after the first sentence, so the story still opens with its quantity.
        at = rng.randint(1, len(sentences))
        sentences.insert(at, fill(template, d=value, other=rng.choice(theme.other_items)))
        marks.insert(at, value)
    values = [value for value in marks if value is not None]  # in text order
    sentences.append(question)
    return _Built(" ".join(sentences), start, program, values, theme.name)


def problem_seed(seed: int, level: int, index: int, attempt: int = 0) -> int:
    """The seed of one problem, derived from the set's seed and its place (stable, 63 bits)."""
    key = f"{GENERATOR}:{seed}:{level}:{index}:{attempt}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") >> 1


def draw_knobs(rng: random.Random, level: int) -> Knobs:
    """The knobs of one problem of `level`, drawn uniformly within the level's ranges."""
    spec = LEVELS[level]
    return Knobs(
        steps=rng.randint(*spec.steps),
        digits=rng.randint(*spec.digits),
        distractors=rng.randint(*spec.distractors),
        ops=spec.ops,
    )


def make_problem(
    knobs: Knobs,
    seed: int,
    *,
    dataset: str = "arith",
    problem_id: str | None = None,
    level: int | None = None,
    extra: dict[str, Any] | None = None,
) -> Problem:
    """One problem with exactly these knobs, from its own seed (for studies of one knob)."""
    rng = random.Random(f"{GENERATOR}:{seed}")
    built = _build(rng, knobs)
    gold = evaluate_program(built.start, built.program)
    metadata: dict[str, Any] = {
        "generator": GENERATOR,
        "problem_seed": seed,
        "steps": knobs.steps,
        "digits": knobs.digits,
        "distractors": knobs.distractors,
        "ops": ",".join(knobs.ops),
        "theme": built.theme,
        "start": built.start,
        "program": [[op, operand] for op, operand in built.program],
        "distractor_values": built.distractor_values,
        **(extra or {}),
    }
    return Problem(
        dataset=dataset,
        problem_id=problem_id or f"K{knobs.steps}{knobs.digits}{knobs.distractors}-{seed}",
        text=built.text,
        gold=str(gold),
        level=level,
        subject=",".join(knobs.ops),
        metadata=metadata,
    )


def evaluate_program(start: int, program: Iterable[Sequence[Any]]) -> int:
    """The answer of a program, in exact rational arithmetic; refuses a negative or
    fractional value at any step (a story cannot give away what it does not have)."""
    value = Fraction(start)
    for op, operand in program:
        if op == "add":
            value += operand
        elif op == "sub":
            value -= operand
        elif op == "mul":
            value *= operand
        elif op == "div":
            value /= operand
        else:
            raise ValueError(f"unknown op {op!r}")
        if value < 0 or value.denominator != 1:
            raise ValueError(f"step {op} {operand} gives {value}")
    return int(value)


def _parse_levels(levels: Iterable[int]) -> tuple[int, ...]:
    chosen = tuple(levels)
    if not chosen:
        raise InputError("no levels given; levels are 1..5")
    for level in chosen:
        if isinstance(level, bool) or not isinstance(level, int) or level not in LEVELS:
            raise InputError(f"level {level!r}: levels are 1..5")
    if len(set(chosen)) != len(chosen):
        raise InputError(f"levels {list(chosen)}: each level once")
    return chosen


def generate_problems(
    levels: Iterable[int] = (1, 2, 3, 4, 5),
    per_level: int = 32,
    seed: int = 0,
    dataset: str = "arith",
) -> list[Problem]:
    """`per_level` problems of each level, ids `L<level>-<index>` (`L3-017`), texts unique.

    Problem `L3-017` depends only on (seed, level 3, index 17): asking for more problems or
    other levels never changes the ones already asked for, except when a text would repeat an
    earlier one of the set (then the next attempt's seed is used, and recorded).
    """
    chosen = _parse_levels(levels)
    if isinstance(per_level, bool) or not isinstance(per_level, int) or per_level < 1:
        raise InputError(f"per_level must be a positive integer, got {per_level!r}")
    if not dataset.strip():
        raise InputError("dataset name is empty")
    width = max(3, len(str(per_level - 1)))
    problems: list[Problem] = []
    seen: set[str] = set()
    for level in chosen:
        for index in range(per_level):
            for attempt in range(_MAX_ATTEMPTS):
                own = problem_seed(seed, level, index, attempt)
                knobs = draw_knobs(random.Random(f"{GENERATOR}:knobs:{own}"), level)
                problem = make_problem(
                    knobs,
                    own,
                    dataset=dataset,
                    problem_id=f"L{level}-{index:0{width}d}",
                    level=level,
                    extra={"seed": seed, "index": index, "attempt": attempt},
                )
                assert problem.text is not None
                if problem.text not in seen:
                    break
            else:  # pragma: no cover - 1000 repeats would mean a broken generator
                raise RuntimeError(f"no unique text for level {level} index {index}")
            seen.add(problem.text)
            problems.append(problem)
    return problems


def problems_frame(problems: Sequence[Problem]) -> pd.DataFrame:
    """Problems as a frame with the store's problem columns (like the problem-set loaders)."""
    records = [
        {
            "dataset": p.dataset,
            "problem_id": p.problem_id,
            "text": p.text,
            "gold": p.gold,
            "level": p.level,
            "subject": p.subject,
            "metadata_json": p.metadata_json(),
        }
        for p in problems
    ]
    frame = pd.DataFrame.from_records(records, columns=list(PROBLEM_FIELDS))
    return frame.astype(object).where(pd.notna(frame), None)


def generate_frame(
    levels: Iterable[int] = (1, 2, 3, 4, 5),
    per_level: int = 32,
    seed: int = 0,
    dataset: str = "arith",
) -> pd.DataFrame:
    """`generate_problems` as a frame with the store's problem columns."""
    return problems_frame(generate_problems(levels, per_level, seed, dataset))


def problem_record(problem: Problem) -> dict[str, Any]:
    """The JSONL record of a problem: dataset, problem_id, text, gold, level, metadata."""
    return {
        "dataset": problem.dataset,
        "problem_id": problem.problem_id,
        "text": problem.text,
        "gold": problem.gold,
        "level": problem.level,
        "metadata": problem.metadata,
    }


def write_jsonl(problems: Sequence[Problem], path: Path) -> None:
    """Write one JSON object per line (keys in a fixed order, so the bytes are reproducible)."""
    lines = [json.dumps(problem_record(p), ensure_ascii=False) for p in problems]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def read_problems_jsonl(path: Path) -> list[Problem]:
    """Read problems written by :func:`write_jsonl` (or by hand in the same shape)."""
    from ponder.tables import read_jsonl

    table = read_jsonl(path)
    table.require(["problem_id", "text", "gold"])
    levels = (
        table.number("level", allow_missing=True, integer=True, minimum=1)
        if "level" in table.frame.columns
        else None
    )
    problems = []
    for i, row in enumerate(table.frame.to_dict("records")):
        for column in ("problem_id", "text", "gold"):
            if not str(row[column]).strip():
                raise table.fail(i, column, "empty value")
        metadata: dict[str, Any] = {}
        if str(row.get("metadata", "")).strip():
            try:
                loaded = json.loads(row["metadata"])
            except json.JSONDecodeError:
                loaded = None
            if not isinstance(loaded, dict):
                raise table.fail(i, "metadata", "metadata must be a JSON object")
            metadata = loaded
        level = None if levels is None or pd.isna(levels.iloc[i]) else int(levels.iloc[i])
        problems.append(
            Problem(
                dataset=str(row.get("dataset") or path.stem),
                problem_id=str(row["problem_id"]),
                text=str(row["text"]),
                gold=str(row["gold"]),
                level=level,
                subject=str(metadata.get("ops")) if "ops" in metadata else None,
                metadata=metadata,
            )
        )
    return problems
