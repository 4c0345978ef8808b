"""The tamper-evident ledger: a clean chain verifies, every kind of tampering is named first, appends
are atomic with the rows they cover, concurrent appenders never fork the chain, and the content
hashes survive the round trip through SQLite and PostgreSQL."""

import json
import math
import threading
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import numpy as np
import pytest
import sqlalchemy as sa

from serving.ledger import GENESIS, Ledger, LedgerEntry, canonical_json, digest, table_rows
from serving.review import outcomes_table
from serving.store import _decisions_table

BASE = datetime(2024, 2, 29, 23, 59, 58, 123456)


class Db:
    def __init__(self, url: str):
        self.engine = sa.create_engine(url)
        if self.engine.dialect.name == "sqlite":  # as the store runs it: readers never block the writer
            sa.event.listen(self.engine, "connect", lambda dbapi, _: dbapi.execute("PRAGMA journal_mode=WAL"))
        self.metadata = sa.MetaData()
        self.decisions = _decisions_table(self.metadata)
        self.outcomes = outcomes_table(self.metadata)
        self.ledger = Ledger(self.metadata)
        self.covered = {"decision": table_rows(self.decisions), "outcome": table_rows(self.outcomes)}
        self.metadata.drop_all(self.engine)  # PostgreSQL: one database for the session
        self.metadata.create_all(self.engine)

    def record(self, conn, decisions=(), outcomes=()) -> list:
        """Insert the rows and their ledger entries in the caller's transaction; the stored rows."""
        stored, entries = [], []
        for kind, table, rows in (("decision", self.decisions, decisions), ("outcome", self.outcomes, outcomes)):
            if rows:
                kept = conn.execute(table.insert().returning(*table.c, sort_by_parameter_order=True), list(rows)).all()
                stored += kept
                entries += [LedgerEntry.of(kind, r._mapping) for r in kept]
        self.ledger.append(conn, entries)
        return stored

    def verify(self, **kw):
        with self.engine.connect() as conn:
            return self.ledger.verify(conn, self.covered, **kw)

    def entry_of(self, kind: str, ref) -> int:
        t = self.ledger.table
        with self.engine.connect() as conn:
            return conn.execute(sa.select(t.c.seq).where(t.c.kind == kind, t.c.ref == str(ref))).scalar_one()

    def claim_of(self, table: sa.Table, id: int) -> str:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(table.c.claim_id).where(table.c.id == id)).scalar_one()

    def execute(self, *statements) -> None:
        with self.engine.begin() as conn:
            for s in statements:
                conn.execute(sa.text(s) if isinstance(s, str) else s)


def decision(i: int) -> dict:
    return {"claim_id": f"C-{i % 37}", "model_version": "3",
            "decision": ("STANDARD_REVIEW", "SIU_REFERRAL", "FAST_TRACK")[i % 3],
            "fraud_probability": (0.1 + 0.2) * (i % 5) / 4, "approval_probability": None if i % 7 == 0 else 1e-300 * i,
            "anomaly_score": i / 3, "response": json.dumps({"decision": i, "reasons": ["Zoë ✓ 𝄞", i / 7]}),
            "scored_at": BASE + timedelta(seconds=i, microseconds=i), "claim_digest": f"{i:064x}"}


def outcome(i: int) -> dict:
    return {"claim_id": f"C-{i}", "case_id": None if i % 4 else i, "outcome": ("paid_as_filed", "denied")[i % 2],
            "note": None if i % 3 else f"note {i}",
            "recorded_by": "adjuster-7", "recorded_at": BASE + timedelta(days=1, microseconds=i)}


@pytest.fixture
def db(store_url):
    db = Db(store_url)
    yield db
    db.metadata.drop_all(db.engine)
    db.engine.dispose()


@pytest.fixture
def filled(db):
    """300 entries: 30 transactions of 7 decisions and 3 outcomes each."""
    for t in range(30):
        with db.engine.begin() as conn:
            db.record(conn, [decision(10 * t + i) for i in range(7)], [outcome(10 * t + i) for i in range(3)])
    return db


