"""The in-memory history index: exact after every write, rollback and other process's write."""

import random
from datetime import timedelta

import numpy as np
import pytest

from features.history import history_feature_requirements, history_features
from serving.history_index import HistoryIndex
from serving.store import ClaimStore

NAMES = sorted(history_feature_requirements())
FAILING = {"decision": None, "scores": {}}  # a response decide() cannot store: the transaction rolls back
STORED = {"decision": "AUTO_APPROVE", "deadlines": None,
          "scores": {"fraud_probability": 0.2, "approval_probability": 0.5, "anomaly_score": 0.4}}


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path / 'claims.db'}"


@pytest.fixture
def records(typed_claims):
    """Plain-Python claims (validated form) to vary: entity values and report times are set per test."""
    base = typed_claims.head(400).astype(object).where(typed_claims.head(400).notna(), None)
    return [{k: (v.to_pydatetime() if hasattr(v, "to_pydatetime") else v) for k, v in row.items() if v is not None}
            for row in base.to_dict(orient="records")]


def crowded(rng: random.Random, template: dict, claim_id: str) -> dict:
    """A claim whose entities come from a few values each (many shared, some absent), reported at
    one of a few moments (so some at the very same second, some exactly 90 or 365 days apart)."""
    claim = dict(template, claim_id=claim_id)
    for field, values in (("claimant_id", 7), ("policy_id", 5), ("provider_id", 4), ("payee_account", 4),
                          ("claimant_phone", 4), ("claimant_address", 3)):
        choice = rng.randrange(values + (0 if field in ("claimant_id", "policy_id") else 1))
        if choice == values:
            claim.pop(field, None)
        else:
            claim[field] = f"{field[:3].upper()}-{choice}"
    start = template["report_date"].replace(microsecond=0)
    claim["report_date"] = start + timedelta(days=rng.choice([0, 0, 1, 90, 365, 400]))
    return claim


def index_state(index: HistoryIndex) -> tuple:
    members = {field: {value: ids if isinstance(ids, str) else sorted(ids) for value, ids in values.items()}
               for field, values in index.members.items()}
    return index.claims, index.times, index.uses, index.first, members


def rebuilt(store: ClaimStore) -> HistoryIndex:
    with store.engine.connect() as conn:
        return HistoryIndex.from_rows(store._index_rows(conn))


def assert_exact(store: ClaimStore, probe: list[dict]) -> None:
    """The probe's features from the index equal the offline code's over the stored history, and
    afterwards (the probe undone) the index equals one built afresh from the store."""
    import pandas as pd

    online = store.history_features(probe, NAMES)
    frame = pd.DataFrame(probe)
    frame["report_date"] = frame["report_date"].astype("datetime64[s]")
    offline = history_features(frame, store.history(frame), NAMES)
    for name in NAMES:
        np.testing.assert_array_equal(online[name], offline[name], err_msg=name)
    fresh = rebuilt(store)
    assert index_state(store.history_index()) == index_state(fresh)
    assert store.history_index().seen == fresh.seen


def test_the_index_stays_exact_through_writes_rescoring_and_rollbacks_of_two_processes(url, records):
    """Two stores on one file stand for two processes. At random, either scores new claims, scores
    known claims again with other entities and times, or has its transaction rolled back. After
    each step, each one's features equal the offline code's and its index equals a rebuilt one."""
    rng = random.Random(7)
    ours, theirs = ClaimStore(url), ClaimStore(url)
    ours.seed(__import__("pandas").DataFrame([crowded(rng, records[i], f"C{i}") for i in range(30)]))
    made = 30
    rescored = rolled_back = 0
    for step in range(60):
        writer = rng.choice([ours, theirs])
        batch = []
        for _ in range(rng.randint(1, 5)):
            if rng.random() < 0.4:  # a claim already stored, scored again: new entities, new time
                known = rng.randrange(made)
                batch.append(crowded(rng, records[known % len(records)], f"C{known}"))
            else:
                batch.append(crowded(rng, records[made % len(records)], f"C{made}"))
                made += 1
        batch = list({c["claim_id"]: c for c in batch}.values())
        rescored += sum(int(c["claim_id"][1:]) < made - len(batch) for c in batch)
        if rng.random() < 0.25:
            rolled_back += 1
            with pytest.raises(Exception):
                writer.record(batch, [FAILING] * len(batch), "1")
        else:
            writer.record(batch, [STORED] * len(batch), "1")
        probe = [crowded(rng, records[(step * 7 + k) % len(records)], f"P{step}-{k}") for k in range(3)]
        probe.append(crowded(rng, records[0], f"C{rng.randrange(made)}"))  # a probe scoring a known claim again
        assert_exact(ours, probe)
        assert_exact(theirs, probe)
    assert rescored > 20 and rolled_back > 5


