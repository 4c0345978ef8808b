"""A measured prototype, not used by the service: history features from an index kept in memory
instead of the claim store's six on-disk entity indexes (see issue #3's notes: a decision).

Usage: `python benchmarks/prototype_memory_history.py HOME [SEED]`, where HOME is a home kept by
`bench_service.py --keep` (a registered model and a seeded claim store). Two copies of its store,
one without the entity indexes and with this index; the same batches of 256 scored on each,
in-process, in turn; every answer compared. Only what scoring needs is done (no undo on rollback,
no catch-up of other processes' writes, no review-page lookups): those are the work left.
"""
import bisect
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
SRC = sys.argv[1]
os.environ.update(CLAIMTRIAGE_HOME=SRC, MLFLOW_TRACKING_URI=f"sqlite:///{SRC}/mlflow.db")
import numpy as np
from features.history import COUNTED_ENTITIES, SHARED_ENTITIES, WINDOWS_DAYS, SECONDS_PER_DAY
from features.schema import ENTITY_FIELDS
from serving.store import ClaimStore, Intake
from serving.scoring import Scorer
from models.pyfunc import load_bundle
from models.config import Deadlines
from bench_service import claims_as_json
from training.generate import generate_claims
from serving.clock import as_datetime

EPOCH = datetime(1900, 1, 1)
def sec(d): return int((d - EPOCH).total_seconds())

class MemHistory:
    def __init__(self, conn):
        self.times = {f: defaultdict(list) for f in ENTITY_FIELDS}
        self.users = {f: defaultdict(lambda: defaultdict(list)) for f in SHARED_ENTITIES}
        self.first = {f: defaultdict(list) for f in SHARED_ENTITIES}
        self.claims = {}
        cols = ", ".join(["claim_id", "report_date", *ENTITY_FIELDS])
        t = time.perf_counter()
        for row in conn.exec_driver_sql(f"SELECT {cols} FROM claims"):
            self.add(row[0], sec(as_datetime(row[1])), dict(zip(ENTITY_FIELDS, row[2:])))
        print(f"built from {len(self.claims)} claims in {time.perf_counter() - t:.1f} s")
    def add(self, claim_id, s, values):
        if claim_id in self.claims:
            self.remove(claim_id)
        self.claims[claim_id] = (s, values)
        for f in ENTITY_FIELDS:
            v = values.get(f)
            if v is not None:
                bisect.insort(self.times[f][v], s)
        who = values.get("claimant_id")
        if who is not None:
            for f in SHARED_ENTITIES:
                v = values.get(f)
                if v is None: continue
                mine = self.users[f][v][who]
                old = mine[0] if mine else None
                bisect.insort(mine, s)
                if old is None or s < old:
                    fs = self.first[f][v]
                    if old is not None: fs.pop(bisect.bisect_left(fs, old))
                    bisect.insort(fs, s)
    def remove(self, claim_id):
        s, values = self.claims.pop(claim_id)
        for f in ENTITY_FIELDS:
            v = values.get(f)
            if v is not None:
                lst = self.times[f][v]; lst.pop(bisect.bisect_left(lst, s))
        who = values.get("claimant_id")
        if who is not None:
            for f in SHARED_ENTITIES:
                v = values.get(f)
                if v is None: continue
                mine = self.users[f][v][who]; old = mine[0]
                mine.pop(bisect.bisect_left(mine, s))
                fs = self.first[f][v]
                if not mine or mine[0] != old:
                    fs.pop(bisect.bisect_left(fs, old))
                    if mine: bisect.insort(fs, mine[0])
    def features(self, claims, wanted):
        out = {n: np.full(len(claims), np.nan) for n in wanted}
        for i, c in enumerate(claims):
            t = sec(c["report_date"])
            for f, prefix in COUNTED_ENTITIES.items():
                v = c.get(f)
                if v is None: continue
                lst = self.times[f][v]; before = bisect.bisect_left(lst, t)
                for days in WINDOWS_DAYS:
                    n = f"{prefix}_claims_{days}d"
                    if n in out: out[n][i] = before - bisect.bisect_left(lst, t - days * SECONDS_PER_DAY)
                if f == "claimant_id" and "days_since_claimant_last_claim" in out and before > 0:
                    out["days_since_claimant_last_claim"][i] = (t - lst[before - 1]) / SECONDS_PER_DAY
            who = c.get("claimant_id")
            for f, prefix in SHARED_ENTITIES.items():
                n = f"{prefix}_other_claimants"; v = c.get(f)
                if n not in out or v is None or who is None: continue
                users = bisect.bisect_left(self.first[f][v], t)
                mine = self.users[f][v].get(who)
                out[n][i] = users - (1 if mine and mine[0] < t else 0)
        return out

original_put, original_history = Intake.put, Intake.history
def put(self, claims, origin="scored"):
    original_put(self, claims, origin)
    mem = getattr(self.store, "mem", None)
    if mem is not None:
        for c in claims: mem.add(c["claim_id"], sec(c["report_date"]), {f: c.get(f) for f in ENTITY_FIELDS})
def history(self, claims, wanted):
    mem = getattr(self.store, "mem", None)
    return original_history(self, claims, wanted) if mem is None else mem.features(claims, tuple(sorted(wanted)))
Intake.put, Intake.history = put, history

work = Path(tempfile.mkdtemp(prefix="memory-history-"))
for name in ("a", "b"):
    shutil.copy(Path(SRC) / "claims.db", work / f"{name}.db")
bundle = load_bundle("models:/claim-triage@champion")
a = ClaimStore(f"sqlite:///{work / 'a.db'}", background_checkpoints=True)
b = ClaimStore(f"sqlite:///{work / 'b.db'}", background_checkpoints=True)
with b.engine.begin() as conn:
    for ix in b.claims.indexes: conn.exec_driver_sql(f"DROP INDEX IF EXISTS {ix.name}")
with b.engine.connect() as conn:
    b.mem = MemHistory(conn)
sa_, sb = Scorer(bundle, "1", a, Deadlines()), Scorer(bundle, "1", b, Deadlines())
recs = claims_as_json(256 * 26, seed=int(sys.argv[2]) if len(sys.argv) > 2 else 111,
                      book=generate_claims(200_000, seed=0))
now = datetime(2026, 11, 30, 12)
times = {(k, e): [] for k in "ab" for e in (False, True)}
mismatch = 0
for i in range(26):
    batch = recs[256 * i: 256 * (i + 1)]; explain = bool(i % 2)
    out = {}
    for k, sc in ((("a", sa_), ("b", sb)) if i % 4 < 2 else (("b", sb), ("a", sa_))):
        t = time.perf_counter(); out[k] = sc.score(batch, explain=explain, now=now).results; times[(k, explain)].append((time.perf_counter() - t) * 1000)
    mismatch += sum(x != y for x, y in zip(out["a"], out["b"]))
print("answers that differ:", mismatch, "of", 256 * 26)
for e in (False, True):
    ma, mb = statistics.median(times[("a", e)][2:]), statistics.median(times[("b", e)][2:])
    print(f"explain={e}: on-disk indexes {ma:.1f} ms, in-memory {mb:.1f} ms per 256 "
          f"({256000 / ma:.0f} -> {256000 / mb:.0f} claims/s, {ma / mb:.2f}x)")
shutil.rmtree(work, ignore_errors=True)
