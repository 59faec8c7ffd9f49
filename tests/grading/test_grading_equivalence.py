"""Answer equivalence: the fast paths and the math-verify fallback."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from ponder.grading import AnswerKind, GradeResult, answers_match, grade

MATCHES = [
    (r"\dfrac{1}{2}", r"\frac12"),
    (r"\frac12", "0.5"),
    (r"\dfrac{1}{2}", "0.5"),
    ("025", "25"),
    ("18.0", "18"),
    ("1,000", "1000"),
    ("$5", "5"),
    (r"\$32,\!348", "32348"),
    (r"90^\circ", "90"),
    (r"90^{\circ}", r"90^\circ"),
    ("(1,2]", r"\left(1, 2\right]"),
    (r"(3, \frac{\pi}{2})", r"\left( 3, \frac{\pi}{2} \right)"),
    (r"\begin{pmatrix}1\\2\end{pmatrix}", r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}"),
    (r"\{1, 2, 3\}", r"\{3, 2, 1\}"),
    ("x^2+1", "1+x^2"),
    (r"2\sqrt{2}", r"\sqrt{8}"),
    (r"\frac{\sqrt{3}}{2}", r"\frac{1}{2}\sqrt{3}"),
    (r"x = 5", "5"),
    (r"5\text{ cm}", "5"),
    ("0.3333333333", r"\frac{1}{3}"),
    (r"\infty", r"\infty"),
]

NON_MATCHES = [
    (r"\frac{1}{2}", r"\frac{1}{3}"),
    ("0.5", "0.51"),
    ("24", "25"),
    ("-3", "3"),
    (r"50^\circ", r"90^\circ"),
    ("(1,2]", "(1,2)"),
    ("[1,2)", "[1,2]"),
    (r"(3, \frac{\pi}{2})", r"(3, \frac{\pi}{3})"),
    (r"\begin{pmatrix}1\\2\end{pmatrix}", r"\begin{pmatrix}2\\1\end{pmatrix}"),
    ("3", r"\frac{3\sqrt{3}}{4}"),
    (r"x^2-1", "x^2+1"),
    ("", "5"),
    ("5", ""),
    (r"\text{Monday}", r"\text{Tuesday}"),
]


@pytest.mark.parametrize(("pred", "gold"), MATCHES)
def test_matches(pred: str, gold: str) -> None:
    assert answers_match(pred, gold)
    assert answers_match(gold, pred)


@pytest.mark.parametrize(("pred", "gold"), NON_MATCHES)
def test_non_matches(pred: str, gold: str) -> None:
    assert not answers_match(pred, gold)


def test_none_never_matches() -> None:
    assert not answers_match(None, "5")
    assert not answers_match(None, "A", kind="choice")


def test_rel_tol() -> None:
    assert answers_match("1.0000001", "1")
    assert not answers_match("1.0000001", "1", rel_tol=1e-9)
    assert answers_match("100.4", "100", rel_tol=1e-2)


def test_number_kind_compares_values_only() -> None:
    assert answers_match("3/4", r"\frac{3}{4}", kind="number")
    assert answers_match("$1,000.00", "1000", kind="number")
    assert not answers_match("x^2+1", "1+x^2", kind="number")


@pytest.mark.parametrize(
    ("pred", "gold", "expected"),
    [("C", "C", True), ("c", "C", True), ("(B)", "B", True), ("B", "C", False), ("Z", "Z", False)],
)
def test_choice(pred: str, gold: str, expected: bool) -> None:
    assert answers_match(pred, gold, kind="choice") is expected


def test_malformed_latex_does_not_raise() -> None:
    assert not answers_match(r"\frac{", r"\begin{pmatrix}")
    assert not answers_match("}}{{", r"\sqrt{")


def test_math_verify_in_worker_thread() -> None:
    """SIGALRM timeouts only work in the main thread; threads must still get an answer."""
    pairs = [("x^2+2", "2+x^2"), (r"\{4, 5\}", r"\{5, 4\}"), ("x^2+2", "x^2+3")]
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda p: answers_match(*p), pairs))
    assert results == [True, True, False]


@pytest.mark.parametrize(
    ("text", "gold", "kind", "expected"),
    [
        (r"\frac{1}{2}", "0.5", "math", GradeResult(r"\frac{1}{2}", True)),
        ("18 dollars", "18", "math", GradeResult("18", True)),
        (r"\text{Monday}", r"\text{Monday}", "math", GradeResult(r"\text{Monday}", True)),
        ("We compute things.\nSo \\boxed{7}.", "7", "math", GradeResult("7", True)),
        ("The answer is 12 apples, I believe.", "13", "math", GradeResult("12", False)),
        ("She sells 9 eggs.\n#### 18", "18", "number", GradeResult("18", True)),
        ("(C)", "C", "choice", GradeResult("(C)", True)),
        ("After some thought, the answer is (D).", "C", "choice", GradeResult("D", False)),
        ("I cannot tell what this is about at all.", "5", "math", GradeResult(None, False)),
    ],
)
def test_grade(text: str, gold: str, kind: AnswerKind, expected: GradeResult) -> None:
    assert grade(text, gold, kind=kind) == expected
