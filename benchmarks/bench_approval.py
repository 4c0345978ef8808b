"""Does the automatic-approval promise hold on the next period? The old threshold rule beside the new one.

    .venv/bin/python benchmarks/bench_approval.py [--claims 200000 1000000] [--seeds 0 1 2] [--scores DIR]

For each generated book: fit the bundle once (training.fit.fit_bundle on the time split of the
repository's claimtriage.toml), then choose the approval threshold on the validation period by
each rule and apply it to the test period (the newest claims, never seen by either choice):
- old: the lowest threshold whose validation precision's one-sided Wilson lower bound is >= 99%;
- new: the lower prediction bound (claimtriage.toml's z) for the next period's approvals, against the
  target raised by the fall of precision across the validation period (models/policy.py).
Printed per book and rule: share of test claims approved, how many, the realised precision (payable
as filed and not fraud) with its two-sided 95% Wilson interval, the generator's true precision of
the same claims (mean true_paid_as_filed_prob: the figure without the labels' chance), the margin
applied, and whether the realised precision meets the target.

A 1,000,000-claim fit takes about ten minutes on two cores; `--scores DIR` keeps each book's
validation and test scores there (b<claims>_s<seed>.npz) and reuses them on the next run, so the
rules can be compared again without refitting (delete the files after changing the models or the
generator).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from features.validation import validate_claims
from models.config import DecisionTargets, load_config
from models.policy import AUTO_APPROVE, DecisionPolicy
from training.data import split_claims
from training.evaluate import approval_metrics
from training.fit import fit_bundle
from training.generate import generate_claims

FIELDS = ("fraud", "anomaly", "approval", "blocked", "payable", "time", "truth")


def book_scores(n_claims: int, seed: int, cache: Path | None) -> dict[str, np.ndarray]:
    """Validation and test scores of one generated book (val_* and test_* arrays), fitted or cached."""
    path = None if cache is None else cache / f"b{n_claims}_s{seed}.npz"
    if path is not None and path.exists():
        with np.load(path) as saved:
            return {k: saved[k] for k in saved.files}
    started = time.perf_counter()
    config = load_config()
    claims = validate_claims(generate_claims(n_claims, seed=seed), require_labels=True).claims
    claims = claims.sort_values("report_date", kind="stable").reset_index(drop=True)
    split = split_claims(claims, config.training.validation_share, config.training.test_share, config.training.seed)
    fitted = fit_bundle(claims, split, config)
    arrays = {}
    for name, mask in (("val", split.validation), ("test", split.test)):
        part = claims.loc[mask]
        s = fitted.bundle.model_scores(part, fitted.matrix[mask])
        arrays.update({f"{name}_fraud": s.fraud, f"{name}_anomaly": s.anomaly, f"{name}_approval": s.approval,
                       f"{name}_blocked": s.blocked, f"{name}_payable": fitted.payable[mask],
                       f"{name}_time": part["report_date"].to_numpy(dtype="datetime64[s]").astype(np.int64),
                       f"{name}_truth": part["true_paid_as_filed_prob"].to_numpy(dtype=float)})
    print(f"  fitted {n_claims:,} claims, seed {seed}, in {time.perf_counter() - started:.0f} s", flush=True)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **arrays)
    return arrays


def judged(scores: dict[str, np.ndarray], targets: DecisionTargets) -> dict[str, float]:
    """Threshold chosen on the validation period by `targets`' rule; the test period's figures under it."""
    v = {f: scores[f"val_{f}"] for f in FIELDS}
    t = {f: scores[f"test_{f}"] for f in FIELDS}
    policy = DecisionPolicy(targets).fit(v["fraud"], v["anomaly"], v["approval"], v["payable"], v["blocked"],
                                         v["time"])
    approved = policy.decide(t["fraud"], t["anomaly"], t["approval"], t["blocked"]) == AUTO_APPROVE
    th = policy.thresholds_
    m = approval_metrics(approved, t["payable"], th.auto_approve_drift_margin)
    m.update(rate=float(approved.mean()), truth=float(t["truth"][approved].mean()) if approved.any() else float("nan"),
             threshold=th.auto_approve_probability or float("nan"), validation_rate=th.validation_auto_approve_rate)
    return m


def row(label: str, m: dict[str, float], target: float) -> str:
    held = m["test_auto_approve_precision"] >= target
    return (f"{label:4s} thr {m['threshold']:.4f} margin {m['auto_approve_drift_margin']:.2%} | "
            f"approved {m['rate']:6.2%} ({int(m['test_auto_approved']):>6,}) | precision "
            f"{m['test_auto_approve_precision']:.3%} [{m['test_auto_approve_precision_low']:.2%}, "
            f"{m['test_auto_approve_precision_high']:.2%}] | true {m['truth']:.3%} | {'PASS' if held else 'FAIL'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--claims", type=int, nargs="+", default=[200_000, 1_000_000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--scores", type=Path, help="directory keeping each book's scores between runs")
    args = parser.parse_args()
    new = load_config().targets
    # The old rule exactly as it was: the validation share's one-sided 95% bound, no drift margin.
    old = replace(new, auto_approve_bound="validation", auto_approve_drift_blocks=0, auto_approve_confidence_z=1.645)
    passed = {"old": 0, "new": 0}
    for n_claims in args.claims:
        for seed in args.seeds:
            scores = book_scores(n_claims, seed, args.scores)
            print(f"{n_claims:,} claims, seed {seed}: test period {len(scores['test_payable']):,} claims")
            for label, targets in (("old", old), ("new", new)):
                m = judged(scores, targets)
                passed[label] += m["test_auto_approve_precision"] >= new.auto_approve_precision
                print("  " + row(label, m, new.auto_approve_precision), flush=True)
    books = len(args.claims) * len(args.seeds)
    print(f"target {new.auto_approve_precision:.0%} held on the test period: old {passed['old']}/{books} books, "
          f"new {passed['new']}/{books}")


if __name__ == "__main__":
    main()
