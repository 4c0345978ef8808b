"""Benchmark: features for 1,000,000 claims with history, ours beside the obvious pandas way.

Not a test (the machine is shared and noisy): it prints medians of a few repeats. The
alternative computes one history feature (claims by the same claimant in the previous 365
days) with pandas' time-based groupby-rolling; ours computes every feature.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pandas as pd

from features.builder import FeatureBuilder
from features.history import history_features
from features.validation import validate_claims
from training.generate import generate_claims


def timed(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def pandas_rolling_claimant_365d(claims: pd.DataFrame) -> np.ndarray:
    """Claims by the claimant reported in [t - 365 d, t), the textbook pandas way."""
    frame = claims[["claimant_id", "report_date"]].assign(one=1.0).sort_values(["claimant_id", "report_date"])
    rolled = (frame.set_index("report_date").groupby("claimant_id")["one"]
              .rolling("365D", closed="left").count())
    return np.nan_to_num(rolled.to_numpy())  # an empty window counts as NaN in pandas, 0 claims here


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--claims", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    raw = generate_claims(args.claims, seed=0)
    t_validate, report = timed(lambda: validate_claims(raw, require_labels=True), args.repeats)
    claims = report.claims
    builder = FeatureBuilder().fit(claims)
    t_features, matrix = timed(lambda: builder.transform(claims), args.repeats)
    t_pandas, theirs = timed(lambda: pandas_rolling_claimant_365d(claims), args.repeats)
    t_ours_one, ours = timed(lambda: history_features(claims, names=["claimant_claims_365d"]), args.repeats)
    # Same numbers, whatever the order they come in: the comparison is like for like.
    assert sorted(theirs.tolist()) == sorted(ours["claimant_claims_365d"].tolist())
    n = len(claims)
    print(f"claims: {n:,}; features: {matrix.shape[1]} ({sum(s.source == 'history' for s in builder.specs_)} history)")
    print(f"validation of every field:                       {t_validate:7.2f} s  ({n / t_validate:,.0f} claims/s)")
    print(f"ours, all {matrix.shape[1]} features incl. history:            {t_features:7.2f} s  "
          f"({n / t_features:,.0f} claims/s)")
    print("ONE history feature (claimant claims, 365 d):")
    print(f"  pandas groupby-rolling:                        {t_pandas:7.2f} s")
    print(f"  ours (sorted keys + binary search):            {t_ours_one:7.2f} s")
    print(f"  ratio pandas / ours:                           {t_pandas / t_ours_one:7.1f}x")


if __name__ == "__main__":
    main()
