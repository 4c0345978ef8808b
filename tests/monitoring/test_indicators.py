"""The service indicators and the alerts, on hand-built frames with a fixed clock."""

import pandas as pd
import pytest

from models.config import DecisionTargets, MonitoringConfig
from monitoring.alerts import alerts, drift_alerts
from monitoring.drift import DriftRow
from monitoring.indicators import decision_mix, deadlines, per_adjuster, time_to_decision

SINCE, UNTIL = pd.Timestamp("2026-11-02"), pd.Timestamp("2026-11-09")
NOW = pd.Timestamp("2026-11-10 12:00")
OPENED = pd.Timestamp("2026-11-03 00:00")
NAT = pd.NaT


def cases(rows: list[tuple]) -> pd.DataFrame:
    """(status, assignee, responded_at, resolved_at) per case, all opened at OPENED with 24 h / 72 h deadlines."""
    frame = pd.DataFrame(rows, columns=["status", "assignee", "responded_at", "resolved_at"])
    frame["opened_at"] = OPENED
    frame["respond_by"] = OPENED + pd.Timedelta(hours=24)
    frame["resolve_by"] = OPENED + pd.Timedelta(hours=72)
    for name in ("responded_at", "resolved_at"):
        frame[name] = pd.to_datetime(frame[name])
    return frame


def at(hours: float, minutes: float = 0) -> pd.Timestamp:
    return OPENED + pd.Timedelta(hours=hours, minutes=minutes)


def test_a_response_at_23_59_meets_the_24_hour_commitment_and_one_at_24_01_misses_it():
    found = deadlines(cases([("responded", "ann", at(23, 59), NAT), ("responded", "bob", at(24, 1), NAT),
                             ("responded", "ann", at(24), NAT)]), SINCE, UNTIL, NOW)
    assert found["responded_in_time"] == {"due": 3, "met": 2, "missed": 1, "share": pytest.approx(2 / 3)}


def test_resolution_by_72_hours_and_a_case_never_answered_counts_as_missed():
    found = deadlines(cases([("resolved", "ann", at(1), at(71, 59)), ("resolved", "bob", at(2), at(72, 1)),
                             ("open", None, NAT, NAT)]), SINCE, UNTIL, NOW)
    assert found["resolved_in_time"] == {"due": 3, "met": 1, "missed": 2, "share": pytest.approx(1 / 3)}
    assert found["responded_in_time"]["met"] == 2


def test_deadlines_not_yet_passed_or_outside_the_period_are_not_counted():
    early = deadlines(cases([("open", None, NAT, NAT)]), SINCE, UNTIL, now=at(23))
    assert early["responded_in_time"]["due"] == 0 and early["responded_in_time"]["share"] is None
    later_period = deadlines(cases([("open", None, NAT, NAT)]), UNTIL, UNTIL + pd.Timedelta(days=7), NOW)
    assert later_period["responded_in_time"]["due"] == 0


def test_overdue_now_with_a_fixed_clock():
    frame = cases([("open", None, NAT, NAT), ("responded", "ann", at(2), NAT), ("resolved", "bob", at(2), at(80))])
    assert deadlines(frame, SINCE, UNTIL, now=at(23, 59))["overdue_now"] == 0
    assert deadlines(frame, SINCE, UNTIL, now=at(24, 1))["overdue_now"] == 1  # the open case missed its response
    assert deadlines(frame, SINCE, UNTIL, now=at(72, 1))["overdue_now"] == 2  # and the taken one its resolution
    assert deadlines(frame, SINCE, UNTIL, now=at(72, 1))["open_now"] == 2


def test_per_adjuster_with_the_cases_nobody_took_under_their_own_name():
    frame = cases([("resolved", "ann", at(1), at(10)), ("responded", "bob", at(30), NAT), ("open", None, NAT, NAT)])
    rows = {r["assignee"]: r for r in per_adjuster(frame, SINCE, UNTIL, NOW)}
    assert sorted(rows) == ["(unassigned)", "ann", "bob"]
    assert rows["ann"]["resolved_in_time"]["met"] == 1 and rows["ann"]["overdue_now"] == 0
    assert rows["bob"]["responded_in_time"]["missed"] == 1 and rows["bob"]["overdue_now"] == 1
    assert rows["(unassigned)"]["overdue_now"] == 1


