"""The claim store: every claim the service knows (for history features) and every decision it gave.

SQLAlchemy Core over a SQLite file by default or PostgreSQL through a database URL. A claim is
kept once per claim_id (scoring it again replaces it, so it never counts twice in anyone's
history); every decision is kept.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import threading
import time
from datetime import datetime, timedelta
from typing import Iterable

import numpy as np
import pandas as pd
import pydantic_core
import sqlalchemy as sa

from features.history import COUNTED_ENTITIES, SECONDS_PER_DAY, SHARED_ENTITIES, WINDOWS_DAYS
from features.schema import CLAIM_FIELDS, ENTITY_FIELDS, FIELDS_BY_NAME, ClaimField
from serving.access import Access
from serving.clock import as_datetime, utc_now
from serving.ledger import Ledger, LedgerEntry, LedgerReport, table_rows
from serving.review import OUTCOME_LABELS, Review, cases_table, outcomes_table

_SQL_TYPES = {"string": sa.String(128), "date": sa.DateTime(), "datetime": sa.DateTime(), "number": sa.Float(),
              "integer": sa.Integer(), "boolean": sa.Boolean()}
SEED_CHUNK = 10_000
log = logging.getLogger("claimtriage.store")
# What history features read of the stored claims.
HISTORY_COLUMNS = ("claim_id", "report_date") + ENTITY_FIELDS


def _claims_table(metadata: sa.MetaData) -> sa.Table:
    columns = [sa.Column(f.name, _SQL_TYPES[f.kind], primary_key=f.name == "claim_id", nullable=not f.required)
               for f in CLAIM_FIELDS]
    columns += [sa.Column("extras", sa.Text(), nullable=True),
                sa.Column("origin", sa.String(16), nullable=False),
                sa.Column("stored_at", sa.DateTime(), nullable=False)]
    indexes = [sa.Index(f"ix_claims_{name}", name) for name in ENTITY_FIELDS]
    return sa.Table("claims", metadata, *columns, *indexes)


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
    )


class ClaimStore:
    """Claims and decisions in one relational database."""

    def __init__(self, url: str, background_checkpoints: bool = False):
        """`background_checkpoints` (SQLite only, for the service): fold the write-ahead log into
        the database on a background thread every half second instead of inside whichever
        request's commit crosses SQLite's threshold, the one slow request in a hundred otherwise."""
        self.url = url
        self.engine = sa.create_engine(url, future=True)
        if self.engine.dialect.name == "sqlite":
            # WAL lets readers go on while a decision commits; the service is one writer per replica.
            sa.event.listen(self.engine, "connect",
                            functools.partial(_sqlite_pragmas, autocheckpoint=not background_checkpoints))
            if background_checkpoints:
                threading.Thread(target=_checkpoint_forever, args=(self.engine,), name="wal-checkpoint",
                                 daemon=True).start()
        self.metadata = sa.MetaData()
        self.claims = _claims_table(self.metadata)
        self.decisions = _decisions_table(self.metadata)
        self.review = Review(cases_table(self.metadata), outcomes_table(self.metadata))
        self.ledger = Ledger(self.metadata)
        self.access = Access(self.metadata)
        self.metadata.create_all(self.engine)
        self._field_names = [f.name for f in CLAIM_FIELDS]
        # One aggregate query per (wanted features, entities a claim has): a handful in practice.
        self._history_queries: dict[tuple, tuple] = {}

    def count_claims(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(self.claims)).scalar_one()

    def seed(self, claims: pd.DataFrame, origin: str = "training") -> int:
        """Load known claims (the training history) in chunks; claims already stored are kept."""
        stored_at = utc_now()
        rows = [_row(rec, origin, stored_at) for rec in _records(claims)]
        with self.engine.begin() as conn:
            existing = set(conn.execute(sa.select(self.claims.c.claim_id)).scalars())
            fresh = [r for r in rows if r["claim_id"] not in existing]
            for start in range(0, len(fresh), SEED_CHUNK):
                conn.execute(self.claims.insert(), fresh[start:start + SEED_CHUNK])
        return len(fresh)

    def history(self, claims: pd.DataFrame, columns: Iterable[str] | None = None) -> pd.DataFrame:
        """Every stored claim sharing an entity (claimant, policy, payee, phone, address, provider) with `claims`.

        `columns` limits what is read back (HISTORY_COLUMNS is all history features need).
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

    def history_features_for(self, claim: dict, wanted: Iterable[str]) -> dict[str, float]:
        """History features of one validated claim, counted in the database in one query.

        The same definitions as `features.history.history_features` over `history(...)`, bit for
        bit (tests hold the two side by side), without moving the entities' claims into Python:
        claims of the same entity reported in [t - window, t), days since the claimant's last
        claim, and the distinct other claimants who used the same payee, phone or address before.
        The claim's own earlier version (same claim_id) never counts.
        """
        wanted = tuple(sorted(wanted))
        t = claim.get("report_date")
        present = frozenset(f for f in ENTITY_FIELDS if claim.get(f) is not None) if t is not None else frozenset()
        built = self._history_queries.get((wanted, present))
        if built is None:
            built = self._history_queries[(wanted, present)] = self._history_query(wanted, present)
        query, keys = built
        out = {name: math.nan for name in wanted}
        if query is None:
            return out
        params = {f: claim[f] for f in present} | {"claim_id": claim["claim_id"], "t": t}
        params |= {f"t_{days}": t - timedelta(days=days) for days in WINDOWS_DAYS}
        with self.engine.connect() as conn:
            row = conn.execute(query, params).one()
        for name, value in zip(keys, row):
            if name == "days_since_claimant_last_claim":
                previous = as_datetime(value)  # MAX(): text from SQLite
                out[name] = math.nan if previous is None else (t - previous) // timedelta(seconds=1) / SECONDS_PER_DAY
            else:
                out[name] = float(value or 0)
        return out

    def _history_query(self, wanted: tuple[str, ...], present: frozenset[str]):
        """The aggregate query for a set of wanted features and the entities a claim has; built once."""
        c = self.claims.c
        t = sa.bindparam("t", type_=sa.DateTime())
        columns, keys, matches = [], [], []

        def add(name: str, expression) -> None:
            columns.append(expression.label(f"f{len(columns)}"))
            keys.append(name)

        for field, prefix in COUNTED_ENTITIES.items():
            names = [n for n in wanted if n.startswith(prefix + "_claims_")]
            last = prefix == "claimant" and "days_since_claimant_last_claim" in wanted
            if (not names and not last) or field not in present:
                continue
            same = c[field] == sa.bindparam(field, type_=sa.String())
            matches.append(same)
            for days in WINDOWS_DAYS:
                if f"{prefix}_claims_{days}d" in wanted:
                    inside = sa.and_(same, c.report_date >= sa.bindparam(f"t_{days}", type_=sa.DateTime()),
                                     c.report_date < t)
                    add(f"{prefix}_claims_{days}d", sa.func.count(sa.case((inside, 1))))
            if last:
                add("days_since_claimant_last_claim", sa.func.max(sa.case((sa.and_(same, c.report_date < t),
                                                                             c.report_date))))
        for field, prefix in SHARED_ENTITIES.items():
            name = f"{prefix}_other_claimants"
            if name not in wanted or field not in present or "claimant_id" not in present:
                continue
            same = c[field] == sa.bindparam(field, type_=sa.String())
            matches.append(same)
            other = sa.and_(same, c.claimant_id != sa.bindparam("claimant_id", type_=sa.String()), c.report_date < t)
            add(name, sa.func.count(sa.distinct(sa.case((other, c.claimant_id)))))
        if not columns:
            return None, ()
        query = sa.select(*columns).where(sa.or_(*matches), c.claim_id != sa.bindparam("claim_id", type_=sa.String()))
        return query, tuple(keys)

    def record(self, claims: pd.DataFrame | list[dict], responses: list[dict], model_version: str) -> None:
        """Store the claims (replacing earlier versions of the same claim_id) and their decisions, atomically."""
        now = utc_now()
        records = claims if isinstance(claims, list) else _records(claims)
        rows = [_row(rec, "scored", now) for rec in records]
        ids = [r["claim_id"] for r in rows]
        decisions = [{
            "claim_id": r["claim_id"], "model_version": str(model_version), "decision": resp["decision"],
            "fraud_probability": resp["scores"]["fraud_probability"],
            "approval_probability": resp["scores"].get("approval_probability"),
            "anomaly_score": resp["scores"]["anomaly_score"],
            "response": pydantic_core.to_json(resp, inf_nan_mode="null").decode(), "scored_at": now,
        } for r, resp in zip(rows, responses)]
        with self.engine.begin() as conn:
            conn.execute(self.claims.delete().where(self.claims.c.claim_id.in_(ids)))
            conn.execute(self.claims.insert(), rows)
            stored = conn.execute(self.decisions.insert().returning(*self.decisions.c, sort_by_parameter_order=True),
                                  decisions).all()
            self.review.open_or_follow(conn, [{**row._mapping, "response": response}
                                              for row, response in zip(stored, responses)])
            # Last, as the ledger serialises writers until the commit: what was stored, hash-chained.
            self.ledger.append(conn, [LedgerEntry.of("decision", row._mapping) for row in stored])

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
        return {"claim_id": claim_id, "case": case,
                "claim": None if claim is None else _claim_dict(claim),
                "decision": None if latest is None else json.loads(latest.response),
                "model_version": None if latest is None else latest.model_version,
                "outcome": None if outcome is None else dict(outcome._mapping),
                "ring": ring}

    def respond(self, claim_id: str, by: str) -> dict:
        with self.engine.begin() as conn:
            return self.review.respond(conn, claim_id, by, utc_now())

    def record_outcome(self, claim_id: str, outcome: str, note: str | None, by: str) -> dict:
        """Record an outcome (resolving the claim's case) atomically; errors are `ReviewError`s."""
        with self.engine.begin() as conn:
            known = conn.execute(sa.select(sa.func.count()).select_from(self.decisions)
                                 .where(self.decisions.c.claim_id == claim_id)).scalar_one() > 0
            row = self.review.record_outcome(conn, claim_id, outcome, note, by, utc_now(), known)
            self.ledger.append(conn, [LedgerEntry.of("outcome", row)])
            return row

    def verify_ledger(self, anchors: Iterable[tuple[int, str]] = ()) -> LedgerReport:
        """Walk the decision ledger and check every decision and outcome against it."""
        with self.engine.connect() as conn:
            return self.ledger.verify(conn, {"decision": table_rows(self.decisions),
                                             "outcome": table_rows(self.review.outcomes)}, anchors=anchors)

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
        return frame

    def _ring(self, conn: sa.Connection, claim, limit: int = 50) -> list[dict]:
        c = self.claims.c
        links = [(name, getattr(claim, name)) for name in ("payee_account", "claimant_phone", "claimant_address",
                                                            "provider_id") if getattr(claim, name) is not None]
        if not links:
            return []
        same = [c[name] == value for name, value in links]
        shown = (c.claim_id, c.claimant_id, c.report_date, c.claim_amount, c.loss_type)
        query = (sa.select(*shown, *same).where(sa.or_(*same), c.claim_id != claim.claim_id)
                 .order_by(c.report_date.desc()).limit(limit))
        return [dict(zip((col.name for col in shown), row[:len(shown)]))
                | {"shares": [name for (name, _), hit in zip(links, row[len(shown):]) if hit]}
                for row in conn.execute(query)]

    def decisions_for(self, claim_id: str) -> list[dict]:
        """Every decision given for a claim, oldest first."""
        query = sa.select(self.decisions).where(self.decisions.c.claim_id == claim_id).order_by(self.decisions.c.id)
        with self.engine.connect() as conn:
            return [dict(r._mapping) | {"response": json.loads(r.response)} for r in conn.execute(query)]

    def _frame(self, rows: Iterable, names: list[str]) -> pd.DataFrame:
        frame = pd.DataFrame([tuple(r) for r in rows], columns=names)
        return _typed(frame, tuple(FIELDS_BY_NAME[n] for n in names))


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
    cursor.close()


def _claim_dict(row) -> dict:
    values = dict(row._mapping)
    values.pop("origin", None), values.pop("stored_at", None)
    extras = values.pop("extras", None)
    return {k: v for k, v in values.items() if v is not None} | (json.loads(extras) if extras else {})


def _records(claims: pd.DataFrame) -> list[dict]:
    return claims.astype(object).where(claims.notna(), None).to_dict(orient="records")


def _row(record: dict, origin: str, stored_at: datetime) -> dict:
    row = {}
    extras = {}
    canonical = {f.name for f in CLAIM_FIELDS}
    for key, value in record.items():
        if isinstance(value, pd.Timestamp):
            value = value.to_pydatetime()
        elif isinstance(value, np.generic):
            value = value.item()
        if key in canonical:
            row[key] = value
        elif key.startswith("extra_"):
            extras[key] = value
    for name in canonical - row.keys():
        row[name] = None
    row.update(extras=json.dumps(extras) if extras else None, origin=origin, stored_at=stored_at)
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
