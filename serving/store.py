"""The claim store: every claim the service knows (for history features) and every decision it gave.

SQLAlchemy Core over a SQLite file by default or PostgreSQL through a database URL. A claim is
kept once per claim_id (scoring it again replaces it, so it never counts twice in anyone's
history); every decision is kept.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import threading
import time
from datetime import datetime
from types import SimpleNamespace
from typing import Any, Iterable, Iterator, Mapping

import numpy as np
import pandas as pd
import pydantic_core
import sqlalchemy as sa

from features.graph import GRAPH_FEATURES, OUTCOME_TIME_FIELD, GraphSettings
from features.history import TIME_FIELDS
from features.schema import CLAIM_FIELDS, ENTITY_FIELDS, FIELDS_BY_NAME, ClaimField
from models.policy import SIU_REFERRAL
from serving.access import Access
from serving.bulk import BulkInsert, key_chunks
from serving.clock import utc_now
from serving.graph_history import IndexLookup, SqlLookup, graph_history
from serving.history_index import INDEXED_FIELDS, MEMBER_FIELDS, RING_FIELDS, HistoryIndex
from serving.history_sql import ENTITY_INDEX_NAMES, SqlHistory, history_indexes
from serving.ledger import MAX_PROBLEMS, Covered, Ledger, LedgerEntry, LedgerReport, digest, table_rows
from serving.neighbourhood import FAN_OUT, SHOWN, neighbourhood, newest_first
from serving.review import OUTCOME_LABELS, RESOLVED, Review, cases_table, outcomes_table

_SQL_TYPES = {"string": sa.String(128), "date": sa.DateTime(), "datetime": sa.DateTime(), "number": sa.Float(),
              "integer": sa.Integer(), "boolean": sa.Boolean()}
SEED_CHUNK = 10_000
# What the case page's drawing links claims by: the ring's identities, and the claimant and policy
# (the claim graph links by those too, features/graph.py).
DRAWN_FIELDS = MEMBER_FIELDS
FRAUD_OUTCOMES = tuple(name for name, (is_fraud, _) in OUTCOME_LABELS.items() if is_fraud)
SQLITE_WRITE_WAIT_SECONDS = 30.0
log = logging.getLogger("claimtriage.store")


def _claims_table(metadata: sa.MetaData) -> sa.Table:
    # Only the key is required of a stored claim: a version trained on an extract that lacks a
    # canonical field (no claimant ids, no report dates) keeps it as absent, never invented.
    columns = [sa.Column(f.name, _SQL_TYPES[f.kind], primary_key=f.name == "claim_id", nullable=f.name != "claim_id")
               for f in CLAIM_FIELDS]
    columns += [sa.Column("extras", sa.Text(), nullable=True),
                sa.Column("origin", sa.String(16), nullable=False),
                sa.Column("stored_at", sa.DateTime(), nullable=False),
                # The order claims were written in (SQLite): what an in-memory history index has
                # not seen yet. A claim scored again gets a new one. Empty on PostgreSQL.
                sa.Column("seq", sa.BigInteger(), nullable=True)]
    return sa.Table("claims", metadata, *columns, sa.Index("ix_claims_seq", "seq"))


# Single-column indexes of stores written before the composite ones: redundant, so dropped.
_LEGACY_INDEXES = tuple(f"ix_claims_{name}" for name in ENTITY_FIELDS)
# What the in-memory history index reads of each claim (`HistoryIndex.from_rows`, `catch_up`).
# A claim's moment in history is its report, else its loss (features.history.TIME_FIELDS).
_INDEX_COLUMNS = ", ".join(("claim_id", "seq", f"coalesce({', '.join(TIME_FIELDS)})", *INDEXED_FIELDS))


def _confirmations_table(metadata: sa.MetaData) -> sa.Table:
    """When fraud was confirmed for claims of a training history (its extract's `fraud_confirmed_at`);
    for claims decided here, the review's confirmed-fraud outcomes say it. The claim graph reads both."""
    return sa.Table(
        "fraud_confirmations", metadata,
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("claim_id", sa.String(128), nullable=False, unique=True),
        sa.Column("confirmed_at", sa.DateTime(), nullable=False),
    )


def _decisions_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "decisions", metadata,
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("claim_id", sa.String(128), nullable=False, index=True),
        sa.Column("model_version", sa.String(32), nullable=False),
        sa.Column("decision", sa.String(32), nullable=False),
        sa.Column("fraud_probability", sa.Float(), nullable=False),
        sa.Column("approval_probability", sa.Float(), nullable=True),
        sa.Column("anomaly_score", sa.Float(), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),
        sa.Column("scored_at", sa.DateTime(), nullable=False, index=True),
        # `claim_digest` of the claim row this decision's transaction stored: with the decision's
        # ledger entry, it covers the claim too. Empty in decisions made before it was kept.
        sa.Column("claim_digest", sa.String(64), nullable=True),
    )


