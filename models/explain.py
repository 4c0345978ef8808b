"""Exact SHAP explanations for the three models, turned into reasons an adjuster can read.

The boosted models explain themselves (LightGBM's own tree SHAP: base value plus contributions
equals the raw margin). The isolation forest is explained by shap's TreeExplainer, whose output
is the claim's mean path length; shorter paths mean more anomalous, so its contributions are
reported with the sign flipped: positive always pushes towards fraud, approval or anomaly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.bundle import TriageBundle
from models.reasons import reason_sentence

MODELS = ("eligibility", "fraud", "anomaly")


@dataclass(frozen=True)
class Reason:
    """One feature's part in one model's score."""

    feature: str
    value: float | str | None
    contribution: float
    text: str

    def as_dict(self) -> dict:
        return {"feature": self.feature, "value": self.value, "contribution": self.contribution, "text": self.text}


def average_path_length(n: int) -> float:
    """c(n) of Liu et al.: the mean path length of an unsuccessful search in a binary tree of n points."""
    if n <= 1:
        return 0.0
    if n == 2:
        return 1.0
    return 2.0 * (np.log(n - 1.0) + np.euler_gamma) - 2.0 * (n - 1.0) / n


class Explainer:
    """Contributions and reasons for a bundle; build once per process, reuse for every claim."""

    def __init__(self, bundle: TriageBundle):
        import shap

        self.bundle = bundle
        self.names = bundle.builder.feature_names_
        self.labels = [s.label for s in bundle.builder.specs_]
        self.forest_explainer = shap.TreeExplainer(bundle.anomaly.forest_)
        self.path_scale = average_path_length(bundle.anomaly.forest_.max_samples_)

    def contributions(self, matrix: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per model: (base value per claim, contributions per claim and feature), in the model's raw units."""
        out = {}
        models = [("fraud", self.bundle.fraud)] + ([("eligibility", self.bundle.eligibility)]
                                                   if self.bundle.eligibility else [])
        for name, model in models:
            threads = 1 if len(matrix) < 64 else 0
            raw = model.booster.predict(matrix, pred_contrib=True, num_threads=threads)
            out[name] = (raw[:, -1], raw[:, :-1])
        detector = self.bundle.anomaly
        values = self.forest_explainer.shap_values(detector.prepare(matrix), check_additivity=False)
        full = np.zeros((len(matrix), len(self.names)))
        full[:, detector.columns] = values
        base = np.full(len(matrix), float(np.ravel(self.forest_explainer.expected_value)[0]))
        out["anomaly"] = (base, full)
        return out

    def anomaly_raw_score(self, base: np.ndarray, contributions: np.ndarray) -> np.ndarray:
        """The forest's anomaly score (negated score_samples) from its path-length explanation."""
        path_length = base + contributions.sum(axis=1)
        return 2.0 ** (-path_length / self.path_scale)

    def reasons(self, matrix: np.ndarray, top: int = 5,
                contributions: dict | None = None) -> list[dict[str, list[Reason]]]:
        """The `top` strongest contributions per model per claim, strongest first, with sentences."""
        contributions = contributions or self.contributions(matrix)
        decoded = self._display_values(matrix)
        typical = self.bundle.typical_values
        result = []
        for i in range(len(matrix)):
            per_model = {}
            for model, (_, values) in contributions.items():
                signed = -values[i] if model == "anomaly" else values[i]
                order = np.argsort(-np.abs(signed), kind="stable")[:top]
                per_model[model] = [
                    Reason(self.names[j], decoded[i][j], round(float(signed[j]), 6),
                           reason_sentence(self.names[j], self.labels[j], decoded[i][j], typical.get(self.names[j])))
                    for j in order if signed[j] != 0]
            result.append(per_model)
        return result

    def _display_values(self, matrix: np.ndarray) -> list[list[float | str | None]]:
        """Feature values as an adjuster reads them: category names, numbers, None for missing."""
        categories = self.bundle.builder.categories_
        rows = []
        for row in matrix:
            shown = []
            for name, v in zip(self.names, row):
                if np.isnan(v):
                    shown.append(None)
                elif name in categories:
                    shown.append(str(categories[name][int(v)]))
                else:
                    shown.append(round(float(v), 4))
            rows.append(shown)
        return rows
