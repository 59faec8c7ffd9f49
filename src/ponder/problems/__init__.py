"""Problems: what is known about a request before generation (text, gold, level, subject)."""

from ponder.problems.sets import (
    find_problem_file,
    load_gsm8k,
    load_math500,
    load_matharena_competitions,
    load_mmlu_pro_questions,
)

__all__ = [
    "find_problem_file",
    "load_gsm8k",
    "load_math500",
    "load_matharena_competitions",
    "load_mmlu_pro_questions",
]
