"""Per-request compute policies: fitted on recorded outcomes, deciding before generation."""

from ponder.policies.base import DecisionBatch, NotFittedError, Policy, PolicyError
from ponder.policies.decision import Config, Decision, Step, StopRule
from ponder.policies.oracle import Oracle
from ponder.policies.serialization import load_policy, save_policy
from ponder.policies.uniform import Uniform, uniform_family

__all__ = [
    "Config",
    "Decision",
    "DecisionBatch",
    "NotFittedError",
    "Oracle",
    "Policy",
    "PolicyError",
    "Step",
    "StopRule",
    "Uniform",
    "load_policy",
    "save_policy",
    "uniform_family",
]
