"""Drift of 20,000 claims x 60 columns against a reference of 20,000: our scipy path (monitoring/drift.py)
beside Evidently 0.7's DataDriftPreset, when an interpreter with Evidently is given.

    .venv/bin/python benchmarks/bench_drift.py [--evidently-python /tmp/evd/bin/python]

Evidently is not a dependency (README, "Drift"): give the interpreter of a throwaway venv holding it.
The same seeded columns are generated on both sides; medians of 3 runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import numpy as np
import pandas as pd

ROWS, NUMERIC, CATEGORICAL, SHIFTED, RUNS = 20_000, 50, 10, 5, 3


def periods(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A reference and a current period; the first SHIFTED numeric columns and one categorical move."""
    rng = np.random.default_rng(seed)
    levels = np.array([f"level_{i}" for i in range(8)])

    def frame(shift: bool) -> pd.DataFrame:
        data = {}
        for j in range(NUMERIC):
            values = rng.lognormal(mean=7.0, sigma=1.0, size=ROWS)
            data[f"num_{j}"] = values * (3.0 if shift and j < SHIFTED else 1.0)
        for j in range(CATEGORICAL):
            weights = np.linspace(1.0, 4.0, len(levels))[::-1 if shift and j == 0 else 1]
            data[f"cat_{j}"] = pd.array(rng.choice(levels, size=ROWS, p=weights / weights.sum()), dtype="str")
        return pd.DataFrame(data)

    return frame(False), frame(True)


def median_seconds(run) -> float:
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def ours() -> dict:
    """Profile the reference (fixed bins, a 5,000-row sample), then PSI + KS/chi-squared per column."""
    from monitoring.drift import drift
    from monitoring.profile import SAMPLE_ROWS, ColumnProfile, ReferenceProfile

    reference, current = periods()

    def profile() -> ReferenceProfile:
        columns = tuple(ColumnProfile.from_reference(c, "feature", "categorical" if c.startswith("cat") else "numeric",
                                                     reference[c], None) for c in reference.columns)
        return ReferenceProfile(columns, reference.sample(SAMPLE_ROWS, random_state=0), {})

    built = profile()
    no_scores = pd.DataFrame(index=current.index)
    rows = drift(built, current, no_scores)
    return {"profile_s": median_seconds(profile), "drift_s": median_seconds(lambda: drift(built, current, no_scores)),
            "drifted": sorted(r.name for r in rows if r.psi > 0.25)}


def evidently() -> dict:
    """Evidently's import and its DataDriftPreset on the same periods (run inside its own venv)."""
    started = time.perf_counter()
    from evidently import Report
    from evidently.presets import DataDriftPreset

    imported = time.perf_counter() - started
    reference, current = periods()
    seconds = median_seconds(lambda: Report([DataDriftPreset()]).run(current, reference))
    return {"import_s": imported, "drift_s": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--evidently-python", help="an interpreter with evidently installed (a throwaway venv)")
    parser.add_argument("--evidently-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.evidently_only:
        print(json.dumps(evidently()))
        return
    print(f"{ROWS:,} claims x {NUMERIC + CATEGORICAL} columns against a reference of {ROWS:,}, medians of {RUNS}")
    result = ours()
    print(f"ours (scipy): profile {result['profile_s']:.2f} s, drift {result['drift_s']:.2f} s; "
          f"PSI > 0.25: {', '.join(result['drifted'])}")
    if not args.evidently_python:
        print("evidently: not run (not a dependency; give --evidently-python of a venv that has it)")
        return
    done = subprocess.run([args.evidently_python, __file__, "--evidently-only"], capture_output=True, text=True)
    if done.returncode != 0:
        print("evidently: failed in that interpreter:\n  " + done.stderr.strip().splitlines()[-1])
        return
    theirs = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"evidently: import {theirs['import_s']:.2f} s, DataDriftPreset {theirs['drift_s']:.2f} s")


if __name__ == "__main__":
    sys.exit(main())