class ClaimStore:
    """Claims and decisions in one relational database."""

    def __init__(self, url: str, background_checkpoints: bool = False, history_in_memory: bool | None = None):
        """`background_checkpoints` (SQLite only, for the service): fold the write-ahead log into
        the database on a background thread every half second instead of inside whichever
        request's commit crosses SQLite's threshold, the one slow request in a hundred otherwise.

        `history_in_memory`: count history features in an index held in memory
        (`serving.history_index`) instead of in the database. The default, and only possible,
        on SQLite, whose one writer at a time lets every process keep its index exact. On
        PostgreSQL (several writers at once) they are counted in the database. Which way a
        store counts decides which indexes its claims table has, so one store is best opened
        one way; switching rebuilds them."""
        self.url = url
        self.engine = sa.create_engine(url, future=True)
        self.sequenced = self.engine.dialect.name == "sqlite"
        if history_in_memory and not self.sequenced:
            raise ValueError(f"history is counted in memory on SQLite only, not {self.engine.dialect.name}")
        self.history_in_memory = self.sequenced if history_in_memory is None else history_in_memory
        if self.engine.dialect.name == "sqlite":
            # WAL lets readers go on while a decision commits; the service is one writer per replica.
            sa.event.listen(self.engine, "connect",
                            functools.partial(_sqlite_pragmas, autocheckpoint=not background_checkpoints))
            if background_checkpoints:
                threading.Thread(target=_checkpoint_forever, args=(self.engine,), name="wal-checkpoint",
                                 daemon=True).start()
        self.metadata = sa.MetaData()
        self.claims = _claims_table(self.metadata)
        if not self.history_in_memory:
            history_indexes(self.claims)  # constructed on the table, so created with it
        self.decisions = _decisions_table(self.metadata)
        self.confirmations = _confirmations_table(self.metadata)
        self._bulk = BulkInsert(self.engine.dialect)
        self.review = Review(cases_table(self.metadata), outcomes_table(self.metadata), insert=self._bulk)
        self.ledger = Ledger(self.metadata, insert=self._bulk)
        self.access = Access(self.metadata)
        self.metadata.create_all(self.engine)
        self._upgrade()
        self._field_names = [f.name for f in CLAIM_FIELDS]
        self._sql_history = SqlHistory(self.claims.name, self._bulk)
        self._index: HistoryIndex | None = None
        self._index_building = threading.Lock()

    def _upgrade(self) -> None:
        """A store created by an earlier version, or opened the other way (see `history_in_memory`),
        gets the claims table's `seq` and the indexes it lacks (once; minutes for millions of
        claims), and loses those it no longer needs."""
        inspector = sa.inspect(self.engine)
        if "claim_digest" not in {column["name"] for column in inspector.get_columns(self.decisions.name)}:
            with self.engine.begin() as conn:
                conn.exec_driver_sql("ALTER TABLE decisions ADD COLUMN claim_digest VARCHAR(64)")
        self.review.upgrade(self.engine)
        self._relax_required_columns(inspector)
        inspector = sa.inspect(self.engine)
        if "seq" not in {column["name"] for column in inspector.get_columns(self.claims.name)}:
            with self.engine.begin() as conn:
                conn.exec_driver_sql("ALTER TABLE claims ADD COLUMN seq BIGINT")
        have = {ix["name"] for ix in inspector.get_indexes(self.claims.name)}
        missing = [ix for ix in self.claims.indexes if ix.name not in have]
        unneeded = [name for name in have - {ix.name for ix in self.claims.indexes}
                    if name in _LEGACY_INDEXES or name in ENTITY_INDEX_NAMES]
        if not missing and not unneeded:
            return
        with self.engine.begin() as conn:
            for index in missing:
                log.info("claim store: building index %s", index.name)
                index.create(conn)
            for name in unneeded:
                log.info("claim store: dropping index %s", name)
                conn.exec_driver_sql(f"DROP INDEX {name}")

    def _relax_required_columns(self, inspector) -> None:
        """A store written before every claim field but the key could be absent: drop those NOT NULL
        constraints (PostgreSQL alters the columns; SQLite, which cannot, copies the table once)."""
        required = [column["name"] for column in inspector.get_columns(self.claims.name)
                    if not column["nullable"] and column["name"] in _CANONICAL_SET and column["name"] != "claim_id"]
        if not required:
            return
        log.info("claim store: claim fields %s may now be absent", ", ".join(required))
        if self.engine.dialect.name == "postgresql":
            with self.engine.begin() as conn:
                for name in required:
                    conn.exec_driver_sql(f'ALTER TABLE claims ALTER COLUMN "{name}" DROP NOT NULL')
            return
        kept = [column["name"] for column in inspector.get_columns(self.claims.name)]
        names = ", ".join(f'"{name}"' for name in kept if name in self.claims.c)
        with self.engine.connect() as conn:
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # pysqlite leaves DDL outside any transaction otherwise
            try:
                for index in inspector.get_indexes(self.claims.name):
                    conn.exec_driver_sql(f'DROP INDEX "{index["name"]}"')
                conn.exec_driver_sql("ALTER TABLE claims RENAME TO claims_required_fields")
                self.claims.create(conn)
                conn.exec_driver_sql(f"INSERT INTO claims ({names}) SELECT {names} FROM claims_required_fields")
                conn.exec_driver_sql("DROP TABLE claims_required_fields")
                conn.exec_driver_sql("COMMIT")
            except BaseException:
                conn.exec_driver_sql("ROLLBACK")
                raise

    def history_index(self) -> HistoryIndex | None:
        """The in-memory history index, built from the store on first use (seconds for a few
        hundred thousand claims); None where history is counted in the database."""
        if self._index is not None or not self.history_in_memory:  # every transaction asks: no lock once built
            return self._index
        with self._index_building:
            if self._index is None:
                started = time.perf_counter()
                with self.engine.connect() as conn:  # one statement: one snapshot of the store
                    index = HistoryIndex.from_rows(self._index_rows(conn))
                    self._catch_up(conn, index)  # and the outcomes confirming fraud
                    self._index = index
                log.info("claim store: history index of %d claims built in %.1f s", len(self._index.claims),
                         time.perf_counter() - started)
            return self._index

    def count_claims(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(self.claims)).scalar_one()

    def seed(self, claims: pd.DataFrame, origin: str = "training") -> int:
        """Load known claims (the training history) in chunks; claims already stored are kept."""
        stored_at = utc_now()
        with self.engine.begin() as conn:
            first_seq = self._next_seq(conn)
            existing = set(conn.execute(sa.select(self.claims.c.claim_id)).scalars())
            # Only the claims not stored yet are converted: a service seeds at every start.
            new = claims.loc[~claims["claim_id"].astype("str").isin(existing).to_numpy()] if existing else claims
            fresh = [_row(rec, origin, stored_at) for rec in _records(new)]
            if first_seq is not None:
                for seq, row in enumerate(fresh, first_seq):
                    row["seq"] = seq
            for start in range(0, len(fresh), SEED_CHUNK):
                self._bulk(conn, self.claims, fresh[start:start + SEED_CHUNK])
            if OUTCOME_TIME_FIELD in new.columns:
                confirmed = new.loc[new[OUTCOME_TIME_FIELD].notna(), ["claim_id", OUTCOME_TIME_FIELD]]
                rows = [{"claim_id": str(claim_id), "confirmed_at": moment.to_pydatetime()}
                        for claim_id, moment in confirmed.itertuples(index=False)]
                for start in range(0, len(rows), SEED_CHUNK):
                    self._bulk(conn, self.confirmations, rows[start:start + SEED_CHUNK])
        return len(fresh)

    def history(self, claims: pd.DataFrame, columns: Iterable[str] | None = None) -> pd.DataFrame:
        """Every stored claim sharing an entity (claimant, policy, payee, phone, address, provider) with `claims`.

        `columns` limits what is read back.
        """
        names = self._field_names if columns is None else [n for n in self._field_names if n in set(columns)]
        conditions = []
        for name in ENTITY_FIELDS:
            if name in claims.columns:
                values = [v for v in claims[name].dropna().unique().tolist() if v != ""]
                if values:
                    conditions.append(self.claims.c[name].in_(values))
        if not conditions:
            return self._frame([], names)
        query = sa.select(*[self.claims.c[n] for n in names]).where(sa.or_(*conditions))
        with self.engine.connect() as conn:
            return self._frame(conn.execute(query).all(), names)

    def claims_by_id(self, claim_ids: list[str]) -> pd.DataFrame:
        """The claims with these ids as stored (canonical dtypes), read in parts of IN lists a database takes."""
        rows = []
        with self.engine.connect() as conn:
            for part in key_chunks(claim_ids):
                rows += conn.execute(sa.select(*[self.claims.c[n] for n in self._field_names])
                                     .where(self.claims.c.claim_id.in_(part))).all()
        return self._frame(rows, self._field_names)

    @contextlib.contextmanager
    def intake(self, keep: bool = True) -> Iterator[Intake]:
        """One scoring transaction (see `Intake`): committed when the block ends (rolled back
        instead with `keep=False`), undone if it raises. The history index follows the outcome."""
        index = self.history_index()
        with self.engine.connect() as conn:
            intake = Intake(self, conn, index)
            transaction = conn.begin()
            kept = False
            try:
                yield intake
                if keep:
                    transaction.commit()
                    kept = True
            finally:
                try:
                    if not kept:
                        transaction.rollback()
                finally:
                    intake.end(kept)

    def _next_seq(self, conn: sa.Connection) -> int | None:
        """On SQLite: takes the database's write lock for the rest of the transaction, then gives
        the next `seq`. Read before any of the transaction's own deletes, so a claim scored again
        never gets back the seq its earlier version had (other processes would skip it)."""
        if not self.sequenced:
            return None
        self.ledger.lock(conn)
        return conn.exec_driver_sql("SELECT coalesce(max(seq), 0) + 1 FROM claims").scalar_one()

    def record(self, claims: pd.DataFrame | list[dict], responses: list[dict], model_version: str) -> None:
        """Store the claims (replacing earlier versions of the same claim_id) and their decisions, atomically."""
        records = claims if isinstance(claims, list) else _records(claims)
        with self.intake() as intake:
            intake.put(records)
            intake.decide(records, responses, model_version)

    def history_features(self, claims: list[dict], wanted: Iterable[str],
                         graph: GraphSettings | None = None) -> dict[str, np.ndarray]:
        """The history features scoring these validated claims now would give them, without
        keeping them: they are put in a transaction that is then rolled back (see `Intake.history`)."""
        with self.intake(keep=False) as intake:
            intake.put(claims)
            return intake.history(claims, wanted, graph)

    def book(self) -> pd.DataFrame:
        """Every stored claim with when its fraud was confirmed (the seeded history's confirmations
        and the review's confirmed-fraud outcomes, the first of them): the history the offline
        pipeline needs to give any claim exactly what scoring gives it, the claim graph included."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(*[self.claims.c[n] for n in self._field_names])).all()
            o, k = self.review.outcomes.c, self.confirmations.c
            confirmed: dict[str, datetime] = {}
            for claim_id, moment in [*conn.execute(sa.select(k.claim_id, k.confirmed_at)),
                                     *conn.execute(sa.select(o.claim_id, o.recorded_at)
                                                   .where(o.outcome.in_(FRAUD_OUTCOMES)))]:
                confirmed[claim_id] = min(moment, confirmed.get(claim_id, moment))
        frame = self._frame(rows, self._field_names)
        frame[OUTCOME_TIME_FIELD] = pd.Series([confirmed.get(c) for c in frame["claim_id"]], dtype="datetime64[s]")
        return frame

    def claims_history_features(self, claims: pd.DataFrame, wanted: Iterable[str],
                                graph: GraphSettings | None = None) -> dict[str, np.ndarray]:
        """`history_features` of claims given as a typed frame (stored claims, read back)."""
        return self.history_features(_records(claims), wanted, graph)

    def graph_lookup(self, conn: sa.Connection) -> SqlLookup:
        """The claim graph's lookups by query, for a store without the in-memory index."""
        return SqlLookup(conn, self.claims, self.review.outcomes, self.confirmations, FRAUD_OUTCOMES)

    # --- review workflow ---------------------------------------------------------------------

    def queue(self, now: datetime | None = None, **filters) -> list[dict]:
        """Cases awaiting a person, nearest deadline first (see `Review.queue` for the filters)."""
        with self.engine.connect() as conn:
            return self.review.queue(conn, now or utc_now(), **filters)

    def case(self, claim_id: str, now: datetime | None = None) -> dict | None:
        """A claim's case with everything a reviewer reads: the case, the newest decision's full
        response, the claim as stored, its outcome if recorded, and the ring (other claims sharing
        its payee account, phone, address or provider)."""
        now = now or utc_now()
        with self.engine.connect() as conn:
            case = self.review.case(conn, claim_id, now)
            claim = conn.execute(sa.select(self.claims).where(self.claims.c.claim_id == claim_id)).first()
            if case is None and claim is None:
                return None
            d = self.decisions.c
            latest = conn.execute(sa.select(self.decisions).where(d.claim_id == claim_id)
                                  .order_by(d.id.desc()).limit(1)).first()
            o = self.review.outcomes.c
            outcome = conn.execute(sa.select(self.review.outcomes).where(o.claim_id == claim_id)
                                   .order_by(o.id.desc()).limit(1)).first()
            ring = self._ring(conn, claim) if claim is not None else []
            around = self._neighbourhood(conn, claim) if claim is not None else None
        return {"claim_id": claim_id, "case": case,
                "claim": None if claim is None else _claim_dict(claim),
                "decision": None if latest is None else json.loads(latest.response),
                "model_version": None if latest is None else latest.model_version,
                "outcome": None if outcome is None else dict(outcome._mapping),
                "ring": ring, "neighbourhood": around}

    def _neighbourhood(self, conn: sa.Connection, claim) -> dict:
        """The claim's claims within two hops (serving.neighbourhood): each claim's links as the ring
        finds them (either store), marked where fraud was confirmed or an SIU case is open."""
        c = self.claims.c
        index = self.history_index()
        if index is not None:
            with index.lock:
                self._catch_up(conn, index)

            def one_hop(claim_id: str) -> list[tuple[str, list[str]]]:
                with index.lock:  # as `_ring`: not while a transaction of this process has claims in it
                    return index.ring(claim_id, len(index.claims), DRAWN_FIELDS)  # all: the limit only cuts the sorted list
        else:
            def one_hop(claim_id: str) -> list[tuple[str, list[str]]]:
                row = claim if claim_id == claim.claim_id else conn.execute(
                    sa.select(c.claim_id, *[c[name] for name in DRAWN_FIELDS]).where(c.claim_id == claim_id)).first()
                return [] if row is None else [(link["claim_id"], link["shares"])
                                               for link in self._ring_by_identity(conn, row)]

        def details(claim_ids: list[str]) -> dict[str, dict]:
            columns = [c[name] for name in dict.fromkeys((*SHOWN, *DRAWN_FIELDS))]
            return {row.claim_id: row._asdict() for part in key_chunks(claim_ids)
                    for row in conn.execute(sa.select(*columns).where(c.claim_id.in_(part)))}
        return neighbourhood(_claim_dict(claim), one_hop, details, functools.partial(self._marks, conn))

    def _ring_by_identity(self, conn: sa.Connection, claim) -> list[dict]:
        """The ring's query (SQL) once per identity of the claim, each for its newest FAN_OUT + 1
        claims, merged newest first: a busy provider cannot push out the claim sharing a phone."""
        found: dict[str, dict] = {}
        for name in DRAWN_FIELDS:
            if getattr(claim, name) is not None:
                only = dict.fromkeys(DRAWN_FIELDS) | {"claim_id": claim.claim_id, name: getattr(claim, name)}
                for link in self._ring(conn, SimpleNamespace(**only), FAN_OUT + 1, DRAWN_FIELDS):
                    found.setdefault(link["claim_id"], link | {"shares": []})["shares"].append(name)
        return newest_first(found.values())

    def _marks(self, conn: sa.Connection, claim_ids: list[str]) -> dict[str, set[str]]:
        """Per claim, "confirmed_fraud" where its recorded outcome says fraud (OUTCOME_LABELS) or its
        training history had it confirmed, and "open_siu" where a case referring it to investigators
        is not resolved yet."""
        o, k, h = self.review.outcomes.c, self.review.cases.c, self.confirmations.c
        marks: dict[str, set[str]] = {}
        for part in key_chunks(claim_ids):
            confirmed = sa.select(o.claim_id).where(o.claim_id.in_(part), o.outcome.in_(FRAUD_OUTCOMES))
            in_history = sa.select(h.claim_id).where(h.claim_id.in_(part))  # a seeded history's confirmations
            referred = sa.select(k.claim_id).where(k.claim_id.in_(part), k.decision == SIU_REFERRAL,
                                                   k.status != RESOLVED)
            for mark, query in (("confirmed_fraud", confirmed), ("confirmed_fraud", in_history),
                                ("open_siu", referred)):
                for claim_id in conn.execute(query).scalars():
                    marks.setdefault(claim_id, set()).add(mark)
        return marks

    def respond(self, claim_id: str, by: str, *, via: str) -> dict:
        """`by` takes the claim's case (the first response), sent by the authenticated identity `via`
        ("api key NAME", "review page USER"); the case, entered in the ledger. Once: a case already
        taken or resolved, by this request's rivals too, is a 409 `ReviewError` naming who and when."""
        now = utc_now()
        with self.engine.begin() as conn:
            case = self.review.respond(conn, claim_id, by, via, now)
            self.ledger.append(conn, [LedgerEntry.of("case", case)])
            return self.review.case(conn, claim_id, now)

    def record_outcome(self, claim_id: str, outcome: str, note: str | None, by: str, *, via: str) -> dict:
        """Record an outcome, resolving the claim's case, atomically, with both ledger entries; `via`
        is the authenticated identity that sent it. Errors are `ReviewError`s: a second outcome
        for a claim, however close behind the first, is a 409."""
        with self.engine.begin() as conn:
            known = conn.execute(sa.select(sa.func.count()).select_from(self.decisions)
                                 .where(self.decisions.c.claim_id == claim_id)).scalar_one() > 0
            row, case = self.review.record_outcome(conn, claim_id, outcome, note, by, via, utc_now(), known)
            self.ledger.append(conn, [LedgerEntry.of("outcome", row)] + ([LedgerEntry.of("case", case)] if case else []))
            return row

    def verify_ledger(self, anchors: Iterable[tuple[int, str]] = ()) -> LedgerReport:
        """Walk the ledger and check against it every decision and outcome, every case (as its
        newest entry has it), and every scored claim (as its newest decision's `claim_digest` has
        it). Claims seeded from training or last scored before claim digests were kept, and cases
        opened before cases were entered, are counted, not checked.

        Also names each claim with more than one outcome. Only a store written before outcomes
        were unique per claim can hold one (its service warns at every start). To resolve it:
        decide with the adjusters which outcome stands, delete the others (DELETE FROM outcomes
        WHERE id IN (...)), and start the service once, which then adds the unique index. Verify
        reports each deleted outcome's entry as gone from then on: that is the repair's audit
        trail; keep the ids deleted and why, with the ledger head (`claimtriage ledger head`)."""
        with self.engine.connect() as conn:
            report = self.ledger.verify(conn, {
                "decision": table_rows(self.decisions, added=("claim_digest",)),
                "outcome": table_rows(self.review.outcomes, added=("recorded_via",)),
                "case": Covered(table_rows(self.review.cases), versioned=True, predating=self._cases_before_entries),
            }, anchors=anchors)
            self._check_claims(conn, report)
            twice = self.review.duplicate_outcomes(conn)
        report.add_problems(f"claim {claim_id} has {len(ids)} outcomes (ids {', '.join(map(str, ids))}): one "
                            f"outcome per claim; see ClaimStore.verify_ledger for how to resolve it"
                            for claim_id, ids in twice.items())
        return report

    def _check_claims(self, conn: sa.Connection, report: LedgerReport) -> None:
        """Every stored claim with a decision against its newest decision's `claim_digest` (itself
        covered by the decision's ledger entry). Streams, as the ledger's own check does."""
        d = self.decisions.c
        newest = sa.select(d.claim_id, sa.func.max(d.id).label("id")).group_by(d.claim_id).subquery()
        query = (sa.select(newest.c.id.label("decision_id"), newest.c.claim_id.label("scored_claim"), d.claim_digest,
                           *self.claims.c)
                 .select_from(newest.join(self.decisions, d.id == newest.c.id)
                              .outerjoin(self.claims, self.claims.c.claim_id == newest.c.claim_id)))
        problems, n_gone, n_altered, checked = [], 0, 0, 0
        for row in conn.execute(query.execution_options(yield_per=5_000)):
            if row.claim_digest is None:
                continue  # scored before claim digests were kept
            if row.claim_id is None:
                n_gone += 1
                problem = f"claim {row.scored_claim} is gone: deleted after it was scored (decision {row.decision_id})"
            elif claim_digest(row._mapping) != row.claim_digest:
                n_altered += 1
                problem = f"claim {row.claim_id} was altered after it was scored (decision {row.decision_id})"
            else:
                checked += 1
                continue
            if len(problems) < MAX_PROBLEMS:
                problems.append(problem)
        report.rows_checked["claim"] = checked + n_altered
        report.add_problems(sorted(problems), n_gone + n_altered)
        uncovered = self._count(conn, self.claims) - checked - n_altered
        if uncovered:
            report.notes.append(f"not covered: {uncovered} claims seeded from training or last scored before "
                                "claim digests were kept")

    def _count(self, conn: sa.Connection, table: sa.Table) -> int:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()

    def _cases_before_entries(self, conn: sa.Connection, refs: list[str]) -> set[str]:
        """Of cases without a ledger entry, those opened before cases were entered: their decision
        (itself covered) was made before claim digests were kept, in the same release. A case
        entered since can have its row changed, never its entries removed unseen."""
        c, d = self.review.cases.c, self.decisions.c
        found: set[str] = set()
        for part in key_chunks([int(ref) for ref in refs]):
            found.update(str(id_) for id_ in conn.execute(
                sa.select(c.id).join(self.decisions, d.id == c.decision_id)
                .where(c.id.in_(part), d.claim_digest.is_(None))).scalars())
        return found

    def ledger_head(self) -> tuple[int, str] | None:
        with self.engine.connect() as conn:
            return self.ledger.head(conn)

    def labelled_claims(self) -> pd.DataFrame:
        """Every claim with a recorded outcome, as stored, with the training labels it implies
        (`is_fraud`, `paid_as_filed`; empty where the outcome does not say) and the outcome."""
        o = self.review.outcomes.c
        newest = sa.select(o.claim_id, sa.func.max(o.id).label("id")).group_by(o.claim_id).subquery()
        query = (sa.select(*[self.claims.c[n] for n in self._field_names], o.outcome, o.recorded_at)
                 .join(newest, newest.c.claim_id == self.claims.c.claim_id)
                 .join(self.review.outcomes, o.id == newest.c.id)
                 .order_by(self.claims.c.report_date, self.claims.c.claim_id))
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        frame = self._frame([tuple(r)[:len(self._field_names)] for r in rows], self._field_names)
        outcomes = [r.outcome for r in rows]
        frame["is_fraud"] = pd.array([OUTCOME_LABELS[x][0] for x in outcomes], dtype="boolean")
        frame["paid_as_filed"] = pd.array([OUTCOME_LABELS[x][1] for x in outcomes], dtype="boolean")
        frame["outcome"] = pd.array(outcomes, dtype="str")
        # The moment an outcome confirmed fraud is when the claim graph may count it (features/graph.py).
        recorded = pd.Series([r.recorded_at for r in rows], dtype="datetime64[s]")
        frame[OUTCOME_TIME_FIELD] = recorded.where(frame["is_fraud"].to_numpy(dtype=bool, na_value=False))
        return frame

    def _ring(self, conn: sa.Connection, claim, limit: int = 50, fields: tuple[str, ...] = RING_FIELDS) -> list[dict]:
        """The newest `limit` other claims sharing one of the claim's `fields` (by default its payee
        account, phone, address or provider), each with what it shares; from the history index where
        the store keeps one."""
        c = self.claims.c
        shown = (c.claim_id, c.claimant_id, c.report_date, c.claim_amount, c.loss_type)
        index = self.history_index()
        if index is not None:
            with index.lock:  # not while a transaction of this process has claims in it
                self._catch_up(conn, index)
                picks = index.ring(claim.claim_id, limit, fields)
            rows = {row.claim_id: row for part in key_chunks([claim_id for claim_id, _ in picks])
                    for row in conn.execute(sa.select(*shown).where(c.claim_id.in_(part)))}
            return [dict(rows[claim_id]._mapping) | {"shares": shares} for claim_id, shares in picks
                    if claim_id in rows]
        links = [(name, getattr(claim, name)) for name in fields if getattr(claim, name) is not None]
        if not links:
            return []
        same = [c[name] == value for name, value in links]
        query = (sa.select(*shown, *same).where(sa.or_(*same), c.claim_id != claim.claim_id)
                 .order_by(c.report_date.desc(), c.claim_id).limit(limit))
        return [dict(zip((col.name for col in shown), row[:len(shown)]))
                | {"shares": [name for (name, _), hit in zip(links, row[len(shown):]) if hit]}
                for row in conn.execute(query)]

    def _catch_up(self, conn: sa.Connection, index: HistoryIndex) -> None:
        """Give the index the claims committed since it last looked (the caller holds its lock).
        Exact without the write lock too: seqs are given under it, so they commit in order."""
        index.catch_up(self._index_rows(conn, after_seq=index.seen))
        o, k = self.review.outcomes.c, self.confirmations.c
        index.confirm("outcomes", conn.execute(sa.select(o.id, o.claim_id, o.recorded_at).where(
            o.id > index.confirmed_seen["outcomes"], o.outcome.in_(FRAUD_OUTCOMES)).order_by(o.id)))
        index.confirm("history", conn.execute(sa.select(k.id, k.claim_id, k.confirmed_at).where(
            k.id > index.confirmed_seen["history"]).order_by(k.id)))

    def _index_rows(self, conn: sa.Connection, after_seq: int | None = None):
        """The claims rows the history index is made of: all, or those written after `after_seq`, in order."""
        if after_seq is None:
            return conn.exec_driver_sql(f"SELECT {_INDEX_COLUMNS} FROM claims")
        return conn.exec_driver_sql(f"SELECT {_INDEX_COLUMNS} FROM claims WHERE seq > {self._bulk.placeholder} "
                                    "ORDER BY seq", (after_seq,))

    def decisions_for(self, claim_id: str) -> list[dict]:
        """Every decision given for a claim, oldest first."""
        query = sa.select(self.decisions).where(self.decisions.c.claim_id == claim_id).order_by(self.decisions.c.id)
        with self.engine.connect() as conn:
            return [dict(r._mapping) | {"response": json.loads(r.response)} for r in conn.execute(query)]

    def _frame(self, rows: Iterable, names: list[str]) -> pd.DataFrame:
        frame = pd.DataFrame([tuple(r) for r in rows], columns=names)
        return _typed(frame, tuple(FIELDS_BY_NAME[n] for n in names))


