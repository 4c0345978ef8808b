"""The decision policy: hard rules plus thresholds chosen on validation claims for stated targets.

Order of precedence, most serious first: refer suspected fraud to investigators; send anomalous
claims to senior review; approve automatically only when every condition holds; else review.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from models.config import DecisionTargets

AUTO_APPROVE = "AUTO_APPROVE"
STANDARD_REVIEW = "STANDARD_REVIEW"
ENHANCED_REVIEW = "ENHANCED_REVIEW"
SIU_REFERRAL = "SIU_REFERRAL"
OUTCOMES = (AUTO_APPROVE, STANDARD_REVIEW, ENHANCED_REVIEW, SIU_REFERRAL)

RULE_TEXT = {
    "loss_before_policy_start": "The loss happened before the policy started.",
    "amount_above_coverage_limit": "The amount claimed is above the coverage limit.",
    "amount_above_auto_approve_cap": "The amount is above the limit for automatic approval.",
}


def rule_hits(claims: pd.DataFrame, amount_cap: float) -> list[list[str]]:
    """Transparent hard rules per claim; any hit blocks automatic approval."""
    n = len(claims)
    checks = {}
    if {"loss_date", "policy_start_date"} <= set(claims.columns):
        checks["loss_before_policy_start"] = (claims["loss_date"] < claims["policy_start_date"])
    if {"claim_amount", "coverage_limit"} <= set(claims.columns):
        checks["amount_above_coverage_limit"] = claims["claim_amount"] > claims["coverage_limit"]
    if "claim_amount" in claims.columns:  # an extract may have no amounts: then no amount rule can hit
        checks["amount_above_auto_approve_cap"] = claims["claim_amount"] > amount_cap
    flags = {name: hit.to_numpy(dtype=bool, na_value=False) for name, hit in checks.items()}
    return [[name for name, hit in flags.items() if hit[i]] for i in range(n)]


def record_rule_hits(claim: dict, amount_cap: float) -> list[str]:
    """`rule_hits` for one validated claim (canonical Python values; absent = missing)."""
    hits = []
    loss, start = claim.get("loss_date"), claim.get("policy_start_date")
    if loss is not None and start is not None and loss < start:
        hits.append("loss_before_policy_start")
    amount, limit = claim.get("claim_amount"), claim.get("coverage_limit")
    if amount is not None and limit is not None and amount > limit:
        hits.append("amount_above_coverage_limit")
    if amount is not None and amount > amount_cap:
        hits.append("amount_above_auto_approve_cap")
    return hits


@dataclass
class Thresholds:
    """Learned cut-offs, with the validation figures that justify them."""

    siu_fraud_probability: float
    anomaly_percentile: float
    auto_approve_probability: float | None  # None: this model never auto-approves
    auto_approve_note: str
    validation_auto_approve_precision: float | None
    validation_auto_approve_rate: float


class DecisionPolicy:
    """Fit thresholds on validation scores for the targets; then decide per claim."""

    def __init__(self, targets: DecisionTargets):
        self.targets = targets

    def fit(self, fraud: np.ndarray, anomaly: np.ndarray, approval: np.ndarray | None,
            payable: np.ndarray | None, blocked: np.ndarray) -> "DecisionPolicy":
        """Choose thresholds on validation claims (`payable` = paid as filed and not fraud)."""
        t = self.targets
        siu = float(np.quantile(fraud, 1 - t.siu_referral_rate))
        alert = float(np.quantile(anomaly, 1 - t.anomaly_alert_rate))
        if approval is None or payable is None:
            self.thresholds_ = Thresholds(siu, alert, None, "no eligibility model: trained without paid_as_filed "
                                          "labels, so every claim goes to a person", None, 0.0)
            return self
        eligible = ~blocked & (fraud <= siu) & (anomaly <= alert)
        threshold, precision, note = _approval_threshold(approval[eligible], payable[eligible], t)
        rate = 0.0 if threshold is None else float(np.mean(eligible & (approval >= threshold)))
        self.thresholds_ = Thresholds(siu, alert, threshold, note, precision, rate)
        return self

    def decide(self, fraud: np.ndarray, anomaly: np.ndarray, approval: np.ndarray | None,
               blocked: np.ndarray) -> np.ndarray:
        """One outcome per claim, by precedence: SIU, enhanced review, auto-approve, review."""
        th = self.thresholds_
        outcome = np.full(len(fraud), STANDARD_REVIEW, dtype=object)
        if approval is not None and th.auto_approve_probability is not None:
            outcome[(approval >= th.auto_approve_probability) & ~blocked] = AUTO_APPROVE
        # Strictly above the cut-off: tied scores (a degenerate model) must not all be referred.
        outcome[anomaly > th.anomaly_percentile] = ENHANCED_REVIEW
        outcome[fraud > th.siu_fraud_probability] = SIU_REFERRAL
        return outcome

    def describe(self) -> dict:
        return {"targets": asdict(self.targets), "thresholds": asdict(self.thresholds_)}


def wilson_lower_bound(hits: np.ndarray, counts: np.ndarray, z: float) -> np.ndarray:
    """One-sided lower confidence bound of a proportion (Wilson score interval)."""
    p = hits / counts
    centre = p + z * z / (2 * counts)
    margin = z * np.sqrt(p * (1 - p) / counts + z * z / (4 * counts * counts))
    return (centre - margin) / (1 + z * z / counts)


def _approval_threshold(approval: np.ndarray, payable: np.ndarray, targets: DecisionTargets):
    """Lowest approval probability whose approved set meets the precision target with confidence.

    Judged on the lower confidence bound of the validation precision, not the point estimate:
    a threshold that merely scrapes 99% on validation claims falls below it on the next ones.
    """
    order = np.argsort(-approval, kind="stable")
    hits = np.cumsum(payable[order])
    counts = np.arange(1, len(order) + 1)
    precision = wilson_lower_bound(hits, counts, targets.auto_approve_confidence_z)
    # Only cut where the next claim scores strictly lower, so ties are never split.
    scores = approval[order]
    cut_ok = np.append(scores[1:] < scores[:-1], True)
    ok = (precision >= targets.auto_approve_precision) & (counts >= targets.auto_approve_min_support) & cut_ok
    if not ok.any():
        return None, None, (f"no threshold reaches {targets.auto_approve_precision:.1%} precision on "
                            f"{targets.auto_approve_min_support}+ validation claims: no automatic approval")
    k = int(np.flatnonzero(ok)[-1])
    observed = hits[k] / (k + 1)
    return float(scores[k]), float(observed), (
        f"auto-approve at approval probability >= {scores[k]:.4f}: {observed:.2%} of {k + 1} validation claims "
        f"above it were payable as filed (lower confidence bound {precision[k]:.2%})")
