"""Answer extraction and equivalence: what a response answered, and whether it is right."""

from ponder.grading.equivalence import GradeResult, answers_match, extract, grade
from ponder.grading.extract import (
    AnswerKind,
    choice_letter,
    clean_answer,
    extract_answer,
    extract_boxed,
    format_number,
    normalize_answer,
    parse_number,
)

__all__ = [
    "AnswerKind",
    "GradeResult",
    "answers_match",
    "choice_letter",
    "clean_answer",
    "extract",
    "extract_answer",
    "extract_boxed",
    "format_number",
    "grade",
    "normalize_answer",
    "parse_number",
]
