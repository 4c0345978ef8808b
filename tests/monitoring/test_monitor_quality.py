"""Quality as outcomes arrive and as the calibrated probabilities expect it, on hand-built frames."""

import pandas as pd
import pytest

from monitoring.quality import (approval_precision, expected_quality, fraud_scores, label_delay,
                                referrals_confirmed, reliability, wilson_interval)

T0 = pd.Timestamp("2026-11-02 09:00")


def decided(rows: list[tuple]) -> pd.DataFrame:
    """(decision, fraud_probability, approval_probability, is_fraud, payable, hours to the outcome) per claim."""
    frame = pd.DataFrame(rows, columns=["decision", "fraud_probability", "approval_probability", "is_fraud",
                                        "payable", "delay_hours"])
    frame["is_fraud"] = frame["is_fraud"].astype("boolean")
    frame["payable"] = frame["payable"].astype("boolean")
    frame["scored_at"] = T0
    frame["recorded_at"] = T0 + pd.to_timedelta(frame["delay_hours"], unit="h")
    return frame.drop(columns="delay_hours")


def test_wilson_interval_of_99_in_100_is_the_textbook_one_and_stays_inside_0_1():
    low, high = wilson_interval(99, 100, 1.96)
    assert low == pytest.approx(0.94551, abs=1e-5) and high == pytest.approx(0.99823, abs=1e-5)
    assert wilson_interval(10, 10, 1.96) == (pytest.approx(0.72245, abs=1e-5), pytest.approx(1.0))
    assert wilson_interval(0, 10, 1.96)[0] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="at least one claim"):
        wilson_interval(0, 0, 1.96)


def test_approval_precision_counts_only_approvals_whose_outcome_says_whether_they_were_payable():
    rows = ([("AUTO_APPROVE", 0.01, 0.995, False, True, 48)] * 99 + [("AUTO_APPROVE", 0.2, 0.99, True, False, 72)]
            + [("AUTO_APPROVE", 0.01, 0.99, False, None, 10)] * 5  # "not fraud": says nothing of payment
            + [("AUTO_APPROVE", 0.01, 0.99, None, None, None)] * 7  # no outcome yet
            + [("STANDARD_REVIEW", 0.05, 0.4, False, False, 24)] * 3)
    found = approval_precision(decided(rows), min_labels=30, z=1.96)
    assert (found["n"], found["hits"], found["value"]) == (100, 99, 0.99)
    assert found["low"] == pytest.approx(0.94551, abs=1e-5)


def test_too_few_labels_say_so_with_the_count_instead_of_a_number():
    rows = [("AUTO_APPROVE", 0.01, 0.99, False, True, 5)] * 12
    found = approval_precision(decided(rows), min_labels=30, z=1.96)
    assert found["value"] is None and found["note"] == "not enough labels (12 labelled, 30 needed)"
    assert fraud_scores(decided(rows), min_labels=30, bins=10)["note"].startswith("not enough labels (12")


def test_referrals_confirmed_is_the_share_of_labelled_referrals_found_fraudulent():
    rows = ([("SIU_REFERRAL", 0.6, 0.1, True, False, 100)] * 3 + [("SIU_REFERRAL", 0.5, 0.1, False, None, 100)] * 1
            + [("SIU_REFERRAL", 0.5, 0.1, None, None, None)] * 4 + [("AUTO_APPROVE", 0.9, 0.99, True, False, 1)])
    found = referrals_confirmed(decided(rows), min_labels=1, z=1.96)
    assert (found["n"], found["hits"], found["value"]) == (4, 3, 0.75)


def test_fraud_scores_on_labelled_claims_with_a_reliability_curve_per_bin():
    rows = [("STANDARD_REVIEW", 0.05, 0.5, False, False, 1)] * 6 + [("SIU_REFERRAL", 0.95, 0.1, True, False, 1)] * 2 \
        + [("SIU_REFERRAL", 0.95, 0.1, False, False, 1)] * 2 + [("STANDARD_REVIEW", 0.3, 0.5, None, None, None)] * 9
    found = fraud_scores(decided(rows), min_labels=5, bins=10)
    assert (found["n"], found["frauds"]) == (10, 2)
    # Each fraud outranks 6 of the 8 non-frauds and ties 2 (a tie counts half): (6 + 1) / 8.
    assert found["roc_auc"] == pytest.approx(0.875)
    assert found["pr_auc"] == pytest.approx(0.5)  # both frauds are found only with the 2 tied non-frauds
    assert found["brier"] == pytest.approx((6 * 0.05 ** 2 + 2 * 0.05 ** 2 + 2 * 0.95 ** 2) / 10)
    assert found["reliability"] == [
        {"low": 0.0, "high": 0.1, "n": 6, "predicted": pytest.approx(0.05), "observed": 0.0},
        {"low": 0.9, "high": 1.0, "n": 4, "predicted": pytest.approx(0.95), "observed": 0.5}]
    one_class = fraud_scores(decided(rows[:6]), min_labels=5, bins=10)
    assert "roc_auc" not in one_class and "both frauds and non-frauds" in one_class["note"]


def test_a_probability_on_a_bin_edge_falls_in_the_bin_above_and_1_in_the_last():
    import numpy as np

    curve = reliability(np.array([True, False, True]), np.array([0.1, 0.0999, 1.0]), bins=10)
    assert [(b["low"], b["n"]) for b in curve] == [(0.0, 1), (pytest.approx(0.1), 1), (pytest.approx(0.9), 1)]


def test_label_delay_and_share_labelled():
    rows = [("AUTO_APPROVE", 0.01, 0.99, False, True, h) for h in (10, 20, 30, 40, 100)] \
        + [("AUTO_APPROVE", 0.01, 0.99, None, None, None)] * 5
    found = label_delay(decided(rows))
    assert (found["decided"], found["labelled"], found["labelled_share"]) == (10, 5, 0.5)
    assert found["median_hours"] == 30 and found["p90_hours"] == pytest.approx(76.0)


def test_expected_quality_averages_the_calibrated_probabilities_of_each_group():
    rows = [("AUTO_APPROVE", 0.01, 0.99, False, True, 1), ("AUTO_APPROVE", 0.02, 0.97, None, None, None),
            ("SIU_REFERRAL", 0.6, 0.1, True, False, 1), ("SIU_REFERRAL", 0.2, 0.1, None, None, None),
            ("STANDARD_REVIEW", 0.1, 0.5, None, None, None)]
    found = expected_quality(decided(rows))
    # approval_probability is already P(paid as filed and not fraud): averaged as it is.
    assert found["approval_precision"] == pytest.approx(0.98)
    assert found["approval_precision_on_labelled"] == pytest.approx(0.99)
    assert found["referrals_fraud_share"] == pytest.approx(0.4)
    assert found["referrals_fraud_share_on_labelled"] == pytest.approx(0.6)
    assert expected_quality(decided(rows[2:]))["approval_precision"] is None
