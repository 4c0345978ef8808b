"""Drift against a reference profile: nothing moves on the reference itself, shifted columns come
first, missing values and unseen levels have bins of their own, and PSI is the textbook figure."""

import math

import numpy as np
import pandas as pd
import pytest

from monitoring.drift import drift, period_features, psi
from monitoring.profile import MISSING, OTHER, SAMPLE_ROWS, ColumnProfile, ReferenceProfile, profile_claims

AMOUNT_FEATURES = {"claim_amount", "amount_to_typical_for_loss_type", "amount_to_premium", "amount_to_coverage_limit"}


@pytest.fixture(scope="module")
def book():
    """A bundle fitted on 6,000 generated claims, its claims, and the profile of its held-out periods."""
    from features.validation import validate_claims
    from models.config import Config
    from training.data import split_claims
    from training.fit import fit_bundle
    from training.generate import generate_claims

    claims = validate_claims(generate_claims(6_000, seed=11), require_labels=True).claims
    claims = claims.sort_values("report_date", kind="stable").reset_index(drop=True)
    fitted = fit_bundle(claims, split_claims(claims, 0.15, 0.15, 0), Config())
    held_out = ~fitted.split.train
    profile = profile_claims(fitted.bundle, claims.loc[held_out], {"run_id": "test"}, matrix=fitted.matrix[held_out])
    since = claims.loc[held_out, "report_date"].min()
    return fitted.bundle, claims, profile, since


def _period(bundle, stored, since):
    """Features (via period_features) and scores of the claims reported since `since`, as the monitor has them."""
    features = period_features(bundle, stored, since, "2100-01-01")
    period = stored.loc[stored["report_date"] >= since]
    scores = bundle.score(period, history=stored).set_index("claim_id")
    return features, scores


def test_the_reference_against_its_own_sample_shows_no_drift(book):
    bundle, _, profile, _ = book
    sample = profile.sample
    scores = sample[[c.name for c in profile.columns if c.source == "score"]]
    rows = drift(profile, sample.drop(columns=scores.columns), scores)
    assert len(rows) == len(profile.columns) == len(bundle.builder.feature_names_) + 3
    assert max(r.psi for r in rows) < 1e-9
    assert all(r.p_value > 0.99 for r in rows)
    assert {r.statistic for r in rows if r.kind == "score"} == {"ks"}
    assert next(r for r in rows if r.name == "loss_type").statistic == "chi2"


def test_the_unshifted_period_through_period_features_matches_the_reference(book):
    """The held-out claims again, their features rebuilt point in time over every stored claim: the
    same numbers the profile was made of."""
    bundle, claims, profile, since = book
    features, scores = _period(bundle, claims, since)
    assert len(features) == profile.about["n"] and features.index.name == "claim_id"
    assert max(r.psi for r in drift(profile, features, scores)) < 1e-9


def test_shifted_amounts_and_loss_types_come_first_and_the_rest_stay_low(book):
    bundle, claims, profile, since = book
    stored = claims.copy()
    recent = stored["report_date"] >= since
    stored.loc[recent, "claim_amount"] *= 3
    collision = recent & (stored["loss_type"] == "collision")
    moved = collision & (np.arange(len(stored)) % 5 < 3)  # 60% of collisions become thefts
    stored.loc[moved, "loss_type"] = "theft"
    rows = drift(profile, *_period(bundle, stored, since))

    by_name = {r.name: r for r in rows}
    assert [r.psi for r in rows] == sorted((r.psi for r in rows), reverse=True)
    for name in ("claim_amount", "amount_to_premium", "amount_to_coverage_limit", "loss_type"):
        assert by_name[name].psi > 0.25, name
        assert by_name[name].p_value < 1e-6, name
    shifted = AMOUNT_FEATURES | {"loss_type", "fraud_probability", "approval_probability", "anomaly_score"}
    assert {r.name for r in rows[:4]} <= shifted
    unshifted = [r for r in rows if r.name not in shifted]
    assert max(r.psi for r in unshifted) < 0.05
    assert by_name["claim_amount"].importance_rank >= 1 and by_name["fraud_probability"].importance_rank is None


