"""How a thinking budget is enforced: native caps, two-phase forcing, the probe ladder."""

from ponder.budgets.ladder import (
    ANSWER_CUE,
    DEFAULT_RESERVE,
    LadderResult,
    Rung,
    check_rungs,
    direct_answer,
    force_budget,
    run_ladder,
    sampled_direct_answer,
)
from ponder.budgets.prompts import conversation_for, messages_for

__all__ = [
    "ANSWER_CUE",
    "DEFAULT_RESERVE",
    "LadderResult",
    "Rung",
    "check_rungs",
    "conversation_for",
    "direct_answer",
    "force_budget",
    "messages_for",
    "run_ladder",
    "sampled_direct_answer",
]
