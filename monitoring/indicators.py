"""The service indicators of the insurer's service plan: the decision mix against its targets, time
from report to decision, the share decided automatically, and the 24 h response / 72 h resolution
commitments (met, missed, overdue now), overall and per adjuster.

Pure functions of frames: `decided` (one row per claim decided in the period: decision, scored_at,
report_date) and `cases` (review cases: status, assignee, opened_at, respond_by, resolve_by,
responded_at, resolved_at). A deadline is met when the step is done at or before it; a case counts
towards a commitment when its deadline falls in the period and has passed.
"""

from __future__ import annotations

import pandas as pd

from models.config import DecisionTargets
from models.policy import AUTO_APPROVE, ENHANCED_REVIEW, OUTCOMES, SIU_REFERRAL

RESOLVED = "resolved"  # serving.review.RESOLVED: a case's final status
OPEN = "open"  # serving.review.OPEN: not yet responded to
UNASSIGNED = "(unassigned)"
HOUR = pd.Timedelta(hours=1)


def decision_mix(decided: pd.DataFrame, since: pd.Timestamp, until: pd.Timestamp, weekly_after_days: int,
                 targets: DecisionTargets) -> dict:
    """Claims per decision per day (per week over a long period), and the period's shares beside
    the targets the policy was fitted for (SIU referrals, anomaly alerts: enhanced review)."""
    weekly = (until - since) > pd.Timedelta(days=weekly_after_days)
    bucket = decided["scored_at"].dt.to_period("W-SUN" if weekly else "D").dt.start_time
    counts = pd.crosstab(bucket, decided["decision"]).reindex(columns=list(OUTCOMES), fill_value=0)
    rows = [{"period": f"{start:%Y-%m-%d}", **{d: int(row[d]) for d in OUTCOMES}} for start, row in counts.iterrows()]
    n = len(decided)
    target = {SIU_REFERRAL: targets.siu_referral_rate, ENHANCED_REVIEW: targets.anomaly_alert_rate}
    overall = {d: {"n": int((decided["decision"] == d).sum()),
                   "share": float((decided["decision"] == d).mean()) if n else None,
                   "target": target.get(d)} for d in OUTCOMES}
    return {"by": "week" if weekly else "day", "rows": rows, "overall": overall}


def time_to_decision(decided: pd.DataFrame) -> dict:
    """Hours from the claim's report to its decision: the claim cycle's first leg. Claims stored
    without a report date (an extract lacking it) are counted, not guessed."""
    hours = ((decided["scored_at"] - decided["report_date"]) / HOUR).dropna()
    return {"n": len(hours), "without_report_date": len(decided) - len(hours),
            "median_hours": float(hours.median()) if len(hours) else None,
            "p90_hours": float(hours.quantile(0.9)) if len(hours) else None}


def share_automatic(decided: pd.DataFrame) -> float | None:
    return float((decided["decision"] == AUTO_APPROVE).mean()) if len(decided) else None


def commitment(done_at: pd.Series, due_at: pd.Series, since: pd.Timestamp, until: pd.Timestamp,
               now: pd.Timestamp) -> dict:
    """Of the steps due in the period whose deadline has passed, how many were done by it."""
    due = (due_at >= since) & (due_at < min(until, now))
    met = due & done_at.notna() & (done_at <= due_at)
    n, hits = int(due.sum()), int(met.sum())
    return {"due": n, "met": hits, "missed": n - hits, "share": hits / n if n else None}


def overdue(cases: pd.DataFrame, now: pd.Timestamp) -> pd.Series:
    """Cases past a deadline now: not responded to past respond_by, or not resolved past resolve_by."""
    late_response = (cases["status"] == OPEN) & (cases["respond_by"] < now)
    late_resolution = (cases["status"] != RESOLVED) & (cases["resolve_by"] < now)
    return late_response | late_resolution


def deadlines(cases: pd.DataFrame, since: pd.Timestamp, until: pd.Timestamp, now: pd.Timestamp) -> dict:
    """Response and resolution commitments met in the period, and the cases overdue now."""
    return {"responded_in_time": commitment(cases["responded_at"], cases["respond_by"], since, until, now),
            "resolved_in_time": commitment(cases["resolved_at"], cases["resolve_by"], since, until, now),
            "overdue_now": int(overdue(cases, now).sum()),
            "open_now": int((cases["status"] != RESOLVED).sum())}


def per_adjuster(cases: pd.DataFrame, since: pd.Timestamp, until: pd.Timestamp, now: pd.Timestamp) -> list[dict]:
    """`deadlines` per assignee (cases nobody has taken yet under one name of their own)."""
    who = cases["assignee"].fillna(UNASSIGNED)
    return [{"assignee": name, **deadlines(group, since, until, now)}
            for name, group in cases.groupby(who, sort=True)]


def indicators(decided: pd.DataFrame, cases: pd.DataFrame, since: pd.Timestamp, until: pd.Timestamp,
               now: pd.Timestamp, weekly_after_days: int, targets: DecisionTargets) -> dict:
    """Every service indicator of the period."""
    return {"decision_mix": decision_mix(decided, since, until, weekly_after_days, targets),
            "time_to_decision": time_to_decision(decided),
            "share_automatic": share_automatic(decided),
            "deadlines": deadlines(cases, since, until, now),
            "per_adjuster": per_adjuster(cases, since, until, now)}
