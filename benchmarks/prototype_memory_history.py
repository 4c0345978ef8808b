"""Measured prototypes, not used by the service: history features from an index kept in memory
instead of the claim store's six on-disk entity indexes (an open decision on issue #3).

Usage: `python benchmarks/prototype_memory_history.py HOME [dicts|sqlite] [SEED]`, where HOME is a
home kept by `bench_service.py --keep` (a registered model and a seeded claim store). It makes two
copies of that store. One keeps the entity indexes. The other has none and uses the chosen index
instead:

- `dicts`: per entity value, its claims' report times in sorted Python lists, and per claimant the
  first use. History is counted by bisection.
- `sqlite`: the entity columns in an in-memory SQLite database with the same indexes, queried with
  the store's own history statement. Its transaction moves in step with the store's.

The same batches of 256 are scored on each copy, in-process and in turn, and every answer is
compared. Only what scoring needs is done. Undo on rollback (for `dicts`), catch-up of other
processes' writes and the review page's lookups are the work a real version would add. The claims
here are all new, so the `dicts` replacement path (a claim scored again) is written but not exercised.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
HOME = Path(sys.argv[1])
DESIGN = sys.argv[2] if len(sys.argv) > 2 else "dicts"
SEED = int(sys.argv[3]) if len(sys.argv) > 3 else 111
os.environ.update(CLAIMTRIAGE_HOME=str(HOME), MLFLOW_TRACKING_URI=f"sqlite:///{HOME / 'mlflow.db'}")

import numpy as np  # noqa: E402

from bench_service import claims_as_json  # noqa: E402
from features.history import COUNTED_ENTITIES, SECONDS_PER_DAY, SHARED_ENTITIES, WINDOWS_DAYS  # noqa: E402
from features.schema import ENTITY_FIELDS  # noqa: E402
from models.config import Deadlines  # noqa: E402
from models.pyfunc import load_bundle  # noqa: E402
from serving.clock import as_datetime  # noqa: E402
from serving.scoring import Scorer  # noqa: E402
from serving.store import ClaimStore, Intake, _history_indexes  # noqa: E402
from training.generate import generate_claims  # noqa: E402

EPOCH = datetime(1900, 1, 1)


def seconds(moment: datetime) -> int:
    return int((moment - EPOCH).total_seconds())


class DictIndex:
    """Sorted report times per entity value; per shared entity value, each claimant's times."""

    def __init__(self, conn) -> None:
        self.times = {f: defaultdict(list) for f in ENTITY_FIELDS}
        self.users = {f: defaultdict(lambda: defaultdict(list)) for f in SHARED_ENTITIES}
        self.first = {f: defaultdict(list) for f in SHARED_ENTITIES}  # sorted first uses per value
        self.claims: dict[str, tuple[int, dict]] = {}
        for row in conn.exec_driver_sql(f"SELECT claim_id, report_date, {', '.join(ENTITY_FIELDS)} FROM claims"):
            self.add(row[0], seconds(as_datetime(row[1])), dict(zip(ENTITY_FIELDS, row[2:])))

    def put(self, claims: list[dict]) -> None:
        for claim in claims:
            self.add(claim["claim_id"], seconds(claim["report_date"]), {f: claim.get(f) for f in ENTITY_FIELDS})

    def add(self, claim_id: str, t: int, values: dict) -> None:
        if claim_id in self.claims:  # a claim scored again replaces its earlier version
            self.remove(claim_id)
        self.claims[claim_id] = (t, values)
        for field, value in values.items():
            if value is not None:
                bisect.insort(self.times[field][value], t)
        for field, value, mine in self._uses(values):
            earliest = mine[0] if mine else None
            bisect.insort(mine, t)
            if earliest is None or t < earliest:
                first = self.first[field][value]
                if earliest is not None:
                    first.pop(bisect.bisect_left(first, earliest))
                bisect.insort(first, t)

    def _uses(self, values: dict):
        """(field, value, the claimant's report times with it) for each shared entity the claim has."""
        who = values.get("claimant_id")
        for field in SHARED_ENTITIES:
            if values.get(field) is not None and who is not None:
                yield field, values[field], self.users[field][values[field]][who]

    def remove(self, claim_id: str) -> None:
        t, values = self.claims.pop(claim_id)
        for field, value in values.items():
            if value is not None:
                times = self.times[field][value]
                times.pop(bisect.bisect_left(times, t))
        for field, value, mine in self._uses(values):
            earliest = mine[0]
            mine.pop(bisect.bisect_left(mine, t))
            if not mine or mine[0] != earliest:
                first = self.first[field][value]
                first.pop(bisect.bisect_left(first, earliest))
                if mine:
                    bisect.insort(first, mine[0])

    def history(self, intake: Intake, claims: list[dict], wanted) -> dict[str, np.ndarray]:
        out = {name: np.full(len(claims), np.nan) for name in wanted}
        for i, claim in enumerate(claims):
            t = seconds(claim["report_date"])
            for field, prefix in COUNTED_ENTITIES.items():
                value = claim.get(field)
                if value is None:
                    continue
                times = self.times[field][value]
                before = bisect.bisect_left(times, t)
                for days in WINDOWS_DAYS:
                    name = f"{prefix}_claims_{days}d"
                    if name in out:
                        out[name][i] = before - bisect.bisect_left(times, t - days * SECONDS_PER_DAY)
                if field == "claimant_id" and "days_since_claimant_last_claim" in out and before > 0:
                    out["days_since_claimant_last_claim"][i] = (t - times[before - 1]) / SECONDS_PER_DAY
            who = claim.get("claimant_id")
            for field, prefix in SHARED_ENTITIES.items():
                name, value = f"{prefix}_other_claimants", claim.get(field)
                if name not in out or value is None or who is None:
                    continue
                mine = self.users[field][value].get(who)
                out[name][i] = bisect.bisect_left(self.first[field][value], t) - (1 if mine and mine[0] < t else 0)
        return out

    def commit(self) -> None:
        pass

    def rollback(self) -> None:
        raise NotImplementedError("the dicts prototype has no undo")


