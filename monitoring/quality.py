"""Quality as outcomes arrive, and the quality expected before they do.

Everything here is a pure function of the period's `decided` frame: one row per claim decided in
the period (its newest decision there) with its scores and, once an outcome is recorded, its labels:
`is_fraud` and `payable` (nullable booleans, empty until an outcome says) and `recorded_at`.
`payable` is the eligibility model's target: paid as filed and not fraud (training.fit.payable_label).

Realised figures are shares with a Wilson interval, or "not enough labels" (with the count) below
`min_labels`: a precision on twelve claims is a rumour, not an indicator.

Labelled claims are not a random sample: referrals are investigated first, approvals are labelled
when the claims system reports back. Realised figures describe the labelled claims; the expected
figures (from the calibrated probabilities) describe every decided claim.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from models.policy import AUTO_APPROVE, SIU_REFERRAL, wilson_lower_bound

HOUR = pd.Timedelta(hours=1)


def wilson_interval(hits: int, n: int, z: float) -> tuple[float, float]:
    """Two-sided Wilson score interval of a proportion: honest near 0 and 1, where approvals live
    (99 of 100 gives 94.6%-99.8% at z = 1.96, where the normal approximation would reach 100.9%)."""
    if n <= 0:
        raise ValueError(f"a proportion needs at least one claim, got n = {n}")
    low = wilson_lower_bound(np.float64(hits), np.float64(n), z)
    # The upper bound of the hits is one minus the lower bound of the misses.
    high = 1.0 - wilson_lower_bound(np.float64(n - hits), np.float64(n), z)
    return float(low), float(high)


def share(hits: int, n: int, min_labels: int, z: float) -> dict:
    """A realised share with its interval, or why there is none."""
    if n < min_labels:
        return {"n": int(n), "hits": int(hits), "value": None,
                "note": f"not enough labels ({n} labelled, {min_labels} needed)"}
    low, high = wilson_interval(hits, n, z)
    return {"n": int(n), "hits": int(hits), "value": hits / n, "low": low, "high": high}


def approval_precision(decided: pd.DataFrame, min_labels: int, z: float) -> dict:
    """Of automatic approvals whose outcome says whether they were payable, the share that were."""
    approved = decided.loc[decided["decision"] == AUTO_APPROVE, "payable"].dropna()
    return share(int(approved.sum()), len(approved), min_labels, z)


def referrals_confirmed(decided: pd.DataFrame, min_labels: int, z: float) -> dict:
    """Of SIU referrals with an outcome, the share confirmed as fraud."""
    referred = decided.loc[decided["decision"] == SIU_REFERRAL, "is_fraud"].dropna()
    return share(int(referred.sum()), len(referred), min_labels, z)


def fraud_scores(decided: pd.DataFrame, min_labels: int, bins: int) -> dict:
    """ROC-AUC, PR-AUC, Brier score and a reliability curve of the fraud probability on labelled claims."""
    labelled = decided.loc[decided["is_fraud"].notna()]
    n, frauds = len(labelled), int(labelled["is_fraud"].sum())
    out = {"n": n, "frauds": frauds}
    if n < min_labels:
        return out | {"note": f"not enough labels ({n} labelled, {min_labels} needed)"}
    truth = labelled["is_fraud"].to_numpy(dtype=bool)
    probability = labelled["fraud_probability"].to_numpy(dtype=float)
    out |= {"brier": float(brier_score_loss(truth, probability)), "reliability": reliability(truth, probability, bins)}
    if frauds in (0, n):
        return out | {"note": f"ranking needs both frauds and non-frauds among labelled claims ({frauds} of {n})"}
    return out | {"roc_auc": float(roc_auc_score(truth, probability)),
                  "pr_auc": float(average_precision_score(truth, probability))}


def reliability(truth: np.ndarray, probability: np.ndarray, bins: int) -> list[dict]:
    """Per equal-width probability bin holding claims: mean predicted probability, observed fraud rate, count."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(probability, edges[1:-1]), 0, bins - 1)
    return [{"low": float(edges[b]), "high": float(edges[b + 1]), "n": int(m.sum()),
             "predicted": float(probability[m].mean()), "observed": float(truth[m].mean())}
            for b in range(bins) if (m := which == b).any()]


def label_delay(decided: pd.DataFrame) -> dict:
    """How long outcomes take to come back (hours from decision to outcome), and how many have."""
    labelled = decided.loc[decided["recorded_at"].notna()]
    out = {"decided": len(decided), "labelled": len(labelled),
           "labelled_share": len(labelled) / len(decided) if len(decided) else None}
    if labelled.empty:
        return out | {"median_hours": None, "p90_hours": None}
    hours = (labelled["recorded_at"] - labelled["scored_at"]) / HOUR
    return out | {"median_hours": float(hours.median()), "p90_hours": float(hours.quantile(0.9))}


def expected_quality(decided: pd.DataFrame) -> dict:
    """Confidence-based performance estimation (NannyML's CBPE): with calibrated probabilities, the
    expected share of a group that turns out so is the mean of its probabilities.

    `approval_probability` is already the joint probability the model was trained on, paid as
    filed AND not fraud (training.fit.payable_label), Platt-calibrated on validation claims; so it
    is averaged as it is, not multiplied by (1 - fraud_probability), which would count fraud twice.
    Also given on the labelled subset, the like-for-like comparison with the realised share."""
    approved = decided.loc[decided["decision"] == AUTO_APPROVE]
    referred = decided.loc[decided["decision"] == SIU_REFERRAL]
    return {
        "approval_precision": _mean(approved["approval_probability"]),
        "approval_precision_on_labelled": _mean(approved.loc[approved["payable"].notna(), "approval_probability"]),
        "referrals_fraud_share": _mean(referred["fraud_probability"]),
        "referrals_fraud_share_on_labelled": _mean(referred.loc[referred["is_fraud"].notna(), "fraud_probability"]),
        "approved": len(approved), "referred": len(referred),
    }


def _mean(values: pd.Series) -> float | None:
    values = values.dropna()
    return float(values.mean()) if len(values) else None


def quality(decided: pd.DataFrame, min_labels: int, z: float, bins: int) -> dict:
    """Every quality figure of the period, realised and expected."""
    return {"approval_precision": approval_precision(decided, min_labels, z),
            "referrals_confirmed": referrals_confirmed(decided, min_labels, z),
            "fraud_scores": fraud_scores(decided, min_labels, bins),
            "label_delay": label_delay(decided),
            "expected": expected_quality(decided)}
