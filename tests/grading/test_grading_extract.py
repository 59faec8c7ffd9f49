"""Answer extraction and normalization."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ponder.grading import (
    choice_letter,
    clean_answer,
    extract_answer,
    extract_boxed,
    format_number,
    normalize_answer,
    parse_number,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"so \boxed{5}.", "5"),
        (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}"),
        (
            r"The point is $\boxed{\left( 3, \frac{\pi}{2} \right)}$.",
            r"\left( 3, \frac{\pi}{2} \right)",
        ),
        (r"first \boxed{1}, then \boxed{2}, finally \boxed{3}", "3"),
        (r"\boxed{\{1, 2\}}", r"\{1, 2\}"),
        (r"\boxed{\begin{pmatrix} 1 \\ 2 \end{pmatrix}}", r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}"),
        (r"\fbox{7}", "7"),
        (r"The answer is $\boxed 42$ indeed", "42"),
        (r"\boxed {x+1}", "x+1"),
    ],
)
def test_extract_boxed(text: str, expected: str) -> None:
    assert extract_boxed(text) == expected


@pytest.mark.parametrize(
    "text",
    ["no box here", r"\boxed{}", r"\boxed{\frac{1}{2}", r"\boxedx{3}", r"\boxed"],
)
def test_extract_boxed_none(text: str) -> None:
    assert extract_boxed(text) is None


def test_extract_boxed_ignores_an_earlier_box_when_the_last_is_truncated() -> None:
    # Only the last box is the final answer (MATH's last_boxed_only_string); `3` was interim.
    assert extract_boxed(r"\boxed{3} and later \boxed{\frac{1}{") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"work... \boxed{\dfrac{3}{4}} and 99 later", r"\dfrac{3}{4}"),
        ("The answer is 42.", "42"),
        ("Final answer: $1,000$", "1000"),
        ("**Final Answer:** $x^2 + 1$.", "x^2 + 1"),
        ("The final answer is 18 dollars. Hope that helps: 7", "18"),
        (r"Answer: \(\frac{1}{2}\)", r"\frac{1}{2}"),
        ("She has 9 eggs.\n#### 18", "18"),
        ("#### 1,234\n", "1234"),
        ("#### $-5.00", "-5"),
        ("So she pays 9 * $2 = $<<9*2=18>>18 in total.", "18"),
        ("First 3, then 4, so 7.", "7"),
        ("The temperature drops to -12 degrees", "-12"),
        ("16 - 3 = 13", "13"),
        ("It costs $1,250.50 now", "1250.5"),
        ("the ratio is 3/4", "0.75"),
        ("the ratio is 1/3", "1/3"),
        ("about 0.5 of it", "0.5"),
        ("a value of .25 here", "0.25"),
    ],
)
def test_extract_answer_math(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


@pytest.mark.parametrize("text", ["", "no numbers or answers here", "The answer is"])
def test_extract_answer_none(text: str) -> None:
    assert extract_answer(text) is None
    assert extract_answer(text, "number") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"\boxed{\frac{3}{4}}", "0.75"),
        (r"\boxed{18 \text{ dollars}}", "18"),
        (r"\boxed{x = 5}", "5"),
        ("#### 1,000", "1000"),
        ("#### $025.", "25"),
        ("The answer is 18.0", "18"),
        ("he ends at -54 miles", "-54"),
        (r"The answer is \$3.50", "3.5"),
    ],
)
def test_extract_answer_number(text: str, expected: str) -> None:
    assert extract_answer(text, "number") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Thinking... the answer is (C).", "C"),
        ("the answer is (c)", "C"),
        ("Answer: B", "B"),
        ("**Answer:** D", "D"),
        ("The answer is option E", "E"),
        (r"The answer is $\text{(B)}$", "B"),
        (r"so the final choice is \boxed{D}", "D"),
        (r"\boxed{\text{(J)}}", "J"),
        ("Options (A) and (B) fail, leaving (F)", "F"),
        ("A", "A"),
        ("(h)", "H"),
        ("It could be A. Actually the answer is (B), not (C)", "B"),
        ("Answer: A then on reflection \\boxed{G}", "G"),
    ],
)
def test_extract_answer_choice(text: str, expected: str) -> None:
    assert extract_answer(text, "choice") == expected


@pytest.mark.parametrize(
    "text",
    ["I think so", "the answer is a function of x", "", "Option K is out of range", r"\boxed{}"],
)
def test_extract_answer_choice_none(text: str) -> None:
    assert extract_answer(text, "choice") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [("C", "C"), ("(c)", "C"), (r"\text{(B)}", "B"), ("$D$", "D"), ("CD", None), ("K", None)],
)
def test_choice_letter(text: str, expected: str | None) -> None:
    assert choice_letter(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1,000", Fraction(1000)),
        ("$-3.50", Fraction(-7, 2)),
        ("025", Fraction(25)),
        ("18.", Fraction(18)),
        ("3/4", Fraction(3, 4)),
        (r"\frac{3}{4}", Fraction(3, 4)),
        (r"-\dfrac{1}{2}", Fraction(-1, 2)),
        (r"\$32,\!348", Fraction(32348)),
        (".5", Fraction(1, 2)),
        ("1,2", None),
        ("1/0", None),
        ("1/2/3", None),
        ("x", None),
        ("", None),
    ],
)
def test_parse_number(text: str, expected: Fraction | None) -> None:
    assert parse_number(text) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Fraction(25), "25"),
        (Fraction(3, 4), "0.75"),
        (Fraction(-3, 2), "-1.5"),
        (Fraction(1, 3), "1/3"),
        (Fraction(0), "0"),
    ],
)
def test_format_number(value: Fraction, expected: str) -> None:
    assert format_number(value) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("025", "25"),
        ("18.0", "18"),
        ("1,000", "1000"),
        (" $5$ ", "5"),
        ("5.", "5"),
        (r"90^\circ", "90"),
        (r"90^{\circ}", "90"),
        ("90°", "90"),
        (r"10\%", "10"),
        (r"\dfrac{a}{b}", r"\frac{a}{b}"),
        (r"\tfrac{a}{b}", r"\frac{a}{b}"),
        (r"\frac12", "0.5"),
        (r"\left( 3, \frac{\pi}{2} \right)", r"(3,\frac{\pi}{2})"),
        (r"5\!000", "5000"),
        (r"1\,000", "1000"),
        (r"5\text{ cm}", "5cm"),
        (r"\text{Monday}", "Monday"),
        (r"\sqrt2", r"\sqrt{2}"),
        ("(1, 2)", "(1,2)"),
    ],
)
def test_normalize_answer(text: str, expected: str) -> None:
    assert normalize_answer(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("18 dollars", "18"),
        ("**$18$.**", "18"),
        (r"\frac{1}{2}.", r"\frac{1}{2}"),
        ("42. Because the rest", "42"),
        ("  ", None),
    ],
)
def test_clean_answer(text: str, expected: str | None) -> None:
    assert clean_answer(text) == expected


def test_huge_inputs_do_not_crash() -> None:
    digits = "1" * 20_000
    assert parse_number(digits) is None
    assert clean_answer(digits + " apples") == digits + " apples"
    assert extract_answer(f"Answer: {digits}", "number") is None
    assert extract_boxed("{" * 50_000 + r"\boxed{" + "{" * 50_000) is None


@settings(max_examples=300, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from(list("0123456789-.,/$ {}()\\boxedfracAnswer:#\n")), max_size=80
    )
)
def test_extraction_never_raises(text: str) -> None:
    for kind in ("math", "number", "choice"):
        result = extract_answer(text, kind)
        assert result is None or result.strip()
    normalize_answer(text)
    clean_answer(text)