class Intake:
    """One scoring transaction on one connection.

    The claims go in first (`put`, replacing earlier versions of the same claim_id), so `history`
    counts them exactly as the offline pipeline counts a batch that is its own history: a claim
    sees the other claims of its batch reported before it, and never an older version of itself.
    Then `decide` adds the decisions, review cases and ledger entries. Nothing is kept unless all
    of it commits. On SQLite the database's write lock is held from `put` to the commit, and so
    is the in-memory history index, which `put` first brings up to date with what other processes
    committed, then gives this transaction's claims (undone by `end` if it does not commit).
    """

    def __init__(self, store: ClaimStore, conn: sa.Connection, index: HistoryIndex | None = None) -> None:
        self.store = store
        self.conn = conn
        self.index = index
        self._holds_index = False
        self._last_seq: int | None = None
        self._claim_rows: dict[str, dict] = {}  # claim_id -> the row `put` stored, for its decision's digest

    def put(self, claims: list[dict], origin: str = "scored") -> None:
        """Store validated claims (canonical Python values), replacing earlier versions of each claim_id."""
        stored_at = utc_now()
        rows = [_row(claim, origin, stored_at) for claim in claims]
        self._claim_rows.update((row["claim_id"], row) for row in rows)
        table = self.store.claims
        first_seq = self.store._next_seq(self.conn)
        if first_seq is not None:
            for seq, row in enumerate(rows, first_seq):
                row["seq"] = seq
            self._last_seq = first_seq + len(rows) - 1
        if self.index is not None and not self._holds_index:
            self._hold_index()
        self.store._bulk.delete_in(self.conn, table, "claim_id", [r["claim_id"] for r in rows])
        self.store._bulk(self.conn, table, rows)
        if self.index is not None:
            for claim in claims:
                self.index.put(claim)

    def _hold_index(self) -> None:
        """Hold the index for this transaction, and give it the claims others committed since it last looked."""
        self.index.lock.acquire()
        self._holds_index = True
        self.store._catch_up(self.conn, self.index)
        self.index.begin()

    def end(self, kept: bool) -> None:
        """The transaction has ended: the index keeps or undoes this transaction's claims."""
        if self._holds_index:
            try:
                self.index.end(kept, self._last_seq)
            finally:
                self._holds_index = False
                self.index.lock.release()

    def history(self, claims: list[dict], wanted: Iterable[str],
                graph: GraphSettings | None = None) -> dict[str, np.ndarray]:
        """History features of claims already `put`: float64 arrays in the claims' order, equal
        bit for bit to `features.history.history_features` over the same claims and stored
        history (tests hold them side by side). Missing where the claim lacks the entity (or, for
        the shared ones, its claimant). From the in-memory index where the store keeps one,
        otherwise counted in the database. The claim graph's features (features.graph) follow
        `graph`, the settings the model was trained with."""
        wanted = list(wanted)
        counted = [name for name in wanted if name not in GRAPH_FEATURES]
        linked = [name for name in wanted if name in GRAPH_FEATURES]
        if self.index is not None:
            out = self.index.history(claims, counted)
        else:
            out = self.store._sql_history.count(self.conn, claims, counted)
        if linked:
            lookup = IndexLookup(self.index) if self.index is not None else self.store.graph_lookup(self.conn)
            out.update(graph_history(lookup, claims, linked, graph or GraphSettings()))
        return out

    def decide(self, claims: list[dict], responses: list[dict], model_version: str) -> list[int]:
        """The decisions (one per claim, in order) of claims `put` in this transaction, their review
        cases and ledger entries: each decision's entry covers its claim too (`claim_digest`).
        Returns the decisions' ids, in order (a shadow challenger's rows refer to them)."""
        now = utc_now()
        ids = self._decision_ids(len(claims))
        decisions = [{
            "id": id_, "claim_id": claim["claim_id"], "model_version": str(model_version),
            "decision": resp["decision"],
            "fraud_probability": resp["scores"]["fraud_probability"],
            "approval_probability": resp["scores"].get("approval_probability"),
            "anomaly_score": resp["scores"]["anomaly_score"],
            "response": pydantic_core.to_json(resp, inf_nan_mode="null").decode(), "scored_at": now,
            "claim_digest": claim_digest(self._claim_rows[claim["claim_id"]]),
        } for id_, claim, resp in zip(ids, claims, responses)]
        self.store._bulk(self.conn, self.store.decisions, decisions)
        cases = self.store.review.open_or_follow(self.conn, [{**row, "response": response}
                                                             for row, response in zip(decisions, responses)])
        # Last, as the ledger serialises writers until the commit: what was stored, hash-chained,
        # in one append (one lock): the decisions, then each case opened or moved.
        self.store.ledger.append(self.conn, [LedgerEntry.of("decision", row) for row in decisions]
                                 + [LedgerEntry.of("case", case) for case in cases])
        return ids

    def _decision_ids(self, n: int) -> list[int]:
        """Ids for `n` new decisions, increasing, given before the insert so that no row has to
        come back from the database (SQLite returns inserted rows one statement at a time)."""
        if self.conn.dialect.name == "postgresql":
            ids = self.conn.exec_driver_sql(
                "SELECT nextval(pg_get_serial_sequence('decisions', 'id')) FROM generate_series(1, %s)", (n,))
            return sorted(ids.scalars())
        # SQLite: with the database's write lock held (the ledger's lock is that lock), count on
        # from the highest id, as SQLite itself would; no other writer comes in before the commit.
        self.store.ledger.lock(self.conn)
        highest = self.conn.exec_driver_sql("SELECT coalesce(max(id), 0) FROM decisions").scalar_one()
        return list(range(highest + 1, highest + 1 + n))


