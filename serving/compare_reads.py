"""What `claimtriage compare` reads from the claim store: the challenger's shadow decisions beside the
champion's decisions they shadowed, with the claims' labels, as one frame for monitoring.compare.

Reads only. A claim the challenger scored more than once counts once, by its newest shadow
decision; the champion's side is the decision that row shadowed (`decision_id`).
Labels come from the claim's recorded outcome as the monitor's do (`serving.monitor_reads`).
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import sqlalchemy as sa

from serving.monitor_reads import timed, with_labels
from serving.shadow import shadow_table
from serving.store import ClaimStore

SIDE_COLUMNS = ("model_version", "decision", "fraud_probability", "approval_probability", "anomaly_score")
PAIR_COLUMNS = ("claim_id", "scored_at", *SIDE_COLUMNS, *(f"challenger_{name}" for name in SIDE_COLUMNS),
                "outcome", "recorded_at")


def shadow_pairs(store: ClaimStore, version: str, since: datetime | None = None) -> pd.DataFrame:
    """One row per claim challenger `version` scored (decided since `since`): the champion's decision and scores
    (plain names), the challenger's (`challenger_` names), and the labels of its outcome if any
    (`is_fraud`, `payable`)."""
    shadow, d, o = shadow_table(store.metadata), store.decisions.c, store.review.outcomes.c
    if not sa.inspect(store.engine).has_table(shadow.name):
        return _typed(pd.DataFrame(columns=list(PAIR_COLUMNS)))
    s = shadow.c
    newest = (sa.select(sa.func.max(s.id).label("id")).where(s.model_version == str(version))
              .group_by(s.claim_id).subquery())
    query = (sa.select(s.claim_id, d.scored_at, *[d[name] for name in SIDE_COLUMNS],
                       *[s[name].label(f"challenger_{name}") for name in SIDE_COLUMNS], o.outcome, o.recorded_at)
             .join(newest, newest.c.id == s.id)
             .join(store.decisions, d.id == s.decision_id)
             .outerjoin(store.review.outcomes, o.claim_id == s.claim_id)
             .order_by(d.scored_at, s.id))
    if since is not None:  # the period is when the champion decided, as the monitor's is
        query = query.where(d.scored_at >= since)
    with store.engine.connect() as conn:
        frame = pd.DataFrame(conn.execute(query).all(), columns=list(PAIR_COLUMNS))
    return _typed(frame)


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Both sides typed alike: the champion's as the monitor types decisions, the challenger's the same."""
    frame = with_labels(timed(frame))
    for name in ("challenger_model_version", "challenger_decision"):
        frame[name] = frame[name].astype("str")
    for name in ("challenger_fraud_probability", "challenger_approval_probability", "challenger_anomaly_score"):
        frame[name] = pd.to_numeric(frame[name]).astype("float64")
    return frame


def shadowed_versions(store: ClaimStore) -> list[str]:
    """The versions with shadow decisions in the store, for messages that must say what exists."""
    shadow = shadow_table(store.metadata)
    if not sa.inspect(store.engine).has_table(shadow.name):
        return []
    with store.engine.connect() as conn:
        found = conn.execute(sa.select(shadow.c.model_version).distinct()).scalars().all()
    return sorted(found, key=lambda v: (len(v), v))