def test_a_clean_ledger_verifies(filled):
    report = filled.verify()
    assert report.ok, report.summary()
    assert report.n_entries == 300 and report.rows_checked == {"decision": 210, "outcome": 90}
    assert report.head[0] == 300 and "intact" in report.summary()
    t = filled.ledger.table
    with filled.engine.connect() as conn:
        rows = conn.execute(sa.select(t).order_by(t.c.seq)).all()
    assert [r.seq for r in rows] == list(range(1, 301)) and rows[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in zip(rows, rows[1:]))
    with filled.engine.connect() as conn:  # a kind left out is chained, not cross-checked, and said so
        partial = filled.ledger.verify(conn, {"decision": filled.covered["decision"]})
    assert partial.ok and partial.unchecked == {"outcome": 90} and "not cross-checked" in partial.summary()


def test_an_empty_ledger_verifies(db):
    report = db.verify()
    assert report.ok and report.n_entries == 0 and report.head is None


def _forge_entry_at(db, seq: int) -> None:
    """Renumber entries seq.. one up and put a well-formed entry for a new decision in the gap."""
    t = db.ledger.table
    with db.engine.begin() as conn:
        forged = conn.execute(db.decisions.insert().returning(*db.decisions.c),
                              [decision(999) | {"decision": "AUTO_APPROVE"}]).one()
        prev = conn.execute(sa.select(t.c.hash).where(t.c.seq == seq - 1)).scalar_one()
        # Two steps: PostgreSQL checks the primary key row by row.
        conn.execute(t.update().where(t.c.seq >= seq).values(seq=-(t.c.seq + 1)))
        conn.execute(t.update().where(t.c.seq < 0).values(seq=-t.c.seq))
        fields = {"seq": seq, "kind": "decision", "ref": str(forged.id), "claim_id": forged.claim_id,
                  "content_digest": digest(dict(forged._mapping)), "recorded_at": BASE, "prev_hash": prev}
        conn.execute(t.insert(), [fields | {"hash": digest(fields)}])


TAMPERING = {
    # name: (tamper(db), first problem (from the start), problems found)
    "ledger entry edited": (
        lambda db: db.execute(db.ledger.table.update().where(db.ledger.table.c.seq == 57)
                              .values(content_digest="f" * 64)),
        lambda db: "entry 57 (", 2),
    "ledger entry deleted": (
        lambda db: db.execute(db.ledger.table.delete().where(db.ledger.table.c.seq == 120)),
        lambda db: "entry 120 is missing: removed from the ledger", 2),
    "forged entry inserted by renumbering": (
        lambda db: _forge_entry_at(db, 150),
        lambda db: "entry 150 was inserted: entry 151 is chained to entry 149", 2),
    "decision updated": (
        lambda db: db.execute("UPDATE decisions SET decision = 'AUTO_APPROVE' WHERE id = 42"),
        lambda db: f"entry {db.entry_of('decision', 42)} (decision 42, claim {db.claim_of(db.decisions, 42)}): "
                   f"the decision was altered after it was recorded", 1),
    "decision deleted": (
        lambda db: db.execute("DELETE FROM decisions WHERE id = 42"),
        lambda db: f"entry {db.entry_of('decision', 42)} (decision 42, claim {db.claim_of(db.decisions, 42)}): "
                   f"the decision is gone", 1),
    "decision inserted behind the ledger's back": (
        lambda db: db.execute(db.decisions.insert().values(decision(500) | {"id": 5000})),
        lambda db: f"decision 5000 (claim C-{500 % 37}) has no ledger entry", 1),
    "outcome updated": (
        lambda db: db.execute("UPDATE outcomes SET outcome = 'confirmed_fraud' WHERE id = 11"),
        lambda db: f"entry {db.entry_of('outcome', 11)} (outcome 11, claim {db.claim_of(db.outcomes, 11)}): "
                   f"the outcome was altered after it was recorded", 1),
}


@pytest.mark.parametrize("tampering", list(TAMPERING))
def test_tampering_is_named_first(filled, tampering):
    tamper, first, n_problems = TAMPERING[tampering]
    expected = first(filled)  # before tampering: it may read the ledger
    tamper(filled)
    report = filled.verify()
    assert not report.ok, tampering
    assert report.problems[0].startswith(expected), report.summary()
    assert report.n_problems == n_problems, report.summary()