def _checkpoint_forever(engine: sa.Engine, every_seconds: float = 0.5) -> None:
    while True:
        time.sleep(every_seconds)
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
        except Exception:  # a busy or vanished database: try again next time, never kill the service
            log.warning("WAL checkpoint failed", exc_info=True)


def _sqlite_pragmas(dbapi_connection, _record, autocheckpoint: bool = True) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    if not autocheckpoint:
        cursor.execute("PRAGMA wal_autocheckpoint=0")
    # FULL: a decision the service has answered survives a power cut too (NORMAL would only
    # survive a crash of the process); measured here at about 0.3 ms a commit.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA cache_size=-65536")
    # Wait this long for another writer's transaction (a batch of 1,000 claims with explanations
    # holds the write lock for 0.6-2 s here, by the day) instead of the driver's 5 s, so a claim
    # waits rather than fails on a slow day. Below the service's 60 s request timeout.
    cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_WRITE_WAIT_SECONDS * 1000)}")
    cursor.close()


def _claim_dict(row) -> dict:
    values = dict(row._mapping)
    values.pop("origin", None), values.pop("stored_at", None)
    extras = values.pop("extras", None)
    return {k: v for k, v in values.items() if v is not None} | (json.loads(extras) if extras else {})


def _records(claims: pd.DataFrame) -> list[dict]:
    return claims.astype(object).where(claims.notna(), None).to_dict(orient="records")


