"""Per-request compute policies: fitted on recorded outcomes, deciding before generation.

The learned policies that need scikit-learn live in their own modules
(`ponder.policies.adaptive`, `.router`, `.allocation`, `.sweetspot`); import them from there.
"""

from ponder.decision import Config, Decision, DecisionBatch, Step, StopRule
from ponder.policies.base import NotFittedError, Policy, PolicyError
from ponder.policies.cascade import TierCascade
from ponder.policies.consistency import AdaptiveConsistency
from ponder.policies.oracle import Oracle
from ponder.policies.serialization import load_policy, save_policy
from ponder.policies.uniform import Uniform, uniform_family

__all__ = [
    "AdaptiveConsistency",
    "Config",
    "Decision",
    "DecisionBatch",
    "NotFittedError",
    "Oracle",
    "Policy",
    "PolicyError",
    "Step",
    "StopRule",
    "TierCascade",
    "Uniform",
    "load_policy",
    "save_policy",
    "uniform_family",
]
