"""Live sweeps: a spec expanded into work items with stable keys, run resumably into the store.

``load_spec`` / ``parse_spec`` (spec.py) validate a spec, ``build_plan`` (plan.py) expands it,
``run_sweep`` / ``run_plan`` (runner.py) run it, ``outcome_rows`` (rows.py) maps a ladder's
rungs to outcome rows. See docs/sweeps.md.
"""

from ponder.sweep.plan import SweepPlan, WorkItem, build_plan
from ponder.sweep.runner import Estimate, SweepSummary, estimate, run_plan, run_sweep
from ponder.sweep.spec import SweepSpec, load_spec, parse_spec

__all__ = [
    "Estimate",
    "SweepPlan",
    "SweepSpec",
    "SweepSummary",
    "WorkItem",
    "build_plan",
    "estimate",
    "load_spec",
    "parse_spec",
    "run_plan",
    "run_sweep",
]
