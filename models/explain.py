"""Exact SHAP explanations for the three models, turned into reasons an adjuster can read.

Exact path-dependent tree SHAP for all three models. Two engines give the same values (tests
hold them equal to 1e-12):

- "tables" (the default): per-leaf tables computed once (`models.treeshap`), four to five times
  faster than the references for a batch;
- "reference": the tools themselves, LightGBM's own contributions (`pred_contrib`) for the
  boosted models and shap's TreeExplainer for the isolation forest.

The anomaly detector of issue #15 (`models.anomaly.TailDetector`) is additive, one tail score per
feature, so both engines read its contributions from the detector itself: exact by construction.

Base value plus contributions equals each model's raw output. The forest's output is the claim's
mean path length; shorter paths mean more anomalous, so its contributions are reported with the
sign flipped: positive always pushes towards fraud, approval or anomaly. The tail detector's
output (summed tail scores) already grows with the anomaly, so its sign stays.
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from features.graph import GRAPH_FEATURES
from models.anomaly import TailDetector, average_path_length
from models.bundle import TriageBundle
from models.config import SHAP_ENGINES
from models.reasons import SHARED_IDENTITY_WORDS, reason_sentence, ring_sentence
from models.treeshap import TreeTables

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


# From this many claims, half of them are explained on a second thread.
_OVERLAP_FROM_ROWS = 64


@functools.lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="explain")


class LightGBMContributions:
    """LightGBM's own SHAP values (`pred_contrib`), as the "reference" engine gives them."""

    def __init__(self, booster) -> None:
        self.booster = booster
        self.expected_value = float(booster.predict(np.zeros((1, booster.num_feature())), pred_contrib=True)[0, -1])

    def contributions(self, matrix: np.ndarray) -> np.ndarray:
        return self.booster.predict(matrix, pred_contrib=True)[:, :-1]


class ShapTreeContributions:
    """shap's TreeExplainer on the isolation forest, as the "reference" engine gives it."""

    def __init__(self, forest) -> None:
        import shap

        self.explainer = shap.TreeExplainer(forest)
        self.expected_value = float(np.ravel(self.explainer.expected_value)[0])

    def contributions(self, inputs: np.ndarray) -> np.ndarray:
        return self.explainer.shap_values(inputs, check_additivity=False)


class TailContributions:
    """The tail detector's own exact contributions (one term per feature), for either engine."""

    def __init__(self, detector: TailDetector) -> None:
        self.detector = detector
        self.expected_value = detector.expected_value_

    def contributions(self, matrix: np.ndarray) -> np.ndarray:
        return self.detector.contributions(matrix)


def _anomaly_source(detector, engine: str):
    """What explains the anomaly detector: its own terms when additive; else the forest's tables or shap."""
    if isinstance(detector, TailDetector):
        return TailContributions(detector)
    if engine == "tables":
        return TreeTables.from_isolation_forest(detector.forest_)
    return ShapTreeContributions(detector.forest_)


