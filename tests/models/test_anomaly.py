"""The anomaly detector: the flattened forest scores exactly as scikit-learn does, much faster per claim."""

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest

from models.anomaly import AnomalyDetector, FlatForest


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
