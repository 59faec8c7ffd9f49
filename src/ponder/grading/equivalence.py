"""Decide whether an answer equals the gold answer: cheap string and number checks first,
math-verify (sympy) only for what they cannot settle, because it is orders of magnitude slower.
"""

from __future__ import annotations

import functools
import math
import re
import threading
from dataclasses import dataclass

from math_verify import parse, verify
from math_verify.errors import TimeoutException

from ponder.grading.extract import (
    AnswerKind,
    choice_letter,
    clean_answer,
    extract_answer,
    normalize_answer,
    parse_number,
)

# math-verify's defaults; its timeouts use SIGALRM, which exists only in the main thread.
_PARSE_TIMEOUT_S = 5
_VERIFY_TIMEOUT_S = 5
_BARE_MAX_CHARS = 80
# Words of two or more letters that are not LaTeX commands: prose, not a bare answer.
_WORD = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{2,}")
_TEXT_WRAPPER = re.compile(r"\\(?:text|textbf|mathrm|mbox)\{[^{}]*\}")
_MARKERS = re.compile(r"\\boxed|\\fbox|####|(?i:\banswer\b)")


@dataclass(frozen=True, slots=True)
class GradeResult:
    """What was taken as the answer, and whether it matched the gold answer."""

    extracted: str | None
    match: bool


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@functools.lru_cache(maxsize=8192)
def _mv_parse(text: str, with_timeout: bool) -> tuple[object, ...]:
    """math-verify's parse of one answer, boxed so that bare LaTeX is found; () on failure.

    Cached because gold answers repeat across models, seeds and budgets.
    """
    body = text.strip().replace("\\$", "").replace("$", "")
    wrapped = body if "\\boxed" in body else f"\\boxed{{{body}}}"
    try:
        parsed = parse(wrapped, parsing_timeout=_PARSE_TIMEOUT_S if with_timeout else None)
    except (Exception, TimeoutException):
        return ()
    return tuple(parsed)


@functools.lru_cache(maxsize=65536)
def _mv_equal(pred: str, gold: str, with_timeout: bool) -> bool:
    """math-verify's verdict on pred vs gold; False on any failure or timeout."""
    gold_parsed = _mv_parse(gold, with_timeout)
    pred_parsed = _mv_parse(pred, with_timeout)
    if not gold_parsed or not pred_parsed:
        return False
    try:
        return bool(
            verify(
                list(gold_parsed),
                list(pred_parsed),
                timeout_seconds=_VERIFY_TIMEOUT_S if with_timeout else None,
            )
        )
    except (Exception, TimeoutException):
        return False


def answers_match(
    pred: str | None, gold: str, *, kind: AnswerKind = "math", rel_tol: float = 1e-6
) -> bool:
    """Whether `pred` states the same answer as `gold`.

    "choice" compares option letters. "number" compares values only. "math" also asks
    math-verify when the normalized strings differ and they are not both plain numbers
    (fractions, degrees, intervals, tuples, matrices, sets). In a worker thread math-verify
    runs without its timeout, since SIGALRM cannot be used there.
    """
    if pred is None:
        return False
    if kind == "choice":
        letter = choice_letter(pred)
        return letter is not None and letter == choice_letter(gold)
    pred_norm, gold_norm = normalize_answer(pred), normalize_answer(gold)
    if pred_norm == gold_norm:
        return True
    pred_value, gold_value = parse_number(pred_norm), parse_number(gold_norm)
    if pred_value is not None and gold_value is not None:
        return pred_value == gold_value or math.isclose(
            float(pred_value), float(gold_value), rel_tol=rel_tol
        )
    if kind == "number" or not pred_norm or not gold_norm:
        return False
    return _mv_equal(pred, gold, _in_main_thread())


def _looks_bare(text: str) -> bool:
    """A short one-line answer, not prose: `18`, `\\frac{1}{2}`, `18 dollars`, `\\text{Monday}`."""
    t = text.strip()
    if not 0 < len(t) <= _BARE_MAX_CHARS or "\n" in t or _MARKERS.search(t):
        return False
    return len(_WORD.findall(_TEXT_WRAPPER.sub("", t))) <= 1


def extract(response_or_answer: str, *, kind: AnswerKind = "math") -> str | None:
    """The answer of a full response, or an already extracted answer cleaned (what `grade`
    compares; also what a server reports when there is no gold answer)."""
    if _looks_bare(response_or_answer):
        return clean_answer(response_or_answer)
    return extract_answer(response_or_answer, kind)


def grade(response_or_answer: str, gold: str, *, kind: AnswerKind = "math") -> GradeResult:
    """Grade a full response or an already extracted answer against `gold`."""
    extracted = extract(response_or_answer, kind=kind)
    return GradeResult(extracted, answers_match(extracted, gold, kind=kind))
