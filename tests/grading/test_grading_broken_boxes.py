"""A response whose final box is cut off or empty has no answer (issue 7).

The reference is the MATH dataset's own grader (`last_boxed_only_string`): only the last
`\\boxed` counts, and an unbalanced one yields nothing. The fallbacks (answer line, `####`,
last number) must not then read a number out of the broken box.
"""

from __future__ import annotations

import pytest

from ponder.grading import GradeResult, extract_answer, extract_boxed, grade

BROKEN = [
    r"\boxed{\frac{1}{2}",  # truncated mid-fraction: the `2` is not an answer
    r"\boxed{12",
    r"so x = 3, hence \boxed{\sqrt{",
    r"\boxed{}",
    r"\boxed{ }",
    r"The answer is \boxed{}",
    r"The answer is \boxed{}.",
    r"#### \boxed{}",
    r"Answer: \boxed{\frac{1}{2}",
    r"x=3 so \boxed{}",
    r"First \boxed{3}, then on reflection \boxed{\frac{7}{",  # the final answer was cut
    r"we get 5 and then \boxed",
    r"\fbox{",
]


@pytest.mark.parametrize("text", BROKEN)
@pytest.mark.parametrize("kind", ["math", "number", "choice"])
def test_broken_last_box_extracts_nothing(text: str, kind: str) -> None:
    assert extract_answer(text, kind) is None  # type: ignore[arg-type]


@pytest.mark.parametrize("text", BROKEN)
def test_extract_boxed_of_a_broken_last_box_is_none(text: str) -> None:
    assert extract_boxed(text) is None


@pytest.mark.parametrize(
    ("text", "gold"),
    [(r"\boxed{\frac{1}{2}", "2"), (r"\boxed{}", r"\boxed{}"), (r"\boxed{12", "12")],
)
def test_grade_of_a_broken_box_is_no_answer_no_match(text: str, gold: str) -> None:
    assert grade(text, gold) == GradeResult(None, False)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Complete boxes, and text after the last box, are unaffected.
        (r"\boxed{\frac{1}{2}} and more prose with 7", r"\frac{1}{2}"),
        (r"\boxed{}\boxed{4}", "4"),
        (r"set \{ \} then \boxed{\{1\}}", r"\{1\}"),
        # No box at all: the fallbacks still work.
        ("The answer is 42.", "42"),
    ],
)
def test_complete_boxes_still_extract(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


def test_broken_choice_box_after_an_answer_line_is_no_answer() -> None:
    assert extract_answer(r"Answer: B. Wait, let me recheck: \boxed{", "choice") is None
    assert extract_answer(r"\boxed{C", "choice") is None
    assert extract_answer(r"\boxed{C} and that is final", "choice") == "C"
