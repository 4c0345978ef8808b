"""The anomaly detector: an IsolationForest over the numeric features, reported as a percentile.

Unsupervised on purpose: it flags claims unlike the training population (abnormal payouts,
absurd combinations) whether or not anyone ever labelled such a claim.
"""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import IsolationForest


class AnomalyDetector:
    """IsolationForest on the given feature columns; score = percentile among training claims."""

    def __init__(self, columns: list[int], n_trees: int = 200, max_samples: int = 256, random_state: int = 0):
        self.columns = columns
        self.n_trees = n_trees
        self.max_samples = max_samples
        self.random_state = random_state

    def fit(self, matrix: np.ndarray) -> "AnomalyDetector":
        inputs = matrix[:, self.columns]
        # The forest cannot take missing values; the training median is the least unusual stand-in,
        # so a missing field never makes a claim look anomalous by itself.
        self.fill_values_ = np.nan_to_num(np.nanmedian(inputs, axis=0), nan=0.0)
        self.forest_ = IsolationForest(n_estimators=self.n_trees, max_samples=self.max_samples,
                                       random_state=self.random_state, n_jobs=1)
        self.forest_.fit(self.prepare(matrix))
        self.reference_ = np.sort(self.raw_score(matrix))
        return self

    def prepare(self, matrix: np.ndarray) -> np.ndarray:
        """The forest's input: the chosen columns with missing values filled."""
        inputs = matrix[:, self.columns].copy()
        missing = np.isnan(inputs)
        inputs[missing] = np.broadcast_to(self.fill_values_, inputs.shape)[missing]
        return inputs

    def raw_score(self, matrix: np.ndarray) -> np.ndarray:
        """Higher = more anomalous (the negated scikit-learn score_samples)."""
        return -self.forest_.score_samples(self.prepare(matrix))

    def percentile(self, raw: np.ndarray) -> np.ndarray:
        """Share of training claims less anomalous than each score, in [0, 1]."""
        return np.searchsorted(self.reference_, raw, side="right") / len(self.reference_)
