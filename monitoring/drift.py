"""Drift of a period's features and scores against a version's reference profile, most drifted first.

Per column: the population stability index on the profile's fixed bins, and a two-sample test
(scipy.stats): Kolmogorov-Smirnov for numbers, against the profile's reference sample; chi-squared
for categories, against the reference's own counts. PSI says how far the mix moved (0.1 a shift
worth a look, 0.25 a large one, the usual reading); the test says whether a move that small could
be chance at this many claims. Missing values are a bin of their own in the PSI; KS compares the
values present (a share of missing values that moves is in the PSI, never dropped).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from models.bundle import TriageBundle
from monitoring.profile import ColumnProfile, ReferenceProfile, feature_frame

# An empty bin's share is taken as 0.01% of claims: PSI's log ratio is infinite for a bin empty on
# one side only, and a floor this small still lets one bin that newly holds 1% of claims reach
# (0.01 - 0.0001) x ln(100) = 0.046 and one that holds 10% reach 0.68: a new level or a field that
# stops arriving is seen. A bin empty on both sides adds nothing.
EMPTY_BIN_SHARE = 1e-4


@dataclass(frozen=True)
class DriftRow:
    """How far one feature or score moved from the reference in a period."""

    name: str
    kind: str  # "feature" or "score"
    psi: float
    statistic: str  # "ks" (numeric) or "chi2" (categorical)
    value: float
    p_value: float
    n: int  # claims in the period
    bins: tuple[str, ...]
    reference_shares: tuple[float, ...]
    current_shares: tuple[float, ...]
    importance_rank: int | None  # in the fraud model; None for scores


def psi(reference_shares, current_shares) -> float:
    """Population stability index: sum over bins of (current - reference) x ln(current / reference),
    each share floored at EMPTY_BIN_SHARE."""
    ref = np.maximum(np.asarray(reference_shares, dtype=np.float64), EMPTY_BIN_SHARE)
    cur = np.maximum(np.asarray(current_shares, dtype=np.float64), EMPTY_BIN_SHARE)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def drift(profile: ReferenceProfile, features: pd.DataFrame, scores: pd.DataFrame) -> list[DriftRow]:
    """Every profiled feature and score of a period against the reference, the largest PSI first.

    `features`: as `period_features` gives them (one column per model feature); `scores`: columns
    named as the service stores them. Columns not in the profile are ignored; a profiled column
    missing from them is an error, not a column skipped."""
    frames = {"feature": features, "score": scores}
    for kind, frame in frames.items():
        absent = [c.name for c in profile.columns if c.source == kind and c.name not in frame.columns]
        if absent:
            raise ValueError(f"the period's {kind}s lack {', '.join(absent)}, which the reference profile has")
        if len(frame) == 0:
            raise ValueError(f"no claims in the period's {kind}s: nothing to compare with the reference")
    rows = [_column_drift(column, frames[column.source][column.name], profile.sample[column.name])
            for column in profile.columns]
    return sorted(rows, key=lambda r: (-r.psi, r.name))


def _column_drift(column: ColumnProfile, current: pd.Series, reference_sample: pd.Series) -> DriftRow:
    counts = column.counts(current)
    shares = counts / counts.sum()
    if column.kind == "numeric":
        statistic, value, p_value = "ks", *_ks(reference_sample, current)
    else:
        reference_counts = np.rint(np.asarray(column.shares) * column.n)
        statistic, value, p_value = "chi2", *_chi2(reference_counts, counts)
    return DriftRow(column.name, column.source, psi(column.shares, shares), statistic, value, p_value, len(current),
                    column.labels, column.shares, tuple(float(s) for s in shares), column.importance_rank)


def _ks(reference: pd.Series, current: pd.Series) -> tuple[float, float]:
    """KS distance and p-value of the values present; NaN when either side has none."""
    ref = pd.to_numeric(reference).dropna().to_numpy(dtype=np.float64)
    cur = pd.to_numeric(current).dropna().to_numpy(dtype=np.float64)
    if len(ref) == 0 or len(cur) == 0:
        return float("nan"), float("nan")
    result = stats.ks_2samp(ref, cur)
    return float(result.statistic), float(result.pvalue)


def _chi2(reference_counts: np.ndarray, current_counts: np.ndarray) -> tuple[float, float]:
    """Chi-squared test of homogeneity of the two periods' bin counts (bins empty in both left out)."""
    table = np.vstack([reference_counts, current_counts])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 0.0, 1.0  # one bin holds every claim on both sides: nothing can differ
    result = stats.chi2_contingency(table, correction=False)
    return float(result.statistic), float(result.pvalue)


def period_features(bundle: TriageBundle, stored_claims: pd.DataFrame, since, until) -> pd.DataFrame:
    """Model features of the claims reported in [since, until) (by loss date for a version that
    counts history by loss date), indexed by claim_id.

    History features are counted point in time over all of `stored_claims` (typed canonical claims,
    as the claim store reads them back): a claim's earlier claims may predate the period."""
    time_field = bundle.builder.history_time_
    if time_field not in stored_claims.columns:
        raise ValueError(f"the stored claims have no {time_field}, which places claims in a period for this version")
    start, end = _naive_utc(since), _naive_utc(until)
    if not start < end:
        raise ValueError(f"the period's start {since} is not before its end {until}")
    times = stored_claims[time_field]
    period = stored_claims.loc[((times >= start) & (times < end)).to_numpy()]
    matrix = bundle.features(period, history=stored_claims)
    return feature_frame(bundle.builder, period, matrix).set_axis(pd.Index(period["claim_id"], name="claim_id"))


def _naive_utc(moment) -> pd.Timestamp:
    """A date or time as the store keeps them: UTC, without a zone."""
    stamp = pd.Timestamp(moment)
    return stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo is not None else stamp
