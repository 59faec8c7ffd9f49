"""Problems: what is known about a request before generation (text, gold, level, subject);
loaders for public problem sets and a generator whose difficulty is set by construction."""

from ponder.problems.generator import generate_frame, generate_problems, read_problems_jsonl
from ponder.problems.sets import (
    find_problem_file,
    load_gsm8k,
    load_math500,
    load_matharena_competitions,
    load_mmlu_pro_questions,
)

__all__ = [
    "find_problem_file",
    "generate_frame",
    "generate_problems",
    "load_gsm8k",
    "load_math500",
    "load_matharena_competitions",
    "load_mmlu_pro_questions",
    "read_problems_jsonl",
]
