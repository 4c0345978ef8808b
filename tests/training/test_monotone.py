"""The fraud model follows the red flags one way only (training.fraud_rises_with / fraud_falls_with)."""

import numpy as np
import pytest

from models.config import Config

# Values each constrained feature is swept through, low to high, on otherwise unchanged claims.
SWEEPS = {
    "amount_to_typical_for_loss_type": [0.05, 0.3, 0.8, 1.0, 1.5, 2.5, 4.0, 8.0, 30.0],
    "report_delay_days": [0.0, 0.5, 1.0, 3.0, 7.0, 14.0, 30.0, 90.0],
    "claimant_claims_90d": [0.0, 1.0, 2.0, 3.0, 5.0],
    "claimant_claims_365d": [0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 10.0],
    "ring_claims_90d": [0.0, 1.0, 2.0, 4.0, 8.0, 20.0],
    "ring_fraud_share": [0.0, 0.1, 0.25, 0.5, 1.0],
    "policy_age_days": [-20.0, 0.0, 10.0, 29.0, 31.0, 59.0, 61.0, 200.0, 800.0, 3000.0],
}


def test_every_constrained_feature_is_swept():
    assert set(SWEEPS) == set(Config().training.fraud_monotone)


@pytest.mark.parametrize("feature", sorted(SWEEPS))
def test_the_fraud_score_moves_one_way_along_each_red_flag(fitted_run, feature):
    direction = Config().training.fraud_monotone[feature]
    names = fitted_run.bundle.builder.feature_names_
    j = names.index(feature)
    claims = fitted_run.matrix[np.flatnonzero(fitted_run.split.validation)[:300]]
    margins = []
    for value in SWEEPS[feature]:
        swept = claims.copy()
        swept[:, j] = value
        margins.append(fitted_run.bundle.fraud.margin(swept))
    steps = np.diff(np.column_stack(margins), axis=1) * direction
    bad = np.argwhere(steps < -1e-12)
    assert not len(bad), f"{feature}: the fraud margin moves against its direction: {np.column_stack(margins)[bad[0][0]]}"


def test_the_constrained_red_flags_are_read_so_the_sweeps_prove_something(fitted_run):
    booster = fitted_run.bundle.fraud.booster
    splits = dict(zip(booster.feature_name(), booster.feature_importance("split")))
    read = [name for name in SWEEPS if splits.get(name, 0) > 0]
    assert len(read) >= 5, read  # claimant_claims_90d and the confirmed share may go unread on 20,000 claims