def test_the_edited_entry_is_named_altered_and_renumbered_entries_as_one_run(filled):
    filled.execute(filled.ledger.table.update().where(filled.ledger.table.c.seq == 57)
                   .values(content_digest="f" * 64))
    problems = filled.verify().problems
    assert "the ledger entry was altered" in problems[0] and problems[1].startswith("entry 57 (")
    assert "which was itself altered" in problems[1]
    _forge_entry_at(filled, 150)
    problems = filled.verify().problems
    assert problems[2:] == ["entry 150 was inserted: entry 151 is chained to entry 149",
                            "entries 151..301 were renumbered (recorded as 150..300)"]


def test_a_rewritten_chain_is_caught_only_against_an_anchor(filled):
    with filled.engine.connect() as conn:
        anchor = filled.ledger.head(conn)
    seq = filled.entry_of("decision", 42)
    t = filled.ledger.table
    with filled.engine.begin() as conn:  # change the decision, then recompute the chain from its entry on
        conn.execute(sa.text("UPDATE decisions SET decision = 'AUTO_APPROVE' WHERE id = 42"))
        row = conn.execute(sa.select(filled.decisions).where(filled.decisions.c.id == 42)).one()
        prev = conn.execute(sa.select(t.c.hash).where(t.c.seq == seq - 1)).scalar_one()
        for e in conn.execute(sa.select(t).where(t.c.seq >= seq).order_by(t.c.seq)).all():
            fields = {k: e._mapping[k] for k in ("seq", "kind", "ref", "claim_id", "content_digest", "recorded_at")}
            if e.seq == seq:
                fields["content_digest"] = digest(dict(row._mapping))
            fields["prev_hash"] = prev
            prev = digest(fields)
            conn.execute(t.update().where(t.c.seq == e.seq).values(**fields, hash=prev))
    assert filled.verify().ok  # the limit of a chain kept with the data
    report = filled.verify(anchors=[anchor])
    assert report.problems == ["entry 300 is not the entry anchored at 300: the chain was rewritten at or before it"]
    filled.execute(t.delete().where(t.c.seq > 290), "DELETE FROM outcomes WHERE id > 87",
                   "DELETE FROM decisions WHERE id > 203")
    report = filled.verify(anchors=[anchor])
    assert report.problems == ["entry 300, anchored earlier, is missing: the ledger was cut after entry 290"]


def test_appending_after_verification_continues_the_chain(filled):
    assert filled.verify().ok
    with filled.engine.begin() as conn:
        filled.record(conn, [decision(1000)], [outcome(1000)])
    report = filled.verify()
    assert report.ok and report.n_entries == 302 and report.head[0] == 302


def test_a_rolled_back_transaction_leaves_neither_row_nor_entry(filled):
    with filled.engine.connect() as conn:
        with pytest.raises(RuntimeError):
            with conn.begin():
                filled.record(conn, [decision(1000)])
                raise RuntimeError("the response could not be sent")
        with pytest.raises(TypeError):  # content the ledger cannot represent: the decision is not kept either
            with conn.begin():
                kept = conn.execute(filled.decisions.insert().returning(*filled.decisions.c), [decision(1001)]).one()
                filled.ledger.append(conn, [LedgerEntry.of("decision", dict(kept._mapping) | {"extra": object()})])
        assert conn.execute(sa.select(sa.func.count()).select_from(filled.decisions)).scalar_one() == 210
    report = filled.verify()
    assert report.ok and report.n_entries == 300


def test_canonical_json_is_one_text_for_equal_content():
    assert canonical_json({"b": [1.0, 0.1 + 0.2, 1e-300], "a": "Zoë", "c": None}) == \
        '{"a":"Zoë","b":[1,0.30000000000000004,1e-300],"c":null}'
    assert canonical_json(BASE) == '"2024-02-29T23:59:58.123456"'
    assert canonical_json(datetime(2024, 1, 1)) == '"2024-01-01T00:00:00.000000"'
    assert canonical_json({"x": 1}) == canonical_json({"x": 1.0}) != canonical_json({"x": 1.5})
    assert canonical_json([math.nan, math.inf, -math.inf]) == '[null,"Infinity","-Infinity"]'
    aware = datetime(2024, 3, 1, 0, 59, 58, 123456, tzinfo=timezone(timedelta(hours=1)))
    assert canonical_json([np.float64(0.1), np.int64(3), Decimal("12.50"), aware]) == \
        canonical_json([0.1, 3, 12.5, BASE])
    with pytest.raises(TypeError):
        canonical_json({"x": b"bytes"})