def test_a_claim_scored_again_elsewhere_reaches_this_index_when_it_was_the_newest(url, records):
    """The newest claim (highest seq) scored again by another process gets a higher seq, never its
    old one back: otherwise this process, having seen that seq, would never apply the new version."""
    rng = random.Random(3)
    ours, theirs = ClaimStore(url), ClaimStore(url)
    first = [crowded(rng, records[i], f"C{i}") for i in range(5)]
    ours.record(first, [STORED] * 5, "1")
    theirs.history_index()
    newest = dict(first[-1], claimant_id="CLA-NEW", payee_account="PAY-NEW")
    theirs.record([newest], [STORED], "1")
    probe = [dict(first[0], claim_id="P1", claimant_id="CLA-X", payee_account="PAY-NEW",
                  report_date=newest["report_date"] + timedelta(days=1))]
    assert ours.history_features(probe, ["payee_account_other_claimants"])["payee_account_other_claimants"][0] == 1
    assert_exact(ours, probe)


def test_a_rolled_back_transaction_leaves_the_index_as_it_was(url, records):
    rng = random.Random(5)
    store = ClaimStore(url)
    store.record([crowded(rng, records[i], f"C{i}") for i in range(20)], [STORED] * 20, "1")
    before = index_state(rebuilt(store))
    again = [crowded(rng, records[i], f"C{i}") for i in range(0, 20, 3)] + [crowded(rng, records[30], "NEW")]
    with pytest.raises(Exception):
        store.record(again, [FAILING] * len(again), "1")
    assert index_state(store.history_index()) == before
    assert store.count_claims() == 20


def test_the_database_path_and_the_index_give_the_same_features(tmp_path, records):
    """The same writes to two stores, one counting in SQL and one in memory: the same features."""
    rng = random.Random(11)
    in_sql = ClaimStore(f"sqlite:///{tmp_path / 'sql.db'}", history_in_memory=False)
    in_memory = ClaimStore(f"sqlite:///{tmp_path / 'memory.db'}")
    for step in range(10):
        batch = list({c["claim_id"]: c for c in (crowded(rng, records[(step * 5 + k) % 60], f"C{rng.randrange(40)}")
                                                 for k in range(6))}.values())
        for store in (in_sql, in_memory):
            store.record(batch, [STORED] * len(batch), "1")
    probe = [crowded(rng, records[k], f"P{k}") for k in range(40)] + [crowded(rng, records[1], "C3")]
    a, b = in_sql.history_features(probe, NAMES), in_memory.history_features(probe, NAMES)
    for name in NAMES:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert max(float(np.nanmax(a[name])) for name in NAMES) > 1  # real counts, not all zero
    # The review page's ring: the same claims, shares and order either way (newest first, capped).
    rings = 0
    for claim_id in sorted({c["claim_id"] for c in batch} | {"C1", "C7", "C20"}):
        ring = in_sql.case(claim_id)["ring"]
        assert ring == in_memory.case(claim_id)["ring"], claim_id
        rings += len(ring)
        assert ring_of(in_sql, claim_id, limit=3) == ring_of(in_memory, claim_id, limit=3)
    assert rings > 20


def ring_of(store: ClaimStore, claim_id: str, limit: int) -> list[dict]:
    import sqlalchemy as sa

    with store.engine.connect() as conn:
        claim = conn.execute(sa.select(store.claims).where(store.claims.c.claim_id == claim_id)).first()
        return store._ring(conn, claim, limit=limit)