class SqliteIndex:
    """The entity columns in an in-memory SQLite database, with the store's history indexes."""

    COLUMNS = ("claim_id", "report_date", *ENTITY_FIELDS)

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        self.lock = threading.Lock()
        self.db.execute(f"ATTACH DATABASE 'file:{path}?mode=ro' AS disk")
        self.db.execute(f"CREATE TABLE claims ({', '.join(c + ' TEXT' for c in self.COLUMNS)})")
        self.db.execute(f"INSERT INTO claims SELECT {', '.join(self.COLUMNS)} FROM disk.claims")
        self.db.execute("DETACH DATABASE disk")
        self.db.execute("CREATE UNIQUE INDEX ix_claim_id ON claims (claim_id)")
        for index in _history_indexes():
            columns = ", ".join(getattr(c, "name", c) for c in index.expressions)
            self.db.execute(f"CREATE INDEX {index.name} ON claims ({columns})")

    def put(self, claims: list[dict], moment) -> None:
        self.lock.acquire()
        self.db.execute("BEGIN")
        self.db.executemany("DELETE FROM claims WHERE claim_id = ?", [(c["claim_id"],) for c in claims])
        self.db.executemany(f"INSERT INTO claims VALUES ({', '.join('?' * len(self.COLUMNS))})",
                            [(c["claim_id"], moment(c["report_date"]), *[c.get(f) for f in ENTITY_FIELDS])
                             for c in claims])

    def history(self, intake: Intake, claims: list[dict], wanted) -> dict[str, np.ndarray]:
        db, real = self.db, intake.conn

        class OnTheIndex:  # the store's own statement, run on the in-memory database
            dialect = real.dialect

            def exec_driver_sql(self, sql, params):
                rows = db.execute(sql, params).fetchall()
                return type("Rows", (), {"all": lambda _: rows})()

        intake.conn = OnTheIndex()
        try:
            return ORIGINAL_HISTORY(intake, claims, wanted)
        finally:
            intake.conn = real

    def commit(self) -> None:
        self.db.execute("COMMIT")
        self.lock.release()

    def rollback(self) -> None:
        self.db.execute("ROLLBACK")
        self.lock.release()


ORIGINAL_PUT, ORIGINAL_HISTORY, ORIGINAL_INTAKE = Intake.put, Intake.history, ClaimStore.intake


def put(self, claims, origin="scored"):
    ORIGINAL_PUT(self, claims, origin)
    index = getattr(self.store, "index", None)
    if isinstance(index, SqliteIndex):
        index.put(claims, self.store._bulk.moment)
    elif index is not None:
        index.put(claims)


def history(self, claims, wanted):
    index = getattr(self.store, "index", None)
    return ORIGINAL_HISTORY(self, claims, wanted) if index is None else index.history(self, claims, tuple(sorted(wanted)))


@contextlib.contextmanager
def intake(self):
    index = getattr(self, "index", None)
    with ORIGINAL_INTAKE(self) as it:
        try:
            yield it
        except BaseException:
            if index is not None:
                index.rollback()
            raise
    if index is not None:
        index.commit()


Intake.put, Intake.history, ClaimStore.intake = put, history, intake


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="memory-history-"))
    for name in ("disk", "memory"):
        shutil.copy(HOME / "claims.db", work / f"{name}.db")
    bundle = load_bundle("models:/claim-triage@champion")
    disk = ClaimStore(f"sqlite:///{work / 'disk.db'}", background_checkpoints=True)
    memory = ClaimStore(f"sqlite:///{work / 'memory.db'}", background_checkpoints=True)
    with memory.engine.begin() as conn:
        for index in memory.claims.indexes:
            conn.exec_driver_sql(f"DROP INDEX IF EXISTS {index.name}")
    start = time.perf_counter()
    if DESIGN == "sqlite":
        memory.index = SqliteIndex(work / "memory.db")
    else:
        with memory.engine.connect() as conn:
            memory.index = DictIndex(conn)
    print(f"{DESIGN} index built in {time.perf_counter() - start:.1f} s")
    scorers = {"disk": Scorer(bundle, "1", disk, Deadlines()), "memory": Scorer(bundle, "1", memory, Deadlines())}
    records = claims_as_json(256 * 26, seed=SEED, book=generate_claims(200_000, seed=0))
    now = datetime(2026, 11, 30, 12)
    times = {(name, explain): [] for name in scorers for explain in (False, True)}
    differ = 0
    for i in range(26):
        batch, explain = records[256 * i: 256 * (i + 1)], bool(i % 2)
        answers = {}
        for name in (("disk", "memory") if i % 4 < 2 else ("memory", "disk")):
            start = time.perf_counter()
            answers[name] = scorers[name].score(batch, explain=explain, now=now).results
            times[(name, explain)].append((time.perf_counter() - start) * 1000)
        differ += sum(x != y for x, y in zip(answers["disk"], answers["memory"]))
    print(f"answers that differ: {differ} of {256 * 26}")
    for explain in (False, True):
        on_disk, in_memory = (statistics.median(times[(name, explain)][2:]) for name in ("disk", "memory"))
        print(f"{'explained' if explain else 'scores only'}: on-disk indexes {on_disk:.1f} ms, {DESIGN} index "
              f"{in_memory:.1f} ms per 256 ({256000 / on_disk:.0f} -> {256000 / in_memory:.0f} claims/s, "
              f"{on_disk / in_memory:.2f}x)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