_CANONICAL = tuple(f.name for f in CLAIM_FIELDS)
_CANONICAL_SET = frozenset(_CANONICAL)
# What a claim's digest covers: the claim as scored, its canonical fields, extras and origin. Left
# out: stored_at and seq, the store's bookkeeping of when and in which order the row was written
# (seq is empty on PostgreSQL, was added to older stores after their rows, and only orders the
# history index's catching up); they say nothing about the claim, and scored_at is in the decision.
_CLAIM_COVERED = tuple((f.name, f.kind) for f in CLAIM_FIELDS) + (("extras", "string"), ("origin", "string"))


def claim_digest(row: Mapping[str, Any]) -> str:
    """The digest of a claims-table row (as written, or as read back) over what it covers."""
    return digest({name: _as_stored(row[name], kind) for name, kind in _CLAIM_COVERED})


def _as_stored(value, kind: str):
    """A value as its column gives it back: text for a string column (SQLite keeps a number put in
    a text column as text), a date-time for a date, true/false for a boolean."""
    if value is None:
        return None
    if kind == "string":
        return value if type(value) is str else str(value)
    if kind in ("date", "datetime") and not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day)
    if kind == "boolean":
        return bool(value)
    return value


def _row(record: dict, origin: str, stored_at: datetime) -> dict:
    """A claim as a row of the claims table: canonical fields (None where absent), extra_ fields as JSON."""
    row = dict.fromkeys(_CANONICAL)
    extras = {}
    for key, value in record.items():
        if isinstance(value, pd.Timestamp):
            value = value.to_pydatetime()
        elif isinstance(value, np.generic):
            value = value.item()
        if key in _CANONICAL_SET:
            row[key] = value
        elif key.startswith("extra_"):
            extras[key] = value
    row.update(extras=json.dumps(extras) if extras else None, origin=origin, stored_at=stored_at, seq=None)
    return row


def _typed(frame: pd.DataFrame, fields: tuple[ClaimField, ...]) -> pd.DataFrame:
    """Database rows back to the canonical dtypes the feature builder expects."""
    for f in fields:
        col = frame[f.name]
        if f.kind in ("date", "datetime"):
            frame[f.name] = pd.to_datetime(col).astype("datetime64[s]")
        elif f.kind == "number":
            frame[f.name] = pd.to_numeric(col).astype("float64")
        elif f.kind == "integer":
            frame[f.name] = pd.array(col, dtype="Int64")
        elif f.kind == "boolean":
            frame[f.name] = pd.array(col, dtype="boolean")
        else:
            frame[f.name] = col.astype("str")
    return frame