def test_missing_values_count_in_their_own_bin(book):
    bundle, claims, profile, since = book
    stored = claims.copy()
    recent = np.flatnonzero((stored["report_date"] >= since).to_numpy())
    stored.loc[stored.index[recent[::2]], "witnesses"] = pd.NA  # half the period's claims lose the field
    row = next(r for r in drift(profile, *_period(bundle, stored, since)) if r.name == "witnesses")
    assert row.bins[-1] == MISSING
    missing_now = int(stored["witnesses"].iloc[recent].isna().sum())
    assert missing_now > len(recent[::2])  # the blanked half and those the reference lacked already
    assert row.current_shares[-1] == missing_now / len(recent)
    assert sum(row.current_shares) == pytest.approx(1.0)
    assert row.psi > 0.25 and row.n == len(recent)


def test_a_level_the_reference_never_had_lands_in_other(book):
    bundle, claims, profile, since = book
    stored = claims.copy()
    recent = stored["report_date"] >= since
    stored.loc[recent & (stored["region"] == "north"), "region"] = "atlantis"
    row = next(r for r in drift(profile, *_period(bundle, stored, since)) if r.name == "region")
    north, other = row.bins.index("north"), row.bins.index(OTHER)
    assert row.current_shares[north] == 0 and row.current_shares[other] == pytest.approx(row.reference_shares[north],
                                                                                          abs=0.03)
    assert row.reference_shares[other] == 0 and row.current_shares[-1] == 0  # not counted as missing
    assert row.psi > 0.25


def test_psi_of_a_tiny_case_is_the_hand_computed_value():
    column = ColumnProfile.from_reference("witnesses", "feature", "numeric", pd.Series([1.0, 1, 2, 2]), 1)
    assert column.edges == (1.0, 2.0) and column.labels == ("<= 1", "(1, 2]", "> 2", MISSING)
    assert column.shares == (0.5, 0.5, 0.0, 0.0)
    current = column.counts(pd.Series([1.0, 2, 2, 2])) / 4
    assert psi(column.shares, current) == pytest.approx(0.25 * math.log(2) + 0.25 * math.log(1.5), rel=1e-12)
    # A bin empty in the reference but not now: its share is floored, not dropped.
    current = column.counts(pd.Series([1.0, np.nan, 2, 3])) / 4
    assert tuple(current) == (0.25, 0.25, 0.25, 0.25)
    expected = 2 * (0.25 - 0.5) * math.log(0.25 / 0.5) + 2 * (0.25 - 1e-4) * math.log(0.25 / 1e-4)  # 2.1398...
    assert psi(column.shares, current) == pytest.approx(expected, rel=1e-12)


def test_a_profiled_column_the_period_lacks_is_named(book):
    _, _, profile, _ = book
    sample = profile.sample
    scores = sample[["fraud_probability", "anomaly_score"]]
    with pytest.raises(ValueError, match="scores lack approval_probability"):
        drift(profile, sample, scores)
    with pytest.raises(ValueError, match="no claims"):
        drift(profile, sample.head(0), sample.head(0))


def test_the_reference_sample_is_at_most_5000_rows_drawn_by_seed(book):
    bundle, claims, _, _ = book
    profile = profile_claims(bundle, claims, {}, seed=1)
    assert profile.about["n"] == 6_000 and len(profile.sample) == SAMPLE_ROWS == 5_000
    again, other = profile_claims(bundle, claims, {}, seed=1), profile_claims(bundle, claims, {}, seed=2)
    pd.testing.assert_frame_equal(again.sample, profile.sample)
    assert not other.sample.equals(profile.sample)
    assert ReferenceProfile.from_json(profile.to_json(), profile.sample).columns == profile.columns