def test_canonical_json_survives_the_database_round_trip(db):
    values = [{"fraud_probability": 0.1 + 0.2, "approval_probability": 1e-300, "anomaly_score": 5e-324},
              {"fraud_probability": 1.7976931348623157e308, "approval_probability": math.nan, "anomaly_score": -0.0},
              {"fraud_probability": 1, "approval_probability": 2.5, "anomaly_score": 1 / 3}]
    rows = [decision(i) | v | {"scored_at": BASE + timedelta(microseconds=i)} for i, v in enumerate(values)]
    with db.engine.begin() as conn:
        returned = conn.execute(db.decisions.insert().returning(*db.decisions.c, sort_by_parameter_order=True),
                                rows).all()
    with db.engine.connect() as conn:
        read = conn.execute(sa.select(db.decisions).order_by(db.decisions.c.id)).all()
    for sent, back, again in zip(rows, returned, read):
        assert canonical_json(dict(back._mapping)) == canonical_json(dict(again._mapping))
        assert canonical_json(dict(again._mapping)) == canonical_json(sent | {"id": again.id})


@pytest.mark.parametrize("threads", [2])
def test_concurrent_appenders_never_fork_the_chain(db, threads):
    start = threading.Barrier(threads)
    errors = []

    def appender(n: int):
        try:
            start.wait()
            for i in range(50):
                with db.engine.begin() as conn:
                    db.record(conn, [decision(1000 * n + i)])
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    workers = [threading.Thread(target=appender, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors
    report = db.verify()
    assert report.ok and report.n_entries == 50 * threads, report.summary()
    t = db.ledger.table
    with db.engine.connect() as conn:
        assert conn.execute(sa.select(t.c.seq).order_by(t.c.seq)).scalars().all() == list(range(1, 50 * threads + 1))


def test_verify_reads_every_page_of_the_chain_and_of_the_rows(filled, monkeypatch):
    """With pages of 3 the 300 entries span 100 pages: a tampering on a late page is still found."""
    import serving.ledger

    monkeypatch.setattr(serving.ledger, "CHUNK", 3)
    monkeypatch.setattr(serving.ledger, "LOOKUP_CHUNK", 3)
    report = filled.verify()
    assert report.ok and report.n_entries == 300 and report.head[0] == 300, report.summary()
    assert report.rows_checked == {"decision": 210, "outcome": 90}
    decision_entry = filled.entry_of("decision", 200)
    filled.execute(filled.ledger.table.update().where(filled.ledger.table.c.seq == 250)
                   .values(content_digest="f" * 64),
                   "UPDATE decisions SET decision = 'AUTO_APPROVE' WHERE id = 200")
    assert decision_entry > 250  # both on late pages
    report = filled.verify()
    assert report.n_problems == 3, report.summary()
    assert report.problems[0].startswith("entry 250 (") and "the ledger entry was altered" in report.problems[0]
    assert report.problems[2] == (f"entry {decision_entry} (decision 200, claim {filled.claim_of(filled.decisions, 200)}): "
                                  "the decision was altered after it was recorded")


@pytest.mark.parametrize("appenders", [6])
def test_appenders_on_separate_connections_in_real_concurrent_transactions_never_fork(db, appenders):
    """As replicas append: each on its own engine, all released at once round after round, each
    transaction holding several entries. Without the append lock two would read the same chain end."""
    rounds, per = 15, 3
    engines = [sa.create_engine(db.engine.url) for _ in range(appenders)]
    start = threading.Barrier(appenders)
    errors = []

    def appender(n: int):
        for r in range(rounds):
            try:
                start.wait()
                with engines[n].begin() as conn:
                    db.record(conn, [decision(10_000 * n + 10 * r + i) for i in range(per)])
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

    workers = [threading.Thread(target=appender, args=(n,)) for n in range(appenders)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    for engine in engines:
        engine.dispose()
    assert not errors, errors[:3]
    n = appenders * rounds * per
    report = db.verify()
    assert report.ok and report.n_entries == n, report.summary()
    t = db.ledger.table
    with db.engine.connect() as conn:
        rows = conn.execute(sa.select(t.c.seq, t.c.prev_hash, t.c.hash).order_by(t.c.seq)).all()
    assert [r.seq for r in rows] == list(range(1, n + 1))
    assert all(b.prev_hash == a.hash for a, b in zip(rows, rows[1:]))  # one chain, no fork
