"""Platt calibration of a boosted model's raw margin into a probability.

The models are trained with the rare class up-weighted, which shifts their raw scores; a
one-feature logistic fit on validation claims maps the margin back to honest probabilities.
It is monotone, so it keeps the ranking (AUC) and the sign of every SHAP contribution.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression


class PlattCalibrator:
    """probability = sigmoid(slope_ * margin + intercept_), fit on held-out claims."""

    def __init__(self, regularisation: float = 1e6):
        self.regularisation = regularisation

    def fit(self, margin: np.ndarray, outcome: np.ndarray) -> "PlattCalibrator":
        model = LogisticRegression(C=self.regularisation)
        model.fit(np.asarray(margin, dtype=np.float64).reshape(-1, 1), np.asarray(outcome, dtype=int))
        self.slope_ = float(model.coef_[0, 0])
        self.intercept_ = float(model.intercept_[0])
        return self

    def transform(self, margin: np.ndarray) -> np.ndarray:
        z = self.slope_ * np.asarray(margin, dtype=np.float64) + self.intercept_
        return 1.0 / (1.0 + np.exp(-z))
