"""What `claimtriage monitor` reads from the claim store, as frames for monitoring/ to compute on.

Reads only. A claim decided more than once in the period counts once, by its newest decision
there; its labels come from its recorded outcome through `OUTCOME_LABELS`, as training's do
(`ClaimStore.labelled_claims`). Times are naive UTC, as the store keeps them.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import sqlalchemy as sa

from monitoring.indicators import indicators
from serving.review import OUTCOME_LABELS, RESOLVED
from serving.store import ClaimStore

DECISION_COLUMNS = ("claim_id", "model_version", "decision", "fraud_probability", "approval_probability",
                    "anomaly_score", "scored_at")
CASE_COLUMNS = ("claim_id", "decision", "status", "assignee", "opened_at", "respond_by", "resolve_by",
                "responded_at", "resolved_at")
_TIMES = ("scored_at", "report_date", "recorded_at", "opened_at", "respond_by", "resolve_by", "responded_at",
          "resolved_at")


def period_decisions(store: ClaimStore, since: datetime, until: datetime) -> pd.DataFrame:
    """One row per claim decided in [since, until): its newest decision there, the claim's report
    date, and its outcome (`outcome`, `recorded_at`) with the labels it implies (`is_fraud`,
    `payable` = paid as filed and not fraud; empty where no outcome, or the outcome does not say)."""
    d, c, o = store.decisions.c, store.claims.c, store.review.outcomes.c
    in_period = sa.and_(d.scored_at >= since, d.scored_at < until)
    newest = sa.select(sa.func.max(d.id).label("id")).where(in_period).group_by(d.claim_id).subquery()
    query = (sa.select(*[d[name] for name in DECISION_COLUMNS], c.report_date, o.outcome, o.recorded_at)
             .join(newest, newest.c.id == d.id)
             .outerjoin(store.claims, c.claim_id == d.claim_id)
             .outerjoin(store.review.outcomes, o.claim_id == d.claim_id)
             .order_by(d.scored_at, d.id))
    with store.engine.connect() as conn:
        frame = pd.DataFrame(conn.execute(query).all(),
                             columns=[*DECISION_COLUMNS, "report_date", "outcome", "recorded_at"])
    return with_labels(timed(frame))


def service_indicators(store: ClaimStore, since: datetime, until: datetime, now: datetime, weekly_after_days: int,
                       targets) -> tuple[pd.DataFrame, dict]:
    """The period's decided claims (period_decisions) and its service indicators
    (monitoring.indicators), as the monitor reports them and the indicators page shows them."""
    decided = period_decisions(store, since, until)
    stamps = [pd.Timestamp(t) for t in (since, until, now)]
    return decided, indicators(decided, review_cases(store, since), *stamps, weekly_after_days, targets)


def with_labels(frame: pd.DataFrame) -> pd.DataFrame:
    labels = [OUTCOME_LABELS.get(outcome, (None, None)) for outcome in frame["outcome"]]
    frame["is_fraud"] = pd.array([fraud for fraud, _ in labels], dtype="boolean")
    # OUTCOME_LABELS' paid_as_filed is false for a confirmed fraud: it is the eligibility target as it stands.
    frame["payable"] = pd.array([paid for _, paid in labels], dtype="boolean")
    frame["model_version"] = frame["model_version"].astype("str")
    frame["decision"] = frame["decision"].astype("str")
    for name in ("fraud_probability", "approval_probability", "anomaly_score"):
        frame[name] = pd.to_numeric(frame[name]).astype("float64")
    return frame


def review_cases(store: ClaimStore, since: datetime) -> pd.DataFrame:
    """Cases still open, and those with a deadline on or after `since`: what the deadline
    indicators of a period from `since`, and the overdue cases now, are counted on."""
    c = store.review.cases.c
    query = (sa.select(*[c[name] for name in CASE_COLUMNS])
             .where(sa.or_(c.status != RESOLVED, c.respond_by >= since, c.resolve_by >= since)).order_by(c.id))
    with store.engine.connect() as conn:
        frame = pd.DataFrame(conn.execute(query).all(), columns=list(CASE_COLUMNS))
    frame["assignee"] = frame["assignee"].astype("str").where(frame["assignee"].notna())
    return timed(frame)


def timed(frame: pd.DataFrame) -> pd.DataFrame:
    for name in _TIMES:
        if name in frame.columns:
            frame[name] = pd.to_datetime(frame[name]).astype("datetime64[us]")
    return frame
