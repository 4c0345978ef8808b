"""The anomaly detector: the flattened forest scores exactly as scikit-learn does, much faster per claim."""

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest

from features.builder import CLAIM_FEATURES
from models.anomaly import ANOMALY_INPUTS, AnomalyDetector, FlatForest, TailDetector


@pytest.mark.parametrize("n_trees, max_samples", [(50, 64), (200, 256)])
def test_flat_forest_equals_score_samples(n_trees, max_samples):
    rng = np.random.default_rng(n_trees)
    train = rng.normal(size=(5000, 12))
    train[:, 2] = rng.lognormal(size=5000)
    forest = IsolationForest(n_estimators=n_trees, max_samples=max_samples, random_state=1).fit(train)
    unseen = np.vstack([rng.normal(size=(500, 12)) * 3, train[:100]])
    np.testing.assert_allclose(FlatForest.from_isolation_forest(forest).score(unseen), -forest.score_samples(unseen),
                               rtol=1e-12)


def test_percentile_is_against_training_claims_and_missing_values_are_typical():
    rng = np.random.default_rng(3)
    matrix = rng.normal(size=(4000, 5))
    detector = AnomalyDetector(columns=[0, 1, 2, 3], n_trees=100, max_samples=256, random_state=0).fit(matrix)
    scores = detector.percentile(detector.raw_score(matrix))
    assert np.mean(scores > 0.99) == pytest.approx(0.01, abs=0.003)
    far = np.array([[25.0, -25.0, 25.0, 25.0, 0]])
    assert detector.percentile(detector.raw_score(far))[0] == 1.0
    unknown = np.array([[np.nan, np.nan, 0, 0, 0]])
    assert detector.percentile(detector.raw_score(unknown))[0] < 0.9


# The tail detector (issue #15): ECOD's per-feature tail scores, the amount on a log-normal per group.

NAMES = ["line_of_business", "loss_type", "amount_to_typical_for_loss_type", "witnesses", "report_delay_days",
         "claimant_claims_365d"]


def claims_matrix(n: int = 6000, seed: int = 0) -> np.ndarray:
    """Two lines, two loss types; line 1's loss type 1 spreads its amounts four times as wide."""
    rng = np.random.default_rng(seed)
    line, loss = rng.integers(0, 2, n).astype(float), rng.integers(0, 2, n).astype(float)
    spread = np.where((line == 1) & (loss == 1), 1.2, 0.3)
    ratio = np.exp(spread * rng.normal(size=n) + 0.5 * line)
    witnesses = rng.poisson(0.8, n).astype(float)
    delay = rng.exponential(2.0, n)
    history = rng.poisson(1.0, n).astype(float)
    return np.column_stack([line, loss, ratio, witnesses, delay, history])


def test_the_detector_reads_only_the_named_claim_features():
    assert ANOMALY_INPUTS == {
        "amount_to_typical_for_loss_type": "lognormal", "amount_to_coverage_limit": "empirical",
        "amount_to_premium": "empirical", "witnesses": "empirical", "injuries": "empirical",
        "vehicles_involved": "empirical"}
    # Claim features only, none that moves with time (history counts, policy age, tenure, report delay).
    assert all(CLAIM_FEATURES[name][0].source == "claim" for name in ANOMALY_INPUTS)
    assert not set(ANOMALY_INPUTS) & {"policy_age_days", "customer_tenure_days", "report_delay_days"}
    matrix = claims_matrix()
    detector = TailDetector(NAMES).fit(matrix)
    assert [NAMES[j] for j in detector.columns] == ["amount_to_typical_for_loss_type", "witnesses"]
    assert detector.skipped_ == ["amount_to_coverage_limit", "amount_to_premium", "injuries", "vehicles_involved"]
    # A history count that grows with the book changes nothing: it is not an input.
    grown = matrix.copy()
    grown[:, NAMES.index("claimant_claims_365d")] *= 10
    np.testing.assert_array_equal(detector.raw_score(grown), detector.raw_score(matrix))
    assert not detector.contributions(matrix)[:, NAMES.index("claimant_claims_365d")].any()


