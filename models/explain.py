"""Exact SHAP explanations for the three models, turned into reasons an adjuster can read.

The boosted models explain themselves (LightGBM's own tree SHAP: base value plus contributions
equals the raw margin). The isolation forest gets the values shap's TreeExplainer gives it,
computed from per-leaf tables (`models.treeshap`; tests hold the two equal): its output is the
claim's mean path length; shorter paths mean more anomalous, so its contributions are reported
with the sign flipped: positive always pushes towards fraud, approval or anomaly.
"""

from __future__ import annotations

import functools
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from models.bundle import TriageBundle
from models.reasons import reason_sentence
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


def average_path_length(n: int) -> float:
    """c(n) of Liu et al.: the mean path length of an unsuccessful search in a binary tree of n points."""
    if n <= 1:
        return 0.0
    if n == 2:
        return 1.0
    return 2.0 * (np.log(n - 1.0) + np.euler_gamma) - 2.0 * (n - 1.0) / n


# From this many claims, the boosted models are explained on a second thread beside the forest.
_OVERLAP_FROM_ROWS = 64


def _timed(fn, *args):
    started = time.perf_counter()
    return fn(*args), time.perf_counter() - started


@functools.lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="explain")


class Explainer:
    """Contributions and reasons for a bundle; build once per process, reuse for every claim."""

    def __init__(self, bundle: TriageBundle):
        self.bundle = bundle
        self.names = bundle.builder.feature_names_
        self.labels = [s.label for s in bundle.builder.specs_]
        self.forest_tables = TreeTables.from_isolation_forest(bundle.anomaly.forest_)
        self.path_scale = average_path_length(bundle.anomaly.forest_.max_samples_)
        self._per_claim: tuple[float, float] | None = None  # seconds per claim: forest, boosted models

    def contributions(self, matrix: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per model: (base value per claim, contributions per claim and feature), in the model's raw units."""
        models = [("fraud", self.bundle.fraud)] + ([("eligibility", self.bundle.eligibility)]
                                                   if self.bundle.eligibility else [])

        def boosted(rows: slice) -> dict:
            found = {}
            for name, model in models:
                raw = model.booster.predict(matrix[rows], pred_contrib=True, num_threads=1)
                found[name] = (raw[:, -1], raw[:, :-1])
            return found

        detector = self.bundle.anomaly
        prepared = detector.prepare(matrix)
        n = len(matrix)
        if n < _OVERLAP_FROM_ROWS:
            out = boosted(slice(None))  # one claim or a few: one thread beats two
            values = self.forest_tables.contributions(prepared)
        else:
            # Both LightGBM and the forest's compiled tables let go of the GIL. So a second thread
            # explains the first k claims with LightGBM while this one explains the forest, then
            # the remaining claims with LightGBM: k balances the two threads' work, learnt from
            # the per-claim times of earlier batches.
            k = self._split(n)
            started = time.perf_counter()
            pending = _pool().submit(_timed, boosted, slice(0, k))
            values = self.forest_tables.contributions(prepared)
            forest_seconds = time.perf_counter() - started
            rest = boosted(slice(k, n)) if k < n else None
            head, boosted_seconds = pending.result()
            self._learn(forest_seconds / n, boosted_seconds / k)
            out = head if rest is None else {
                name: (np.concatenate([head[name][0], rest[name][0]]), np.vstack([head[name][1], rest[name][1]]))
                for name in head}
        full = np.zeros((len(matrix), len(self.names)))
        full[:, detector.columns] = values
        base = np.full(len(matrix), self.forest_tables.expected_value)
        out["anomaly"] = (base, full)
        return out

    def _split(self, n: int) -> int:
        """Claims for the second thread: k * boosted = forest * n + boosted * (n - k), at least half."""
        if self._per_claim is None:
            return n * 3 // 4
        forest, boosted = self._per_claim
        return int(min(n, max(n // 2, round(n * (forest + boosted) / (2 * boosted)))))

    def _learn(self, forest: float, boosted: float) -> None:
        if self._per_claim is None:
            self._per_claim = (forest, boosted)
            return
        old_forest, old_boosted = self._per_claim
        self._per_claim = (0.7 * old_forest + 0.3 * forest, 0.7 * old_boosted + 0.3 * boosted)

    def anomaly_raw_score(self, base: np.ndarray, contributions: np.ndarray) -> np.ndarray:
        """The forest's anomaly score (negated score_samples) from its path-length explanation."""
        path_length = base + contributions.sum(axis=1)
        return 2.0 ** (-path_length / self.path_scale)

    def reasons(self, matrix: np.ndarray, top: int = 5,
                contributions: dict | None = None) -> list[dict[str, list[Reason]]]:
        """The `top` strongest contributions per model per claim, strongest first, with sentences."""
        contributions = contributions or self.contributions(matrix)
        typical = self.bundle.typical_values
        ranked = {}
        for model, (_, values) in contributions.items():
            signed = -values if model == "anomaly" else values
            order = np.argsort(-np.abs(signed), axis=1, kind="stable")[:, :top]
            ranked[model] = (order, np.take_along_axis(signed, order, axis=1))
        shown_cache: dict[tuple[int, int], float | str | None] = {}

        def shown(i: int, j: int):
            key = (i, j)
            if key not in shown_cache:
                shown_cache[key] = self._display_value(j, matrix[i, j])
            return shown_cache[key]

        result = []
        for i in range(len(matrix)):
            per_model = {}
            for model, (order, strongest) in ranked.items():
                per_model[model] = [
                    Reason(self.names[j], shown(i, j), round(float(c), 6),
                           reason_sentence(self.names[j], self.labels[j], shown(i, j), typical.get(self.names[j])))
                    for j, c in zip(order[i].tolist(), strongest[i].tolist()) if c != 0]
            result.append(per_model)
        return result

    def _display_value(self, j: int, v: float) -> float | str | None:
        """One feature value as an adjuster reads it: a category's name, a number, None for missing."""
        if np.isnan(v):
            return None
        categories = self.bundle.builder.categories_.get(self.names[j])
        return str(categories[int(v)]) if categories is not None else round(float(v), 4)
