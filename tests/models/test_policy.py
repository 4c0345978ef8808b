"""The decision policy: thresholds meet their targets on validation; precedence; hard rules."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from models.config import DecisionTargets
from models.policy import (AUTO_APPROVE, ENHANCED_REVIEW, SIU_REFERRAL, STANDARD_REVIEW, DecisionPolicy, Thresholds,
                           drift_margin, rule_hits, wilson_lower_bound)

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


def _steady_book(n=6000, seed=3):
    """Validation claims whose scores rank well: the top third 99.5% payable, the rest 90%."""
    rng = np.random.default_rng(seed)
    approval = rng.random(n)
    payable = rng.random(n) < np.where(approval > 2 / 3, 0.995, 0.9)
    return approval, payable


def test_the_next_period_bound_is_stricter_than_the_validation_bound_and_holds_at_half_the_count():
    approval, payable = _steady_book()
    n = len(approval)
    careful = replace(TARGETS, auto_approve_confidence_z=1.645, auto_approve_drift_blocks=0)
    old = DecisionPolicy(replace(careful, auto_approve_bound="validation")).fit(
        np.zeros(n), np.zeros(n), approval, payable, np.zeros(n, bool)).thresholds_
    new = DecisionPolicy(careful).fit(np.zeros(n), np.zeros(n), approval, payable, np.zeros(n, bool)).thresholds_
    assert new.auto_approve_probability > old.auto_approve_probability
    # The new cut is the widest whose share, counted at half its claims (two periods' chance), stays >= 99%.
    approved = approval >= new.auto_approve_probability
    hits, count = payable[approved].sum(), approved.sum()
    assert wilson_lower_bound(np.array([hits / 2]), np.array([count / 2]), 1.645)[0] >= 0.99
    wider = approval >= np.sort(approval[~approved])[-1]
    assert wilson_lower_bound(np.array([payable[wider].sum() / 2]), np.array([wider.sum() / 2]), 1.645)[0] < 0.99
    assert "next period" in new.auto_approve_note


def test_drift_margin_follows_a_steady_fall_to_the_next_period_shrunk_by_its_noise():
    # Three blocks of 10,000 approvals at 99.5%, 99.0%, 98.5%: -1.5 points a validation length; the
    # binomial standard error of that slope is 0.21 points, so the fall is kept nearly whole.
    approved = np.ones(30_000, bool)
    payable = np.ones(30_000, bool)
    for block, errors in enumerate((50, 100, 150)):
        payable[block * 10_000:block * 10_000 + errors] = False
    times = np.arange(30_000)
    se = (10_000 * (2 / 9) / (0.99 * 0.01)) ** -0.5
    assert drift_margin(approved, payable, times, 3) == pytest.approx(0.015 * (1 - se ** 2 / 0.015 ** 2), rel=1e-9)
    # Order comes from the times, not the positions: shuffled claims give the same margin...
    shuffle = np.random.default_rng(0).permutation(30_000)
    assert drift_margin(approved[shuffle], payable[shuffle], times[shuffle], 3) == pytest.approx(
        drift_margin(approved, payable, times, 3))
    # ...and a rise (the same claims, time reversed) gives none.
    assert drift_margin(approved, payable, -times, 3) == 0.0


def test_drift_margin_ignores_a_fall_within_chance():
    # 99.4%, 99.3%, 99.2% on 1,000 approvals a block: a 0.2-point fall against a standard error of 0.45.
    approved, payable = np.ones(3000, bool), np.ones(3000, bool)
    for block, errors in enumerate((6, 7, 8)):
        payable[block * 1000:block * 1000 + errors] = False
    assert drift_margin(approved, payable, np.arange(3000), 3) == 0.0
    # No error at all, or a block without approvals: nothing to follow.
    assert drift_margin(approved, np.ones(3000, bool), np.arange(3000), 3) == 0.0
    approved[:1000] = False
    assert drift_margin(approved, payable, np.arange(3000), 3) == 0.0


def test_a_falling_validation_period_raises_the_target_and_the_threshold():
    # Errors grow towards lower scores (20% x (1 - score)^2); in the last third of the period 0.4% more.
    rng = np.random.default_rng(4)
    n = 60_000
    approval, times = rng.random(n), np.arange(n)
    payable = rng.random(n) >= 0.2 * (1 - approval) ** 2
    payable[(times >= 40_000) & (rng.random(n) < 0.004)] = False
    args = (np.zeros(n), np.zeros(n), approval, payable, np.zeros(n, bool))
    careful = replace(TARGETS, auto_approve_confidence_z=1.645)
    still = DecisionPolicy(careful).fit(*args).thresholds_  # no times: no period to measure a drift on
    drifting = DecisionPolicy(careful).fit(*args, times).thresholds_
    assert still.auto_approve_drift_margin == 0.0
    assert 0.001 < drifting.auto_approve_drift_margin < 0.01
    assert drifting.auto_approve_probability > still.auto_approve_probability
    assert f"raised by {drifting.auto_approve_drift_margin:.2%}" in drifting.auto_approve_note
    off = DecisionPolicy(replace(careful, auto_approve_drift_blocks=0)).fit(*args, times).thresholds_
    assert off.auto_approve_drift_margin == 0.0 and off.auto_approve_probability == still.auto_approve_probability


def test_thresholds_saved_before_the_margin_existed_read_as_no_margin():
    old = object.__new__(Thresholds)
    old.__dict__.update(siu_fraud_probability=0.5, anomaly_percentile=0.9, auto_approve_probability=0.97,
                        auto_approve_note="", validation_auto_approve_precision=0.99,
                        validation_auto_approve_rate=0.1)
    assert old.auto_approve_drift_margin == 0.0


def test_realised_approval_precision_is_logged_with_its_interval():
    from training.evaluate import approval_metrics

    approved = np.r_[np.ones(100, bool), np.zeros(50, bool)]
    payable = np.r_[np.ones(99, bool), np.zeros(51, bool)]
    m = approval_metrics(approved, payable, 0.0015)
    assert m["test_auto_approved"] == 100 and m["test_auto_approve_precision"] == pytest.approx(0.99)
    # 99 of 100: the textbook Wilson 95% interval.
    assert (m["test_auto_approve_precision_low"], m["test_auto_approve_precision_high"]) == (
        pytest.approx(0.9455, abs=1e-4), pytest.approx(0.9982, abs=1e-4))
    assert m["auto_approve_drift_margin"] == 0.0015
    none = approval_metrics(np.zeros(5, bool), np.ones(5, bool), 0.0)
    assert none["test_auto_approved"] == 0 and np.isnan(none["test_auto_approve_precision_low"])


def test_an_unknown_approval_bound_is_refused_by_name(tmp_path):
    from models.config import ConfigError, load_config

    path = tmp_path / "bad.toml"
    path.write_text('[targets]\nauto_approve_bound = "optimistic"\n')
    with pytest.raises(ConfigError, match="auto_approve_bound.*next_period"):
        load_config(path)
