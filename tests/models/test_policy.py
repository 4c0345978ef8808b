"""The decision policy: thresholds meet their targets on validation; precedence; hard rules."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from models.config import DecisionTargets
from models.policy import (AUTO_APPROVE, ENHANCED_REVIEW, SIU_REFERRAL, STANDARD_REVIEW, DecisionPolicy, rule_hits,
                           wilson_lower_bound)

TARGETS = DecisionTargets(auto_approve_precision=0.99, auto_approve_min_support=50, siu_referral_rate=0.02,
                          anomaly_alert_rate=0.01, auto_approve_amount_cap=25_000, auto_approve_confidence_z=0.0)


def fitted(approval, payable, n=None, fraud=None, anomaly=None, blocked=None):
    n = len(approval)
    fraud = np.linspace(0, 0.5, n) if fraud is None else fraud
    anomaly = np.linspace(0, 1, n)[::-1] if anomaly is None else anomaly
    blocked = np.zeros(n, bool) if blocked is None else blocked
    return DecisionPolicy(TARGETS).fit(fraud, anomaly, approval, payable, blocked)


def test_auto_approve_threshold_is_the_lowest_that_keeps_99_percent_precision():
    # 1,000 claims; the 300 most confident are all payable, below that half are.
    n = 1000
    approval = np.linspace(1, 0, n)
    payable = np.ones(n, bool)
    payable[300::2] = False
    fraud, anomaly = np.zeros(n), np.zeros(n)
    th = fitted(approval, payable, fraud=fraud, anomaly=anomaly).thresholds_
    # Negatives sit at ranks 300, 302, 304, 306...: the top 306 hold 3 (303/306 = 0.9902), the top 307 hold 4.
    approved = approval >= th.auto_approve_probability
    assert payable[approved].mean() >= 0.99
    assert approved.sum() == 306
    assert th.validation_auto_approve_precision == pytest.approx(payable[approved].mean())


def test_the_confidence_bound_makes_the_threshold_stricter_than_the_point_estimate():
    n = 5000
    approval = np.linspace(1, 0, n)
    payable = np.ones(n, bool)
    payable[::50] = False  # 98% payable everywhere, plus a clean top
    payable[:1500] = True
    point = fitted(approval, payable, fraud=np.zeros(n), anomaly=np.zeros(n)).thresholds_
    careful = DecisionPolicy(replace(TARGETS, auto_approve_confidence_z=1.645)).fit(
        np.zeros(n), np.zeros(n), approval, payable, np.zeros(n, bool)).thresholds_
    assert careful.auto_approve_probability > point.auto_approve_probability
    approved = approval >= careful.auto_approve_probability
    hits, count = payable[approved].sum(), approved.sum()
    assert wilson_lower_bound(np.array([hits]), np.array([count]), 1.645)[0] >= 0.99


def test_no_threshold_when_the_target_is_out_of_reach():
    rng = np.random.default_rng(0)
    approval = rng.random(2000)
    payable = rng.random(2000) < 0.7  # the score carries no information
    th = fitted(approval, payable).thresholds_
    assert th.auto_approve_probability is None and "no automatic approval" in th.auto_approve_note


def test_siu_and_anomaly_thresholds_hit_their_rates():
    rng = np.random.default_rng(1)
    fraud, anomaly = rng.random(10_000), rng.random(10_000)
    th = DecisionPolicy(TARGETS).fit(fraud, anomaly, None, None, np.zeros(10_000, bool)).thresholds_
    referred = policy_decisions = DecisionPolicy(TARGETS)
    referred.thresholds_ = th
    decisions = policy_decisions.decide(fraud, anomaly, None, np.zeros(10_000, bool))
    assert np.mean(decisions == SIU_REFERRAL) == pytest.approx(0.02, abs=0.001)
    assert np.mean(decisions == ENHANCED_REVIEW) == pytest.approx(0.01, abs=0.002)


def test_precedence_fraud_then_anomaly_then_approval_and_rules_block_approval():
    policy = DecisionPolicy(TARGETS)
    policy.fit(np.linspace(0, 1, 400), np.linspace(0, 1, 400), np.linspace(0, 1, 400), np.arange(400) >= 200,
               np.zeros(400, bool))
    th = policy.thresholds_
    assert 0 < th.auto_approve_probability < 1
    hi_f, hi_a, hi_p = th.siu_fraud_probability + 1e-9, th.anomaly_percentile + 1e-9, 1.0
    decisions = policy.decide(
        fraud=np.array([hi_f, 0.0, 0.0, 0.0, 0.0]),
        anomaly=np.array([hi_a, hi_a, 0.0, 0.0, 0.0]),
        approval=np.array([hi_p, hi_p, hi_p, hi_p, 0.0]),
        blocked=np.array([False, False, False, True, False]))
    assert decisions.tolist() == [SIU_REFERRAL, ENHANCED_REVIEW, AUTO_APPROVE, STANDARD_REVIEW, STANDARD_REVIEW]


def test_without_an_eligibility_model_nothing_is_auto_approved():
    policy = DecisionPolicy(TARGETS).fit(np.zeros(100), np.zeros(100), None, None, np.zeros(100, bool))
    decisions = policy.decide(np.zeros(3), np.zeros(3), None, np.zeros(3, bool))
    assert set(decisions) == {STANDARD_REVIEW}
    assert "paid_as_filed" in policy.thresholds_.auto_approve_note


def test_hard_rules():
    claims = pd.DataFrame({
        "policy_start_date": pd.to_datetime(["2024-01-01", "2024-01-01", "2024-01-01", "2024-01-01"]),
        "loss_date": pd.to_datetime(["2023-12-31", "2024-02-01", "2024-02-01", "2024-02-01"]),
        "claim_amount": [100.0, 60_000.0, 30_000.0, 100.0],
        "coverage_limit": [1000.0, 50_000.0, np.nan, 1000.0],
    })
    assert rule_hits(claims, 25_000) == [
        ["loss_before_policy_start"],
        ["amount_above_coverage_limit", "amount_above_auto_approve_cap"],
        ["amount_above_auto_approve_cap"],
        [],
    ]


def test_hard_rules_read_only_the_fields_an_extract_has():
    """An extract without amounts or dates: no rule that needs them hits, one claim or a frame."""
    from models.policy import record_rule_hits

    claims = pd.DataFrame({"coverage_limit": [1000.0, 5.0], "loss_date": pd.to_datetime(["2023-12-31", "2024-02-01"])})
    assert rule_hits(claims, 25_000) == [[], []]
    assert [record_rule_hits(c, 25_000) for c in claims.to_dict(orient="records")] == [[], []]
    no_dates = pd.DataFrame({"claim_amount": [30_000.0, 10.0]})
    assert rule_hits(no_dates, 25_000) == [["amount_above_auto_approve_cap"], []]
    assert [record_rule_hits(c, 25_000) for c in no_dates.to_dict(orient="records")] == \
        [["amount_above_auto_approve_cap"], []]
