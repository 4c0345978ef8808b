"""The model bundle: feature builder, three models, calibrators and the decision policy as one.

Everything needed to turn canonical claims into scores and a decision travels together, so the
registry version that was evaluated is exactly the one that is served.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.builder import FeatureBuilder
from features.schema import CLAIM_FIELDS, ClaimField
from features.validation import ValidationReport, validate_claims
from models.anomaly import AnomalyDetector, TailDetector
from models.calibration import PlattCalibrator
from models.config import DecisionTargets
from models.policy import DecisionPolicy, rule_hits

SCORE_COLUMNS = ("claim_id", "approval_probability", "fraud_probability", "anomaly_score", "decision", "rule_hits")
# Below this many claims, one thread beats two: thread start-up costs more than the trees.
_SINGLE_THREAD_BELOW = 64


@dataclass
class BoostedModel:
    """A LightGBM booster with the calibrator that turns its margin into a probability."""

    booster: lgb.Booster
    calibrator: PlattCalibrator

    def margin(self, matrix: np.ndarray) -> np.ndarray:
        threads = 1 if len(matrix) < _SINGLE_THREAD_BELOW else 0
        return self.booster.predict(matrix, raw_score=True, num_threads=threads)

    def probability(self, matrix: np.ndarray) -> np.ndarray:
        return self.calibrator.transform(self.margin(matrix))


@dataclass
class Scores:
    """Per-claim model outputs before the decision."""

    fraud: np.ndarray
    anomaly: np.ndarray
    approval: np.ndarray | None
    blocked: np.ndarray
    rules: list[list[str]]


@dataclass
class TriageBundle:
    """Canonical claims in; scores, rule hits and a decision out."""

    builder: FeatureBuilder
    fraud: BoostedModel
    anomaly: TailDetector | AnomalyDetector  # the tails detector, or an isolation forest (older bundles)
    policy: DecisionPolicy
    eligibility: BoostedModel | None = None
    typical_values: dict[str, float] = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    # A version trained through a dataset mapping carries it (its rules as written and a few of the
    # extract's records), so the service also takes records in the extract's own columns and codes.
    mapping: dict | None = None

    @property
    def targets(self) -> DecisionTargets:
        return self.policy.targets

    @property
    def claim_fields(self) -> tuple[ClaimField, ...]:
        """The canonical fields this model was trained with; requests are held to these."""
        seen = set(self.builder.fields_seen_)
        # Every passed-through column is part of the record, even one whose feature training left out.
        extras = tuple(
            ClaimField(name, kind, False, f"Extra {word} feature passed through from the training extract.")
            for names, kind, word in ((self.builder.passthrough_categorical, "string", "categorical"),
                                      (self.builder.passthrough_numeric, "number", "numeric"))
            for name in names)
        return tuple(f for f in CLAIM_FIELDS if f.name in seen) + extras

    def validate(self, claims: pd.DataFrame, as_of: pd.Timestamp | None = None) -> ValidationReport:
        return validate_claims(claims, fields=self.claim_fields, as_of=as_of)

    def features(self, claims: pd.DataFrame, history: pd.DataFrame | None = None) -> np.ndarray:
        return self.builder.transform(claims, history)

    def model_scores(self, claims: pd.DataFrame, matrix: np.ndarray) -> Scores:
        """The three models' scores plus the hard rules, for validated claims and their features."""
        return self.scores_with_rules(matrix, rule_hits(claims, self.targets.auto_approve_amount_cap))

    def scores_with_rules(self, matrix: np.ndarray, rules: list[list[str]]) -> Scores:
        """The three models' scores for a feature matrix whose claims' rule hits are known."""
        blocked = np.fromiter((bool(r) for r in rules), dtype=bool, count=len(rules))
        approval = self.eligibility.probability(matrix) if self.eligibility else None
        anomaly = self.anomaly.percentile(self.anomaly.raw_score(matrix))
        return Scores(self.fraud.probability(matrix), anomaly, approval, blocked, rules)

    def score(self, claims: pd.DataFrame, history: pd.DataFrame | None = None) -> pd.DataFrame:
        """Scores and decision per claim; `history` is the earlier claims of their entities."""
        matrix = self.features(claims, history)
        s = self.model_scores(claims, matrix)
        decision = self.policy.decide(s.fraud, s.anomaly, s.approval, s.blocked)
        return pd.DataFrame({
            "claim_id": claims["claim_id"].to_numpy(),
            "approval_probability": s.approval if s.approval is not None else np.full(len(claims), np.nan),
            "fraud_probability": s.fraud,
            "anomaly_score": s.anomaly,
            "decision": decision,
            "rule_hits": [",".join(r) for r in s.rules],
        }, columns=list(SCORE_COLUMNS))
