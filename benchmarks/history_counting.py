"""Benchmark: history features counted in the database (six entity indexes) against the in-memory
history index (serving/history_index.py), the same scorer and batches, in-process.

Usage: `python benchmarks/history_counting.py HOME [SEED]`, where HOME is a home kept by
`bench_service.py --keep` (a registered model and a seeded claim store). Two copies of its store
are opened, one each way; the same batches of 256 new claims are scored on each, in turn, with and
without explanations, and every answer is compared. Prints medians per batch, the ratio, the time
to build the index and the memory it takes. Not a test.
"""

from __future__ import annotations

import gc
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
HOME = Path(sys.argv[1])
SEED = int(sys.argv[2]) if len(sys.argv) > 2 else 111
BATCHES = 26
os.environ.update(CLAIMTRIAGE_HOME=str(HOME), MLFLOW_TRACKING_URI=f"sqlite:///{HOME / 'mlflow.db'}")

from bench_service import claims_as_json  # noqa: E402
from models.config import Deadlines  # noqa: E402
from models.pyfunc import load_bundle  # noqa: E402
from serving.scoring import Scorer  # noqa: E402
from serving.store import ClaimStore  # noqa: E402
from training.generate import generate_claims  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 1e6


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="history-counting-"))
    for name in ("database", "memory"):
        shutil.copy(HOME / "claims.db", work / f"{name}.db")
    bundle = load_bundle("models:/claim-triage@champion")
    stores = {"database": ClaimStore(f"sqlite:///{work / 'database.db'}", background_checkpoints=True,
                                     history_in_memory=False),
              "memory": ClaimStore(f"sqlite:///{work / 'memory.db'}", background_checkpoints=True)}
    gc.collect()
    before, start = rss_mb(), time.perf_counter()
    index = stores["memory"].history_index()
    built = time.perf_counter() - start
    gc.collect()
    print(f"in-memory index of {len(index.claims):,} claims: built in {built:.1f} s, {rss_mb() - before:.0f} MB")
    scorers = {name: Scorer(bundle, "1", store, Deadlines()) for name, store in stores.items()}
    records = claims_as_json(256 * BATCHES, seed=SEED, book=generate_claims(200_000, seed=0))
    now = datetime(2026, 11, 30, 12)
    times = {(name, explain): [] for name in scorers for explain in (False, True)}
    differ = 0
    for i in range(BATCHES):
        batch, explain = records[256 * i: 256 * (i + 1)], bool(i % 2)
        answers = {}
        for name in (("database", "memory") if i % 4 < 2 else ("memory", "database")):
            start = time.perf_counter()
            answers[name] = scorers[name].score(batch, explain=explain, now=now).results
            times[(name, explain)].append((time.perf_counter() - start) * 1000)
        differ += sum(x != y for x, y in zip(answers["database"], answers["memory"]))
    print(f"answers that differ: {differ} of {256 * BATCHES}")
    for explain in (False, True):
        in_db, in_memory = (statistics.median(times[(name, explain)][2:]) for name in ("database", "memory"))
        print(f"{'explained' if explain else 'scores only'}: counted in the database {in_db:.1f} ms, in memory "
              f"{in_memory:.1f} ms per 256 ({256000 / in_db:.0f} -> {256000 / in_memory:.0f} claims/s, "
              f"{in_db / in_memory:.2f}x)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
