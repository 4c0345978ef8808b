"""Review cases and outcomes: what adjusters work on, and what becomes the next training labels.

Every decision that needs a person opens a case (respond within 24 h, resolve within 72 h of the
first decision, as the decision's deadlines say). Re-scoring a claim whose case is still open
moves the case to the newest decision and keeps its deadlines: the clock started at first notice.
A case is closed only by a person recording the outcome. Outcomes can also come from the claims
system for claims that never needed review (an auto-approved claim later found to be fraud).

A claim has one outcome, and a case one taker, however many replicas and requests race for it:
the database decides. Taking and resolving are conditional updates (`... WHERE status = 'open'`)
that only one transaction can make, and outcomes.claim_id is unique; the losers get a 409
`ReviewError` naming who got there first. Every change of a case returns the row as changed, for
its ledger entry (kind "case"), with `changed_by`: the identity that made it, where known.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from models.policy import AUTO_APPROVE
from serving.bulk import insert_with_sqlalchemy, key_chunks, placeholder
from serving.clock import as_datetime

OPEN, RESPONDED, RESOLVED = "open", "responded", "resolved"
STATUSES = (OPEN, RESPONDED, RESOLVED)
# Outcome -> (is_fraud, paid_as_filed); None where the outcome does not say.
OUTCOME_LABELS: dict[str, tuple[bool, bool | None]] = {
    "paid_as_filed": (False, True),
    "paid_adjusted": (False, False),
    "denied": (False, False),
    "confirmed_fraud": (True, False),
    "not_fraud": (False, None),
}
OUTCOME_TEXT = {
    "paid_as_filed": "paid as filed",
    "paid_adjusted": "paid, adjusted",
    "denied": "denied",
    "confirmed_fraud": "confirmed fraud",
    "not_fraud": "not fraud",
}
MAX_NOTE = 4000
UNIQUE_OUTCOME_INDEX = "ux_outcomes_claim_id"
log = logging.getLogger("claimtriage.review")


class ReviewError(ValueError):
    """A request the review workflow cannot honour; `status` is the HTTP status it maps to."""

    def __init__(self, message: str, status: int = 409):
        super().__init__(message)
        self.status = status


def cases_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "cases", metadata,
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("claim_id", sa.String(128), nullable=False, index=True),
        sa.Column("decision_id", sa.Integer(), nullable=False),
        sa.Column("decision", sa.String(32), nullable=False, index=True),
        sa.Column("fraud_probability", sa.Float(), nullable=False),
        sa.Column("anomaly_score", sa.Float(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("assignee", sa.String(128), nullable=True),
        sa.Column("opened_at", sa.DateTime(), nullable=False),
        sa.Column("respond_by", sa.DateTime(), nullable=False),
        sa.Column("resolve_by", sa.DateTime(), nullable=False),
        sa.Column("responded_at", sa.DateTime(), nullable=True),
        sa.Column("resolved_at", sa.DateTime(), nullable=True),
        # Who made the row's latest change: "api key NAME" or "review page USER"; empty when
        # scoring opened or moved the case. Kept in the row so its ledger entry can be checked.
        sa.Column("changed_by", sa.String(160), nullable=True),
    )


def outcomes_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "outcomes", metadata,
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("claim_id", sa.String(128), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("recorded_by", sa.String(128), nullable=False),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
        # The authenticated identity that sent it ("api key NAME", "review page USER"); empty in
        # outcomes recorded before it was kept.
        sa.Column("recorded_via", sa.String(160), nullable=True),
        # One outcome per claim, whichever replica or request gets there first.
        sa.Index(UNIQUE_OUTCOME_INDEX, "claim_id", unique=True),
    )


@dataclass
class Review:
    """The cases and outcomes tables of one claim store."""

    cases: sa.Table
    outcomes: sa.Table
    insert: Callable[[sa.Connection, sa.Table, list[dict]], None] = insert_with_sqlalchemy
    _unresolved_of: sa.Select = field(init=False, repr=False)

    def __post_init__(self) -> None:
        c = self.cases.c
        # Built once: this runs with every scored claim needing a person, and SQLAlchemy then
        # reuses the compiled statement (typed rows: the followed case's ledger entry needs them).
        self._unresolved_of = sa.select(self.cases).where(c.claim_id.in_(sa.bindparam("keys", expanding=True)),
                                                          c.status != RESOLVED)

    def upgrade(self, engine: sa.Engine) -> None:
        """A store written before cases kept `changed_by` and outcomes `recorded_via` and were unique
        per claim gets the columns, and the unique index unless two outcomes of one claim are
        already stored: it then serves on, warns at every start, and `ClaimStore.verify_ledger`
        names each such claim (its docstring says how to resolve them)."""
        inspector = sa.inspect(engine)
        for table, name in ((self.cases, "changed_by"), (self.outcomes, "recorded_via")):
            if name not in {column["name"] for column in inspector.get_columns(table.name)}:
                log.info("claim store: adding %s.%s", table.name, name)
                with engine.begin() as conn:
                    conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {name} VARCHAR(160)")
        if UNIQUE_OUTCOME_INDEX in {ix["name"] for ix in inspector.get_indexes(self.outcomes.name)}:
            return
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql(f"CREATE UNIQUE INDEX IF NOT EXISTS {UNIQUE_OUTCOME_INDEX} "
                                     f"ON {self.outcomes.name} (claim_id)")
        except sa.exc.IntegrityError:
            log.warning("claim store: some claims have more than one outcome, so one outcome per claim "
                        "cannot be enforced; `claimtriage ledger verify` names them")

    def open_or_follow(self, conn: sa.Connection, decisions: list[dict]) -> list[dict]:
        """In the decisions' own transaction: open a case for each decision needing a person, or
        move the claim's open case to its newest decision. `decisions` carry their row ids. A claim
        whose outcome is recorded gets no new case: it has its one outcome. Returns each case
        opened or moved, as the row now stored, for the ledger."""
        needing = [d for d in decisions if d["decision"] != AUTO_APPROVE]
        if not needing:
            return []
        # Driver SQL where it can be: this runs with every scored claim, and building it through
        # SQLAlchemy's expression language costs several times the query.
        keys = list(dict.fromkeys(d["claim_id"] for d in needing))
        mark = placeholder(conn.dialect)
        outcomes = conn.dialect.identifier_preparer.quote(self.outcomes.name)
        unresolved, decided = {}, set()
        for part in key_chunks(keys):
            unresolved.update((row.claim_id, row) for row in conn.execute(self._unresolved_of, {"keys": list(part)}))
            decided.update(conn.exec_driver_sql(
                f"SELECT claim_id FROM {outcomes} WHERE claim_id IN ({', '.join([mark] * len(part))})", part).scalars())
        fresh: dict[str, dict] = {}
        followed: dict[int, dict] = {}  # open case id -> its newest decision
        moments: dict[str, datetime] = {}  # a batch shares its deadlines: parse each once
        for d in needing:
            values = {"decision_id": d["id"], "decision": d["decision"],
                      "fraud_probability": d["fraud_probability"], "anomaly_score": d["anomaly_score"],
                      "changed_by": None}
            if d["claim_id"] in decided:
                continue
            if d["claim_id"] in fresh:  # twice in one call: the new case follows the later decision
                fresh[d["claim_id"]].update(values)
            elif d["claim_id"] in unresolved:
                followed[unresolved[d["claim_id"]].id] = values
            else:
                deadlines = d["response"].get("deadlines") or {}
                for text in (deadlines["respond_by"], deadlines["resolve_by"]):
                    if text not in moments:
                        moments[text] = as_datetime(text)
                fresh[d["claim_id"]] = {**dict.fromkeys(self.cases.c.keys()), **values, "claim_id": d["claim_id"],
                                        "status": OPEN, "opened_at": d["scored_at"],
                                        "respond_by": moments[deadlines["respond_by"]],
                                        "resolve_by": moments[deadlines["resolve_by"]]}
        c = self.cases.c
        if followed:  # one statement for all re-scored claims (a re-sent batch follows hundreds)
            conn.execute(self.cases.update().where(c.id == sa.bindparam("case_id")).values(
                {name: sa.bindparam(f"new_{name}") for name in next(iter(followed.values()))}),
                [{"case_id": case_id, **{f"new_{k}": v for k, v in values.items()}}
                 for case_id, values in followed.items()])
        for row, case_id in zip(fresh.values(), self._new_ids(conn, len(fresh))):
            row["id"] = case_id
        self.insert(conn, self.cases, list(fresh.values()))
        moved = [dict(row._mapping) | followed[row.id] for row in unresolved.values() if row.id in followed]
        return moved + list(fresh.values())

    def _new_ids(self, conn: sa.Connection, n: int) -> list[int]:
        """Ids for `n` new cases, given before the insert so that their ledger entries need nothing
        back from the database. On SQLite the caller holds the write lock (the scoring transaction
        takes it with its first write), so counting on from the highest is what SQLite would do."""
        if not n:
            return []
        if conn.dialect.name == "postgresql":
            return sorted(conn.exec_driver_sql(
                "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
                (self.cases.name, n)).scalars())
        table = conn.dialect.identifier_preparer.quote(self.cases.name)
        highest = conn.exec_driver_sql(f"SELECT coalesce(max(id), 0) FROM {table}").scalar_one()
        return list(range(highest + 1, highest + 1 + n))

    @property
    def _next_deadline(self):
        """Until the first response, its deadline; after it, the resolution's."""
        c = self.cases.c
        return sa.type_coerce(sa.case((c.status == OPEN, c.respond_by), else_=c.resolve_by), sa.DateTime())

    def queue(self, conn: sa.Connection, now: datetime, decision: str | None = None,
              status: str | None = None, overdue: bool = False, limit: int = 200, offset: int = 0) -> list[dict]:
        """Cases awaiting a person (or of `status`), the nearest deadline first, then the riskiest."""
        c = self.cases.c
        next_deadline = self._next_deadline
        query = sa.select(self.cases, next_deadline.label("next_deadline"))
        query = query.where(c.status == status) if status else query.where(c.status != RESOLVED)
        if decision:
            query = query.where(c.decision == decision)
        if overdue:
            query = query.where(c.status != RESOLVED, next_deadline < now)
        query = query.order_by(next_deadline, c.fraud_probability.desc(), c.id).limit(limit).offset(offset)
        return [_case_dict(row, now) for row in conn.execute(query)]

    def case(self, conn: sa.Connection, claim_id: str, now: datetime) -> dict | None:
        """The claim's newest case, or None."""
        row = self._latest(conn, claim_id, self._next_deadline.label("next_deadline"))
        return None if row is None else _case_dict(row, now)

    def respond(self, conn: sa.Connection, claim_id: str, by: str, via: str, now: datetime) -> dict:
        """`by` takes the case (first response given, assignee set), as `via` says; the case row as
        changed. Only while it is open, checked by the update itself: of concurrent takers one wins."""
        case = self._unresolved(conn, claim_id)
        if case.status != OPEN:
            raise ReviewError(_taken(claim_id, case))
        c = self.cases.c
        changed = conn.execute(self.cases.update().where(c.id == case.id, c.status == OPEN)
                               .values(status=RESPONDED, responded_at=now, assignee=by, changed_by=via)
                               .returning(*c)).first()
        if changed is None:  # no row updated: another request took or resolved it since we read it
            raise self._lost(conn, claim_id)
        return dict(changed._mapping)

    def record_outcome(self, conn: sa.Connection, claim_id: str, outcome: str, note: str | None, by: str,
                       via: str, now: datetime, known_claim: bool) -> tuple[dict, dict | None]:
        """Record what the claim came to, resolving its case: (the outcome row, the case row as
        changed, or None for a claim that had no case). Once per claim: the case is resolved by a
        conditional update and the outcome is unique per claim, so of concurrent requests one wins."""
        if outcome not in OUTCOME_LABELS:
            raise ReviewError(f"outcome must be one of {', '.join(OUTCOME_LABELS)}, not {outcome!r}", 422)
        if note is not None and len(note) > MAX_NOTE:
            raise ReviewError(f"note is longer than {MAX_NOTE} characters", 422)
        if not known_claim:
            raise ReviewError(f"no claim {claim_id!r} has been scored", 404)
        latest = self._latest(conn, claim_id)
        if latest is not None and latest.status == RESOLVED:
            raise self._lost(conn, claim_id)
        if self._outcome_of(conn, claim_id) is not None:
            raise self._lost(conn, claim_id)
        case = None
        if latest is not None:
            c = self.cases.c
            case = conn.execute(self.cases.update().where(c.id == latest.id, c.status != RESOLVED).values(
                status=RESOLVED, resolved_at=now, changed_by=via,
                # From the row as it is now, not as read above: a taker who came in between stays.
                responded_at=sa.func.coalesce(c.responded_at, now), assignee=sa.func.coalesce(c.assignee, by))
                .returning(*c)).first()
            if case is None:
                raise self._lost(conn, claim_id)
        row = {"claim_id": claim_id, "case_id": None if case is None else case.id, "outcome": outcome, "note": note,
               "recorded_by": by, "recorded_at": now, "recorded_via": via}
        try:
            stored = conn.execute(self.outcomes.insert().values(**row).returning(*self.outcomes.c)).one()
        except sa.exc.IntegrityError:  # outcomes.claim_id is unique: another request recorded one first
            raise ReviewError(f"an outcome for claim {claim_id} is already recorded; it is recorded once") from None
        return dict(stored._mapping), None if case is None else dict(case._mapping)

    def _lost(self, conn: sa.Connection, claim_id: str) -> ReviewError:
        """The 409 for a request someone else's got in before: who did what, and when."""
        outcome = self._outcome_of(conn, claim_id)
        if outcome is not None:
            return ReviewError(f"an outcome for claim {claim_id} is already recorded ({outcome.outcome}, by "
                               f"{outcome.recorded_by} at {outcome.recorded_at:%Y-%m-%d %H:%M}): the case was "
                               "resolved; an outcome is recorded once")
        case = self._latest(conn, claim_id)
        if case is not None and case.status == RESOLVED:
            return ReviewError(f"the case of claim {claim_id} was resolved at {case.resolved_at:%Y-%m-%d %H:%M}; "
                               "an outcome is recorded once")
        if case is not None and case.status == RESPONDED:
            return ReviewError(_taken(claim_id, case))
        return ReviewError(f"the case of claim {claim_id} changed while this request was made; look again")

    def _outcome_of(self, conn: sa.Connection, claim_id: str):
        o = self.outcomes.c
        return conn.execute(sa.select(self.outcomes).where(o.claim_id == claim_id).order_by(o.id).limit(1)).first()

    def duplicate_outcomes(self, conn: sa.Connection) -> dict[str, list[int]]:
        """Claims with more than one outcome (possible only in stores written before outcomes were
        unique per claim), each with its outcomes' ids, oldest first."""
        o = self.outcomes.c
        twice = sa.select(o.claim_id).group_by(o.claim_id).having(sa.func.count() > 1)
        found: dict[str, list[int]] = {}
        for claim_id, id_ in conn.execute(sa.select(o.claim_id, o.id).where(o.claim_id.in_(twice))
                                          .order_by(o.claim_id, o.id)):
            found.setdefault(claim_id, []).append(id_)
        return found

    def _latest(self, conn: sa.Connection, claim_id: str, *extra):
        """The claim's newest case row (with `extra` columns), or None."""
        c = self.cases.c
        return conn.execute(sa.select(self.cases, *extra).where(c.claim_id == claim_id)
                            .order_by(c.id.desc()).limit(1)).first()

    def _unresolved(self, conn: sa.Connection, claim_id: str):
        case = self._latest(conn, claim_id)
        if case is None:
            raise ReviewError(f"claim {claim_id!r} has no review case", 404)
        if case.status == RESOLVED:
            raise self._lost(conn, claim_id)
        return case


def _taken(claim_id: str, case) -> str:
    return (f"the case of claim {claim_id} was already responded to: taken by {case.assignee} at "
            f"{case.responded_at:%Y-%m-%d %H:%M}")


def _seconds(until: datetime, now: datetime) -> int:
    return int((until - now).total_seconds())


def _case_dict(row, now: datetime) -> dict:
    out = dict(row._mapping)
    status = out["status"]
    # Both clocks: the first response (until given) and the resolution (until resolved).
    out["respond_seconds_left"] = _seconds(out["respond_by"], now) if status == OPEN else None
    out["resolve_seconds_left"] = _seconds(out["resolve_by"], now) if status != RESOLVED else None
    out["seconds_left"] = out["respond_seconds_left"] if status == OPEN else out["resolve_seconds_left"]
    out["overdue"] = status != RESOLVED and out["next_deadline"] < now
    return out
