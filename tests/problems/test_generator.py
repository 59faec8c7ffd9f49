"""The word-problem generator: gold answers recomputed from the story text itself, knobs,
determinism, distractors that are never needed, and the `ponder problems generate` command.

The oracle here reads each sentence with its own keyword table (not the generator's
templates or arithmetic), so a gold answer is only accepted when the text says it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ponder.errors import InputError
from ponder.problems.generator import (
    LEVELS,
    Knobs,
    generate_frame,
    generate_problems,
    make_problem,
    read_problems_jsonl,
    write_jsonl,
)
from ponder.types import PROBLEM_FIELDS, Problem

# --- an independent reader of the stories ---------------------------------------------------

# Phrases that mark each kind of sentence. Every sentence but the first (the start) and the
# last (the question) must match exactly one kind.
_KINDS: dict[str, tuple[str, ...]] = {
    "distractor": (
        r"at home\.$",
        r"not part of this count",
        r"next door has",
        r"separate from these",
        r"minutes to walk",
        r"each week\.$",
        r"years old\.$",
    ),
    "mul": (r"times as many", r"times what it was", r"times as large"),
    "div": (r"equal groups", r"divided equally", r"equal shares"),
    "add": (
        r"\bbuys \d+ more",
        r"classmate gives",
        r"\bwins \d+",
        r"out of the oven",
        r"delivery brings",
        r"bakes another",
        r"people get on",
        r"board at",
        r"climb aboard",
        r"\bearns \d+",
        r"aunt gives",
        r"old bike",
        r"hens lay",
        r"collects another",
        r"brings over",
        r"donation of",
        r"\badds \d+",
        r"students return",
    ),
    "sub": (
        r"gives \d+ stickers to",
        r"\buses \d+",
        r"trades away",
        r"customers buy",
        r"party order",
        r"sold before noon",
        r"get off",
        r"leave the bus",
        r"step off",
        r"\bspends \d+",
        r"\bpays \d+",
        r"\blends \d+",
        r"sells \d+ eggs",
        r"\bcrack\b",
        r"students borrow",
        r"\bremoves \d+",
        r"sent to another",
    ),
}


def _sentences(text: str) -> list[str]:
    return re.split(r"(?<=[.?])\s+", text.strip())


def _numbers(sentence: str) -> list[int]:
    return [int(n) for n in re.findall(r"\d+", sentence)]


def _kind(sentence: str) -> str:
    kinds = [
        kind
        for kind, patterns in _KINDS.items()
        if any(re.search(p, sentence, flags=re.IGNORECASE) for p in patterns)
    ]
    assert len(kinds) == 1, f"sentence reads as {kinds}: {sentence!r}"
    return kinds[0]


def read_story(text: str) -> tuple[int, list[tuple[str, int]], list[int]]:
    """(start, steps, distractor numbers) as the text states them."""
    sentences = _sentences(text)
    assert sentences[-1].endswith("?") and not _numbers(sentences[-1])
    assert not any(s.endswith("?") for s in sentences[:-1])
    (start,) = _numbers(sentences[0])
    steps: list[tuple[str, int]] = []
    distractors: list[int] = []
    for sentence in sentences[1:-1]:
        (number,) = _numbers(sentence)  # one quantity per sentence
        kind = _kind(sentence)
        if kind == "distractor":
            distractors.append(number)
        else:
            steps.append((kind, number))
    return start, steps, distractors


def solve(start: int, steps: list[tuple[str, int]]) -> int:
    """Plain integer arithmetic, asserting every intermediate value is a whole count >= 0."""
    value = start
    for kind, number in steps:
        if kind == "add":
            value = value + number
        elif kind == "sub":
            assert number <= value, "a story takes away more than there is"
            value = value - number
        elif kind == "mul":
            value = value * number
        else:
            assert value % number == 0, "an unequal split"
            value = value // number
        assert value >= 0
    return value


def check_problem(problem: Problem) -> None:
    """The text alone gives the gold; the metadata describes the text."""
    assert problem.text is not None and problem.gold is not None
    start, steps, distractors = read_story(problem.text)
    gold = solve(start, steps)
    assert problem.gold == str(gold)
    meta = problem.metadata
    assert meta["start"] == start
    assert [tuple(step) for step in meta["program"]] == steps
    assert meta["steps"] == len(steps)
    assert meta["distractors"] == len(distractors)
    assert meta["distractor_values"] == distractors  # in text order
    ops = meta["ops"].split(",")
    assert {kind for kind, _ in steps} <= set(ops)
    # Quantities added or taken away, and the start, have exactly `digits` digits.
    for n in [start] + [n for kind, n in steps if kind in ("add", "sub")]:
        assert len(str(n)) == meta["digits"], (n, meta["digits"])
    for kind, n in steps:
        if kind in ("mul", "div"):
            assert 2 <= n <= 9


# --- the oracle itself -------------------------------------------------------------------------


def test_reader_on_a_hand_written_story() -> None:
    text = (
        "Ana has 12 stickers in her album. Ben has 40 pencils at home. Ana gives 5 stickers "
        "to Ben. Then the number of stickers grows to 3 times what it was. "
        "How many stickers does Ana have now?"
    )
    start, steps, distractors = read_story(text)
    assert (start, steps, distractors) == (12, [("sub", 5), ("mul", 3)], [40])
    assert solve(start, steps) == 21


# --- gold answers over thousands of seeds ------------------------------------------------------


def test_gold_recomputed_from_the_text_for_thousands_of_problems() -> None:
    problems = [p for seed in range(400) for p in generate_problems(per_level=1, seed=seed)]
    assert len(problems) == 2000
    for problem in problems:
        check_problem(problem)


def test_every_knob_setting_builds_valid_problems() -> None:
    for steps in range(1, 9):
        for digits in range(1, 5):
            for distractors in range(4):
                for ops in (("add", "sub"), ("add", "sub", "mul", "div")):
                    knobs = Knobs(steps, digits, distractors, ops)
                    for seed in range(3):
                        check_problem(make_problem(knobs, seed))


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**62), level=st.integers(min_value=1, max_value=5))
def test_properties_of_one_level(seed: int, level: int) -> None:
    (problem,) = generate_problems(levels=(level,), per_level=1, seed=seed)
    check_problem(problem)
    gold = int(problem.gold or "x")
    assert gold >= 0 and problem.gold == str(gold)  # an integer, written plainly
    spec = LEVELS[level]
    meta = problem.metadata
    assert spec.steps[0] <= meta["steps"] <= spec.steps[1]
    assert spec.digits[0] <= meta["digits"] <= spec.digits[1]
    assert spec.distractors[0] <= meta["distractors"] <= spec.distractors[1]
    assert meta["ops"] == ",".join(spec.ops)
    assert problem.level == level and meta["seed"] == seed


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(min_value=0, max_value=2**62),
    steps=st.integers(min_value=1, max_value=8),
    digits=st.integers(min_value=1, max_value=4),
    distractors=st.integers(min_value=1, max_value=3),
    all_ops=st.booleans(),
)
def test_distractors_are_never_needed(
    seed: int, steps: int, digits: int, distractors: int, all_ops: bool
) -> None:
    """Dropping the distractor sentences leaves exactly the distractor-free problem of the same
    seed: same story, same gold. So no distractor number can take part in the answer."""
    ops = ("add", "sub", "mul", "div") if all_ops else ("add", "sub")
    with_noise = make_problem(Knobs(steps, digits, distractors, ops), seed)
    clean = make_problem(Knobs(steps, digits, 0, ops), seed)
    assert with_noise.text is not None
    kept = [s for s in _sentences(with_noise.text) if s.endswith("?") or _kind_or_start(s)]
    assert " ".join(kept) == clean.text
    assert with_noise.gold == clean.gold
    assert len(_sentences(with_noise.text)) == len(_sentences(clean.text or "")) + distractors


def _kind_or_start(sentence: str) -> bool:
    """True for every sentence that is not a distractor."""
    try:
        return _kind(sentence) != "distractor"
    except AssertionError:
        return True  # the opening sentence matches no step kind


# --- sets: ids, uniqueness, determinism --------------------------------------------------------


def test_ids_levels_and_unique_texts() -> None:
    problems = generate_problems(per_level=200, seed=3)
    assert len(problems) == 1000
    assert [p.problem_id for p in problems[:3]] == ["L1-000", "L1-001", "L1-002"]
    assert problems[617].problem_id == "L4-017" and problems[617].level == 4
    assert len({p.problem_id for p in problems}) == 1000
    assert len({p.text for p in problems}) == 1000
    assert Counter(p.level for p in problems) == {level: 200 for level in range(1, 6)}
    assert {p.dataset for p in problems} == {"arith"}


def test_same_seed_same_bytes_other_seed_other_problems(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    write_jsonl(generate_problems(per_level=16, seed=7), a)
    write_jsonl(generate_problems(per_level=16, seed=7), b)
    write_jsonl(generate_problems(per_level=16, seed=8), c)
    assert a.read_bytes() == b.read_bytes()
    texts_a = {json.loads(line)["text"] for line in a.read_text().splitlines()}
    texts_c = {json.loads(line)["text"] for line in c.read_text().splitlines()}
    assert len(texts_a & texts_c) <= 2  # a short level-1 story may recur by chance


def test_the_recorded_sweeps_problems_never_change(tmp_path: Path) -> None:
    """ponder's recorded sweep (sweeps/arith-v1.yaml: levels 1-4, 40 per level, seed 0) stores
    these problems; a generator change that alters them needs a new GENERATOR version. The
    digest is of this set as first recorded; the first story is pinned in plain text too."""
    import hashlib

    problems = generate_problems(levels=(1, 2, 3, 4), per_level=40, seed=0)
    assert problems[0].text == (
        "Ines's farm has 9 eggs in the storeroom. Ines sells 6 eggs at the market. "
        "How many eggs does Ines have now?"
    )
    path = tmp_path / "arith-v1.jsonl"
    write_jsonl(problems, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest == "4e9052ceee65ededca6c1863ef3cc988fb6a5777f0787b409c29793ae8786efb"


def test_a_problem_depends_only_on_its_seed_level_and_index() -> None:
    small = generate_problems(levels=(3,), per_level=5, seed=11)
    large = generate_problems(levels=(1, 2, 3), per_level=40, seed=11)
    by_id = {p.problem_id: p for p in large if p.level == 3}
    assert all(by_id[p.problem_id] == p for p in small)


def test_level_one_and_level_five_match_the_table() -> None:
    problems = generate_problems(levels=(1, 5), per_level=100, seed=0)
    for p in problems:
        m = p.metadata
        if p.level == 1:
            assert (m["steps"], m["digits"], m["distractors"]) == (1, 1, 0)
            assert m["ops"] == "add,sub"
        else:
            assert m["steps"] >= 6 and m["digits"] in (3, 4) and m["distractors"] >= 2


def test_difficulty_is_monotone_in_the_level() -> None:
    """No knob's range shrinks as the level rises, and in generated sets the mean number of
    steps and of numbers in the text rises from each level to the next, as does the mean of
    every other knob whose range changes."""
    for low, high in zip(range(1, 5), range(2, 6), strict=True):
        a, b = LEVELS[low], LEVELS[high]
        for knob in ("steps", "digits", "distractors"):
            assert getattr(a, knob)[0] <= getattr(b, knob)[0]
            assert getattr(a, knob)[1] <= getattr(b, knob)[1]
        assert set(a.ops) <= set(b.ops)
    problems = generate_problems(per_level=100, seed=5)

    def mean(level: int, value: str) -> float:
        rows = [p for p in problems if p.level == level]
        if value == "numbers":
            return sum(len(_numbers(p.text or "")) for p in rows) / len(rows)
        return sum(int(p.metadata[value]) for p in rows) / len(rows)

    for level in range(1, 5):
        assert mean(level, "steps") < mean(level + 1, "steps")
        assert mean(level, "numbers") < mean(level + 1, "numbers")
        for knob in ("digits", "distractors"):
            if getattr(LEVELS[level], knob) != getattr(LEVELS[level + 1], knob):
                assert mean(level, knob) < mean(level + 1, knob)  # else: the same draw


def test_templates_vary() -> None:
    """Many openings and questions, so a model cannot pattern-match one sentence."""
    problems = generate_problems(per_level=100, seed=0)
    openings = {re.sub(r"\d+", "#", _sentences(p.text or "")[0]) for p in problems}
    questions = {_sentences(p.text or "")[-1] for p in problems}
    assert len({p.metadata["theme"] for p in problems}) == 6
    assert len(openings) >= 100  # names and templates
    assert len(questions) >= 30


# --- frames, files and bad input ---------------------------------------------------------------


def test_frame_has_the_problem_columns() -> None:
    problems = generate_problems(levels=(2, 4), per_level=3, seed=1)
    frame = generate_frame(levels=(2, 4), per_level=3, seed=1)
    assert tuple(frame.columns) == PROBLEM_FIELDS
    assert list(frame["problem_id"]) == [p.problem_id for p in problems]
    assert list(frame["level"]) == [2, 2, 2, 4, 4, 4]
    for row, problem in zip(frame.to_dict("records"), problems, strict=True):
        assert json.loads(row["metadata_json"]) == problem.metadata
        assert row["gold"] == problem.gold and row["text"] == problem.text


def test_jsonl_round_trip(tmp_path: Path) -> None:
    problems = generate_problems(per_level=4, seed=2)
    path = tmp_path / "p.jsonl"
    write_jsonl(problems, path)
    first = json.loads(path.read_text().splitlines()[0])
    assert list(first) == ["dataset", "problem_id", "text", "gold", "level", "metadata"]
    assert read_problems_jsonl(path) == problems


def test_bad_jsonl_names_the_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    write_jsonl(generate_problems(levels=(1,), per_level=2), path)
    lines = path.read_text().splitlines()
    bad = json.loads(lines[1])
    bad["metadata"] = "[1, 2]"
    path.write_text(lines[0] + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(InputError, match=r"p\.jsonl:2, field 'metadata'"):
        read_problems_jsonl(path)
    bad["level"] = "hard"
    bad["metadata"] = {}
    path.write_text(lines[0] + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(InputError, match=r"p\.jsonl:2, field 'level'"):
        read_problems_jsonl(path)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"levels": (0,)}, "levels are 1..5"),
        ({"levels": (6,)}, "levels are 1..5"),
        ({"levels": ()}, "no levels"),
        ({"levels": (2, 2)}, "each level once"),
        ({"per_level": 0}, "positive integer"),
        ({"dataset": " "}, "empty"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message):
        generate_problems(**kwargs)  # type: ignore[arg-type]


def test_bad_knobs() -> None:
    for args in ((0, 1, 0), (9, 1, 0), (1, 0, 0), (1, 5, 0), (1, 1, 4), (1, 1, -1)):
        with pytest.raises(ValueError):
            Knobs(*args)
    with pytest.raises(ValueError):
        Knobs(2, 2, 0, ("mul", "div"))


# --- the command line --------------------------------------------------------------------------


def _ponder(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PONDER_DATA_DIR=str(tmp_path / "user-data"), COLUMNS="200")
    return subprocess.run(
        [sys.executable, "-m", "ponder", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
        check=False,
    )


def test_cli_writes_the_same_bytes_as_the_library(tmp_path: Path) -> None:
    result = _ponder(
        tmp_path, "problems", "generate", "--levels", "1-3,5", "--per-level", "4", "-o", "p.jsonl"
    )
    assert result.returncode == 0, result.stderr
    assert "wrote 16 problems" in result.stdout
    expected = tmp_path / "expected.jsonl"
    write_jsonl(generate_problems(levels=(1, 2, 3, 5), per_level=4, seed=0), expected)
    assert (tmp_path / "p.jsonl").read_bytes() == expected.read_bytes()
    # An existing file is kept unless --force.
    again = _ponder(tmp_path, "problems", "generate", "--per-level", "1", "-o", "p.jsonl")
    assert again.returncode == 1
    assert again.stderr.strip().splitlines() == [
        "error: p.jsonl: file exists; pass --force to overwrite it"
    ]
    assert (tmp_path / "p.jsonl").read_bytes() == expected.read_bytes()
    forced = _ponder(
        tmp_path, "problems", "generate", "--per-level", "2", "-o", "p.jsonl", "--force", "--json"
    )
    assert forced.returncode == 0, forced.stderr
    summary = json.loads(forced.stdout)
    assert summary["problems"] == 10
    assert summary["per_level"] == {str(level): 2 for level in range(1, 6)}
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 10


def test_cli_stdout_and_bad_levels(tmp_path: Path) -> None:
    result = _ponder(tmp_path, "problems", "generate", "--levels", "4", "--per-level", "2")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["problem_id"] for r in rows] == ["L4-000", "L4-001"]
    for text, message in (
        ("0-3", "level 0 is not in 1..5"),
        ("3-1", "runs backwards"),
        ("1,x", "expected levels 1..5"),
        ("1,1", "listed twice"),
    ):
        bad = _ponder(tmp_path, "problems", "generate", "--levels", text, "-o", "q.jsonl")
        assert bad.returncode == 1
        lines = bad.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: --levels") and message in lines[0]
        assert not (tmp_path / "q.jsonl").exists()
    help_ = _ponder(tmp_path, "problems", "generate", "--help")
    assert help_.returncode == 0 and "Examples:" in help_.stdout