def test_contributions_add_up_to_the_score_exactly_and_missing_values_are_typical():
    matrix = claims_matrix()
    detector = TailDetector(NAMES).fit(matrix[:5000])
    unseen = matrix[5000:].copy()
    unseen[::7, 2] = np.nan
    unseen[::5, 3] = np.nan
    parts = detector.contributions(unseen)
    np.testing.assert_allclose(detector.expected_value_ + parts.sum(axis=1), detector.raw_score(unseen),
                               rtol=0, atol=1e-9)
    assert not parts[::7, 2].any() and not parts[::5, 3].any()
    scores = detector.percentile(detector.raw_score(matrix[:5000]))
    assert np.mean(scores > 0.99) == pytest.approx(0.01, abs=0.003)
    missing = np.array([[0, 0, np.nan, np.nan, np.nan, 0]])
    assert detector.percentile(detector.raw_score(missing))[0] < 0.9


def test_an_amount_is_judged_against_its_own_line_and_loss_type_on_a_log_scale():
    matrix = claims_matrix(20_000)
    detector = TailDetector(NAMES).fit(matrix)
    ratio = NAMES.index("amount_to_typical_for_loss_type")

    def score(line: float, loss: float, times_typical: float) -> float:
        claim = np.array([[line, loss, 1.0, 0.0, 1.0, 0.0]])
        claim[0, ratio] = times_typical * (np.exp(0.5) if line == 1 else 1.0)  # line 1 runs 1.6x dearer
        return float(detector.raw_score(claim)[0])

    # Five times typical is far out where amounts spread narrowly, ordinary where they spread wide.
    assert score(0, 1, 5.0) > score(1, 1, 5.0) + 10
    # The same multiple of each line's typical amount scores alike across lines of the same spread.
    assert score(0, 0, 5.0) == pytest.approx(score(1, 0, 5.0), rel=0.1)
    # Only the upper tail counts: a fifth of the typical amount is no alert.
    assert score(0, 0, 0.2) < score(0, 0, 1.0) + 1
    # An unseen category (NaN code) is judged against all claims, not left out.
    assert np.isfinite(detector.input_values(np.array([[np.nan, 0, 3.0, 0, 1, 0]]))[0, 0])


def test_an_abnormal_payout_outscores_a_claim_unusual_in_several_ordinary_ways():
    # The reason for the log-normal amount: training claims already hold abnormal payouts, and an
    # empirical tail would rank a payout 40 times typical with a claim merely late and well-witnessed.
    matrix = claims_matrix(20_000)
    ratio = NAMES.index("amount_to_typical_for_loss_type")
    matrix[:60, ratio] *= 40  # abnormal payouts already in the training claims
    inputs = {"amount_to_typical_for_loss_type": "lognormal", "witnesses": "empirical", "report_delay_days": "empirical"}
    empirical = dict.fromkeys(inputs, "empirical")
    payout = np.array([[0, 0, 40.0, 1, 1.0, 0]])
    late_and_witnessed = np.array([[0, 0, 2.0, 5, 20.0, 0]])
    ours = TailDetector(NAMES, inputs).fit(matrix)
    assert ours.raw_score(payout)[0] > ours.raw_score(late_and_witnessed)[0] + 10
    ecdf_only = TailDetector(NAMES, empirical).fit(matrix)
    assert ecdf_only.raw_score(payout)[0] < ecdf_only.raw_score(late_and_witnessed)[0]


@pytest.mark.slow  # pyod's ECDF is compiled by numba on first use: about 8 s
def test_with_both_tails_and_empirical_inputs_it_is_pyods_ecod_for_a_claim_scored_alone():
    from pyod.models.ecod import ECOD

    matrix = claims_matrix(3000)
    inputs = dict.fromkeys(["amount_to_typical_for_loss_type", "witnesses", "report_delay_days"], "empirical")
    ours = TailDetector(NAMES, inputs, tails="both").fit(matrix[:2500])
    theirs = ECOD().fit(matrix[:2500][:, ours.columns])
    claims = np.vstack([matrix[2500:2540], [[0, 0, 1e6, 40, 1e4, 0], [0, 0, 1e-6, 0, 0, 0]]])
    expected = [theirs.decision_function(claim[None, ours.columns])[0] for claim in claims]
    np.testing.assert_allclose(ours.raw_score(claims), expected, rtol=1e-12)


@pytest.mark.parametrize("inputs, tails, message", [
    ({"witnesses": "gaussian"}, "upper", "witnesses has tail model 'gaussian'; use one of empirical, lognormal"),
    (None, "lower", "anomaly tails: one of upper, both, not 'lower'"),
    ({"injuries": "empirical"}, "upper", "none of injuries is among the model features"),
])
def test_bad_settings_are_refused_with_the_reason(inputs, tails, message):
    with pytest.raises(ValueError, match=message):
        TailDetector(NAMES, inputs, tails).fit(claims_matrix(200))