def test_the_ring_shows_claims_another_process_stored_since(url, records):
    rng = random.Random(13)
    ours, theirs = ClaimStore(url), ClaimStore(url)
    ours.record([dict(crowded(rng, records[0], "MINE"), payee_account="PAY-RING")], [STORED], "1")
    assert all(r["claim_id"] != "THEIRS" for r in ours.case("MINE")["ring"])
    theirs.record([dict(crowded(rng, records[1], "THEIRS"), payee_account="PAY-RING")], [STORED], "1")
    ring = ours.case("MINE")["ring"]  # ours has scored nothing since: reading catches up
    assert ("THEIRS", "payee_account") in [(r["claim_id"], r["shares"][0]) for r in ring]
    assert_exact(ours, [crowded(rng, records[2], "P")])


def test_postgresql_counts_history_in_the_database(store_url):
    store = ClaimStore(store_url)
    assert store.history_in_memory == store_url.startswith("sqlite")
    assert (store.history_index() is None) == (not store.history_in_memory)
    if not store.history_in_memory:
        with pytest.raises(ValueError, match="SQLite only"):
            ClaimStore(store_url, history_in_memory=True)


def test_threads_and_another_process_scoring_and_reading_at_once_leave_the_index_exact(url, records):
    """Batches from three threads of one process, rolled-back ones among them, another process
    writing, and case pages read meanwhile: nothing deadlocks, every committed claim is in the
    index once, and it equals one rebuilt from the store."""
    from concurrent.futures import ThreadPoolExecutor

    ours, theirs = ClaimStore(url), ClaimStore(url)
    ours.seed(__import__("pandas").DataFrame([crowded(random.Random(1), records[i], f"C{i}") for i in range(20)]))

    def write(store: ClaimStore, worker: int) -> int:
        rng, kept = random.Random(worker), 0
        for step in range(25):
            batch = list({c["claim_id"]: c for c in (crowded(rng, records[(worker * 50 + step + k) % 400],
                                                              f"C{rng.randrange(120)}") for k in range(4))}.values())
            if step % 5 == 4:
                with pytest.raises(Exception):
                    store.record(batch, [FAILING] * len(batch), "1")
            else:
                store.record(batch, [STORED] * len(batch), "1")
                kept += 1
        return kept

    def read(worker: int) -> int:
        return sum(len(ours.case(f"C{i}")["ring"]) for i in range(0, 120, 3) if ours.case(f"C{i}") is not None)

    with ThreadPoolExecutor(6) as pool:
        writers = [pool.submit(write, ours, w) for w in range(3)] + [pool.submit(write, theirs, 9)]
        readers = [pool.submit(read, w) for w in range(2)]
        assert sum(f.result(timeout=120) for f in writers) == 80
        assert all(f.result(timeout=120) >= 0 for f in readers)
    assert_exact(ours, [crowded(random.Random(2), records[5], "PROBE")])
    assert len(ours.history_index().claims) == ours.count_claims()


def test_a_case_read_waits_for_a_transaction_in_progress_and_never_shows_its_claims(url, records):
    """While a scoring transaction holds claims in the index (not yet committed), a case page
    waits; after the rollback it shows none of them."""
    import threading

    store = ClaimStore(url)
    store.record([dict(crowded(random.Random(4), records[0], "SEEN"), payee_account="PAY-R")], [STORED], "1")
    holding, release = threading.Event(), threading.Event()

    def score_then_fail():
        with pytest.raises(RuntimeError):
            with store.intake() as intake:
                intake.put([dict(crowded(random.Random(6), records[1], "PENDING"), payee_account="PAY-R")])
                holding.set()
                release.wait(10)
                raise RuntimeError("scoring failed")

    writer = threading.Thread(target=score_then_fail)
    writer.start()
    assert holding.wait(10)
    rings: list = []
    reader = threading.Thread(target=lambda: rings.append(store.case("SEEN")["ring"]))
    reader.start()
    reader.join(0.5)
    assert reader.is_alive() and not rings  # waiting for the transaction to end
    release.set()
    writer.join(10), reader.join(10)
    assert rings and all(r["claim_id"] != "PENDING" for r in rings[0])
    assert "PENDING" not in store.history_index().claims
