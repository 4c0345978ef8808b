"""Review cases and outcomes: what adjusters work on, and what becomes the next training labels.

Every decision that needs a person opens a case (respond within 24 h, resolve within 72 h of the
first decision, as the decision's deadlines say). Re-scoring a claim whose case is still open
moves the case to the newest decision and keeps its deadlines: the clock started at first notice.
A case is closed only by a person recording the outcome. Outcomes can also come from the claims
system for claims that never needed review (an auto-approved claim later found to be fraud).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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
    )


def outcomes_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "outcomes", metadata,
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("claim_id", sa.String(128), nullable=False, index=True),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("recorded_by", sa.String(128), nullable=False),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
    )


@dataclass
class Review:
    """The cases and outcomes tables of one claim store."""

    cases: sa.Table
    outcomes: sa.Table
    insert: Callable[[sa.Connection, sa.Table, list[dict]], None] = insert_with_sqlalchemy

    def open_or_follow(self, conn: sa.Connection, decisions: list[dict]) -> None:
        """In the decisions' own transaction: open a case for each decision needing a person, or
        move the claim's open case to its newest decision. `decisions` carry their row ids."""
        needing = [d for d in decisions if d["decision"] != AUTO_APPROVE]
        if not needing:
            return
        c = self.cases.c
        # Driver SQL: this runs with every scored claim, and building it through SQLAlchemy's
        # expression language costs several times the query.
        keys = list(dict.fromkeys(d["claim_id"] for d in needing))
        mark = placeholder(conn.dialect)
        table = conn.dialect.identifier_preparer.quote(self.cases.name)
        unresolved = {}
        for part in key_chunks(keys):
            unresolved.update(conn.exec_driver_sql(
                f"SELECT claim_id, id FROM {table} WHERE claim_id IN ({', '.join([mark] * len(part))}) "
                f"AND status != {mark}", (*part, RESOLVED)).all())
        fresh: dict[str, dict] = {}
        followed: dict[int, dict] = {}  # open case id -> its newest decision
        moments: dict[str, datetime] = {}  # a batch shares its deadlines: parse each once
        for d in needing:
            values = {"decision_id": d["id"], "decision": d["decision"],
                      "fraud_probability": d["fraud_probability"], "anomaly_score": d["anomaly_score"]}
            if d["claim_id"] in fresh:  # twice in one call: the new case follows the later decision
                fresh[d["claim_id"]].update(values)
            elif d["claim_id"] in unresolved:
                followed[unresolved[d["claim_id"]]] = values
            else:
                deadlines = d["response"].get("deadlines") or {}
                for text in (deadlines["respond_by"], deadlines["resolve_by"]):
                    if text not in moments:
                        moments[text] = as_datetime(text)
                fresh[d["claim_id"]] = {**values, "claim_id": d["claim_id"], "status": OPEN,
                                        "opened_at": d["scored_at"], "respond_by": moments[deadlines["respond_by"]],
                                        "resolve_by": moments[deadlines["resolve_by"]]}
        if followed:  # one statement for all re-scored claims (a re-sent batch follows hundreds)
            conn.execute(self.cases.update().where(c.id == sa.bindparam("case_id")).values(
                {name: sa.bindparam(f"new_{name}") for name in next(iter(followed.values()))}),
                [{"case_id": case_id, **{f"new_{k}": v for k, v in values.items()}}
                 for case_id, values in followed.items()])
        self.insert(conn, self.cases, list(fresh.values()))

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

    def respond(self, conn: sa.Connection, claim_id: str, by: str, now: datetime) -> dict:
        """An adjuster takes the case: first response given, assignee set."""
        case = self._unresolved(conn, claim_id)
        if case.status != OPEN:
            raise ReviewError(f"the case of claim {claim_id} was already responded to at {case.responded_at:%Y-%m-%d %H:%M}")
        conn.execute(self.cases.update().where(self.cases.c.id == case.id)
                     .values(status=RESPONDED, responded_at=now, assignee=by))
        return self.case(conn, claim_id, now)

    def record_outcome(self, conn: sa.Connection, claim_id: str, outcome: str, note: str | None, by: str,
                       now: datetime, known_claim: bool) -> dict:
        """Record what the claim came to; resolves its open case. Returns the outcome row."""
        if outcome not in OUTCOME_LABELS:
            raise ReviewError(f"outcome must be one of {', '.join(OUTCOME_LABELS)}, not {outcome!r}", 422)
        if note is not None and len(note) > MAX_NOTE:
            raise ReviewError(f"note is longer than {MAX_NOTE} characters", 422)
        if not known_claim:
            raise ReviewError(f"no claim {claim_id!r} has been scored", 404)
        c = self.cases.c
        latest = self._latest(conn, claim_id)
        case_id = None
        if latest is not None:
            if latest.status == RESOLVED:
                raise ReviewError(f"the case of claim {claim_id} was resolved at {latest.resolved_at:%Y-%m-%d %H:%M}; "
                                  "an outcome is recorded once")
            case_id = latest.id
            conn.execute(self.cases.update().where(c.id == latest.id).values(
                status=RESOLVED, resolved_at=now, responded_at=latest.responded_at or now,
                assignee=latest.assignee or by))
        else:
            recorded = conn.execute(sa.select(sa.func.count()).select_from(self.outcomes)
                                    .where(self.outcomes.c.claim_id == claim_id)).scalar_one()
            if recorded:
                raise ReviewError(f"an outcome for claim {claim_id} is already recorded; it is recorded once")
        row = {"claim_id": claim_id, "case_id": case_id, "outcome": outcome, "note": note, "recorded_by": by,
               "recorded_at": now}
        return dict(conn.execute(self.outcomes.insert().values(**row).returning(*self.outcomes.c)).one()._mapping)

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
            raise ReviewError(f"the case of claim {claim_id} is already resolved")
        return case


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
