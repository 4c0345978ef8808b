"""Benchmark: anomaly detectors side by side on the same generated books (issue #15).

    .venv/bin/python benchmarks/bench_anomaly.py [--claims 200000] [--seeds 0 1 2]

Per book: the feature builder fitted on the training period, each detector fitted on the training
claims, its score read as a percentile of theirs, the alert cut-off chosen on the validation period
by the decision policy itself ([targets] anomaly_alert_rate), then on the test period: recall =
share of the generator's injected anomalies above the cut-off, flagged = share of all test claims
above it (the target is 1%). Fit time, the median time to score one claim alone, and for our
detectors the median time to explain it exactly as the service does (the forest from its per-leaf
tables, models/treeshap.py; the tail detector from its own terms).

pyod (a dev dependency) is run on the same inputs as ours (the amount as robust z of its log in its
line of business and loss type), missing values filled with the training median as the forest does.
Its ECOD scores new claims together with every training claim, so one claim alone costs a pass over
them all; ours keeps the training claims sorted and searches them.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import numpy as np

from features.validation import validate_claims
from models.anomaly import AnomalyDetector, TailDetector, input_columns
from models.treeshap import TreeTables
from models.config import Config
from models.policy import DecisionPolicy
from training.data import split_claims
from training.fit import fit_anomaly_detector, fit_builder, Extras
from training.generate import generate_claims

ONE_CLAIM_REPEATS = 200


class PyodOnInputs:
    """A pyod detector on the tail detector's inputs, with its training scores as the percentile reference."""

    def __init__(self, make: Callable, inputs: TailDetector):
        self.make, self.inputs = make, inputs

    def _prepare(self, matrix: np.ndarray) -> np.ndarray:
        values = self.inputs.input_values(matrix)
        return np.where(np.isnan(values), self.fill_, values)

    def fit(self, matrix: np.ndarray) -> "PyodOnInputs":
        self.fill_ = np.nan_to_num(np.nanmedian(self.inputs.input_values(matrix), axis=0))
        self.model_ = self.make().fit(self._prepare(matrix))
        self.reference_ = np.sort(self.model_.decision_scores_)
        return self

    def raw_score(self, matrix: np.ndarray) -> np.ndarray:
        return self.model_.decision_function(self._prepare(matrix))

    def percentile(self, raw: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.reference_, raw, side="right") / len(self.reference_)


def detectors(names: list[str], numeric: list[int], tails: TailDetector, seed: int) -> dict[str, Callable]:
    """Unfitted detectors by label, each a function of nothing (fitted in the timed step)."""
    from pyod.models.copod import COPOD
    from pyod.models.ecod import ECOD
    from pyod.models.hbos import HBOS

    named = input_columns(names)
    empirical = dict.fromkeys(tails.inputs, "empirical")
    return {
        "forest, every numeric feature (before #15)": lambda: AnomalyDetector(numeric, 100, 128, seed),
        "forest, the named claim features": lambda: AnomalyDetector(named, 100, 128, seed),
        "pyod ECOD": lambda: PyodOnInputs(ECOD, tails),
        "pyod COPOD": lambda: PyodOnInputs(COPOD, tails),
        "pyod HBOS": lambda: PyodOnInputs(HBOS, tails),
        "ECOD, ours (both tails, empirical)": lambda: TailDetector(names, empirical, "both", tails.group_by),
        "tails, upper, empirical amount": lambda: TailDetector(names, empirical, "upper", tails.group_by),
        "tails (default: upper, log-normal amount)": lambda: TailDetector(names, None, "upper", tails.group_by),
    }


def one_claim_seconds(work: Callable[[np.ndarray], object], claims: np.ndarray, repeats: int) -> float:
    """Median time of `work` on one claim alone (as the service meets them), over different claims."""
    times = []
    for i in range(repeats):
        claim = claims[i % len(claims):i % len(claims) + 1]
        start = time.perf_counter()
        work(claim)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def explain_one(detector) -> Callable[[np.ndarray], object] | None:
    """Exact contributions for one claim, the way models/explain.py gets them; None for pyod's."""
    if isinstance(detector, TailDetector):
        return detector.contributions
    if isinstance(detector, AnomalyDetector):
        tables = TreeTables.from_isolation_forest(detector.forest_)
        return lambda claim: tables.contributions(detector.prepare(claim))
    return None


def measure(n_claims: int, seed: int, config: Config) -> list[tuple]:
    claims = validate_claims(generate_claims(n_claims, seed=seed), require_labels=True).claims
    split = split_claims(claims, config.training.validation_share, config.training.test_share, seed)
    builder, matrix = fit_builder(claims, split, config.training, Extras())
    injected = claims["is_injected_anomaly"].to_numpy(dtype=bool)
    names = builder.feature_names_
    numeric = [j for j, s in enumerate(builder.specs_) if s.kind == "numeric"]
    default = fit_anomaly_detector(builder, matrix[split.train], config.training)
    rows = []
    for label, make in detectors(names, numeric, default, seed).items():
        make().fit(matrix[split.train][:500])  # numba compiles pyod's and shap's code on first use: not timed
        start = time.perf_counter()
        detector = make().fit(matrix[split.train])
        fit_seconds = time.perf_counter() - start
        percentile = {part: detector.percentile(detector.raw_score(matrix[mask]))
                      for part, mask in (("validation", split.validation), ("test", split.test))}
        n_val = int(split.validation.sum())
        policy = DecisionPolicy(config.targets).fit(np.zeros(n_val), percentile["validation"], None, None,
                                                    np.zeros(n_val, dtype=bool))
        alert = percentile["test"] > policy.thresholds_.anomaly_percentile
        repeats = ONE_CLAIM_REPEATS if "pyod" not in label else 10  # pyod: a pass over every training claim
        test = matrix[split.test]
        one = one_claim_seconds(lambda claim: detector.percentile(detector.raw_score(claim)), test, repeats)
        explain = explain_one(detector)
        explained = one_claim_seconds(explain, test, repeats) if explain else float("nan")
        rows.append((label, float(alert[injected[split.test]].mean()), float(alert.mean()), fit_seconds, one,
                     explained))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--claims", type=int, default=200_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    config = Config()
    target = config.targets.anomaly_alert_rate
    print(f"{args.claims:,} claims per book; alert target {target:.1%} of claims, cut-off chosen on validation;"
          " figures on the test period")
    print(f"{'seed':>4}  {'detector':44s} {'recall':>7} {'flagged':>8} {'fit s':>7} {'score one ms':>13} "
          f"{'explain one ms':>15}")
    for seed in args.seeds:
        for label, recall, flagged, fit_seconds, one, explained in measure(args.claims, seed, config):
            print(f"{seed:>4}  {label:44s} {recall:7.1%} {flagged:8.2%} {fit_seconds:7.2f} {one * 1e3:13.3f} "
                  f"{'n/a' if explained != explained else f'{explained * 1e3:.3f}':>15}", flush=True)


if __name__ == "__main__":
    main()