def decided(decisions: list[str], days: list[int]) -> pd.DataFrame:
    scored = [SINCE + pd.Timedelta(days=d, hours=10) for d in days]
    return pd.DataFrame({"decision": decisions, "scored_at": scored,
                         "report_date": [s - pd.Timedelta(hours=2 * (i + 1)) for i, s in enumerate(scored)]})


def test_decision_mix_per_day_against_the_targets_and_per_week_over_a_long_period():
    frame = decided(["AUTO_APPROVE", "AUTO_APPROVE", "SIU_REFERRAL", "STANDARD_REVIEW"], [0, 0, 1, 1])
    mix = decision_mix(frame, SINCE, UNTIL, 56, DecisionTargets())
    assert mix["by"] == "day"
    assert mix["rows"] == [
        {"period": "2026-11-02", "AUTO_APPROVE": 2, "STANDARD_REVIEW": 0, "ENHANCED_REVIEW": 0, "SIU_REFERRAL": 0},
        {"period": "2026-11-03", "AUTO_APPROVE": 0, "STANDARD_REVIEW": 1, "ENHANCED_REVIEW": 0, "SIU_REFERRAL": 1}]
    assert mix["overall"]["SIU_REFERRAL"] == {"n": 1, "share": 0.25, "target": 0.02}
    assert mix["overall"]["AUTO_APPROVE"]["target"] is None
    weekly = decision_mix(decided(["AUTO_APPROVE"] * 3, [0, 6, 7]), SINCE, SINCE + pd.Timedelta(days=70), 56,
                          DecisionTargets())
    assert weekly["by"] == "week" and [(r["period"], r["AUTO_APPROVE"]) for r in weekly["rows"]] == [
        ("2026-11-02", 2), ("2026-11-09", 1)]  # weeks start on Monday


def test_time_from_report_to_decision_in_hours_counting_claims_without_a_report_date():
    frame = decided(["AUTO_APPROVE"] * 5, [0] * 5)  # reported 2, 4, 6, 8, 10 hours before
    frame.loc[4, "report_date"] = pd.NaT
    found = time_to_decision(frame)
    assert found == {"n": 4, "without_report_date": 1, "median_hours": 5.0, "p90_hours": pytest.approx(7.4)}


def row(name: str, kind: str, psi: float, rank: int | None) -> DriftRow:
    return DriftRow(name, kind, psi, "ks", 0.1, 0.01, 500, (), (), (), rank)


def test_drift_alerts_on_a_score_or_a_top_feature_only():
    settings = MonitoringConfig(psi_alert=0.25, psi_alert_top_features=10)
    rows = [row("fraud_probability", "score", 0.30, None), row("claim_amount", "feature", 0.40, 3),
            row("loss_hour", "feature", 0.90, 11), row("witnesses", "feature", 0.25, 1)]
    assert [a.message.split(":")[0] for a in drift_alerts(rows, settings)] == ["score fraud_probability",
                                                                               "feature claim_amount"]
    few = [DriftRow(r.name, r.kind, r.psi, "ks", 0.1, 0.01, 499, (), (), (), r.importance_rank) for r in rows]
    assert drift_alerts(few, MonitoringConfig(psi_alert=0.25, min_drift_claims=500)) == []  # too few to tell
    assert len(drift_alerts(few, MonitoringConfig(psi_alert=0.25, min_drift_claims=499))) == 2


def test_quality_and_overdue_alerts_and_none_below_the_thresholds():
    settings, targets = MonitoringConfig(max_overdue_cases=2), DecisionTargets(auto_approve_precision=0.99)
    quality = {"approval_precision": {"n": 100, "hits": 99, "value": 0.99, "low": 0.9455, "high": 0.998}}
    indicators = {"deadlines": {"overdue_now": 3}}
    assert [a.name for a in alerts(quality, indicators, [], settings, targets)] == ["approval_precision",
                                                                                   "overdue_cases"]
    calm = {"approval_precision": {"n": 12, "hits": 10, "value": None, "note": "not enough labels"}}
    assert alerts(calm, {"deadlines": {"overdue_now": 2}}, [], settings, targets) == []