class Explainer:
    """Contributions and reasons for a bundle; build once per process, reuse for every claim."""

    def __init__(self, bundle: TriageBundle, engine: str = "tables"):
        if engine not in SHAP_ENGINES:
            raise ValueError(f"the SHAP engine is one of {', '.join(SHAP_ENGINES)}, not {engine!r}")
        self.bundle = bundle
        self.engine = engine
        self.names = bundle.builder.feature_names_
        self.labels = [s.label for s in bundle.builder.specs_]
        self._ring_columns = [j for j, name in enumerate(self.names) if name in GRAPH_FEATURES]
        # What the ring sentence reads: the graph features and the identities shared with other claimants.
        self._ring_told = self._ring_columns + [j for j, name in enumerate(self.names) if name in SHARED_IDENTITY_WORDS]
        # Per model, what computes its SHAP values (the forest's over its own input columns,
        # `detector.columns`): an `expected_value` and `contributions(matrix)`.
        boosted = {"fraud": bundle.fraud}
        if bundle.eligibility:
            boosted["eligibility"] = bundle.eligibility
        if engine == "tables":
            self.sources = {name: TreeTables.from_lightgbm(model.booster) for name, model in boosted.items()}
        else:
            self.sources = {name: LightGBMContributions(model.booster) for name, model in boosted.items()}
        self.sources["anomaly"] = _anomaly_source(bundle.anomaly, engine)
        self.is_forest = not isinstance(bundle.anomaly, TailDetector)
        # A shorter path is more anomalous: the forest's contributions are read with the sign flipped.
        self.anomaly_sign = -1.0 if self.is_forest else 1.0
        if self.is_forest:
            self.path_scale = float(average_path_length(np.array([bundle.anomaly.forest_.max_samples_]))[0])
        categories = bundle.builder.categories_
        self._category_names = [None if categories.get(name) is None else [str(c) for c in categories[name]]
                                for name in self.names]
        self._sentences: dict[tuple[int, float | str | None], str] = {}  # (feature, shown value) -> sentence

    def contributions(self, matrix: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per model: (base value per claim, contributions per claim and feature), in the model's raw units."""
        n = len(matrix)
        if n < _OVERLAP_FROM_ROWS or self.engine == "reference":  # a few claims: one thread beats two
            values = self._values(matrix)
        else:
            # The compiled tables let go of the GIL: a second thread explains the first half.
            pending = _pool().submit(self._values, matrix[: n // 2])
            rest = self._values(matrix[n // 2:])
            head = pending.result()
            values = {name: np.vstack([head[name], rest[name]]) for name in head}
        return {name: (np.full(n, self.sources[name].expected_value), v) for name, v in values.items()}

    def _values(self, matrix: np.ndarray) -> dict[str, np.ndarray]:
        out = {name: source.contributions(matrix) for name, source in self.sources.items() if name != "anomaly"}
        detector = self.bundle.anomaly
        if not self.is_forest:
            out["anomaly"] = self.sources["anomaly"].contributions(matrix)
            return out
        full = np.zeros((len(matrix), len(self.names)))
        full[:, detector.columns] = self.sources["anomaly"].contributions(detector.prepare(matrix))
        out["anomaly"] = full
        return out

    def anomaly_raw_score(self, base: np.ndarray, contributions: np.ndarray) -> np.ndarray:
        """The detector's raw anomaly score from its explanation: the tail scores' sum, or for the forest
        its negated score_samples from the mean path length."""
        output = base + contributions.sum(axis=1)
        return 2.0 ** (-output / self.path_scale) if self.is_forest else output

    def reasons(self, matrix: np.ndarray, top: int = 5,
                contributions: dict | None = None) -> list[dict[str, list[Reason]]]:
        """The `top` strongest contributions per model per claim, strongest first, with sentences."""
        contributions = contributions or self.contributions(matrix)
        typical = self.bundle.typical_values
        ranked = {}
        for model, (_, values) in contributions.items():
            signed = self.anomaly_sign * values if model == "anomaly" else values
            order = np.argsort(-np.abs(signed), axis=1, kind="stable")[:, :top]
            ranked[model] = (order, np.take_along_axis(signed, order, axis=1))
        rows = matrix.tolist()
        sentences = self._sentences
        if len(sentences) > 100_000:  # bounded: continuous values rarely repeat
            sentences.clear()
        result = []
        for i, row in enumerate(rows):
            per_model = {}
            for model, (order, strongest) in ranked.items():
                reasons = []
                ring_said = False
                for j, c in zip(order[i].tolist(), strongest[i].tolist()):
                    if c == 0:
                        continue
                    value = self._display_value(j, row[j])
                    if j in self._ring_columns and not ring_said:  # the strongest of them tells the whole ring
                        ring_said = True
                        text = ring_sentence({self.names[k]: row[k] for k in self._ring_told})
                        reasons.append(Reason(self.names[j], value, round(c, 6), text))
                        continue
                    text = sentences.get((j, value))
                    if text is None:
                        text = sentences[(j, value)] = reason_sentence(self.names[j], self.labels[j], value,
                                                                      typical.get(self.names[j]))
                    reasons.append(Reason(self.names[j], value, round(c, 6), text))
                per_model[model] = reasons
            result.append(per_model)
        return result

    def _display_value(self, j: int, v: float) -> float | str | None:
        """One feature value as an adjuster reads it: a category's name, a number, None for missing."""
        if v != v:
            return None
        categories = self._category_names[j]
        return categories[int(v)] if categories is not None else round(float(v), 4)
