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
        self.flat_ = FlatForest.from_isolation_forest(self.forest_)
        self.reference_ = np.sort(self.raw_score(matrix))
        return self

    def prepare(self, matrix: np.ndarray) -> np.ndarray:
        """The forest's input: the chosen columns with missing values filled."""
        inputs = matrix[:, self.columns].copy()
        missing = np.isnan(inputs)
        inputs[missing] = np.broadcast_to(self.fill_values_, inputs.shape)[missing]
        return inputs

    def raw_score(self, matrix: np.ndarray) -> np.ndarray:
        """Higher = more anomalous: the negated scikit-learn score_samples, from the flattened trees."""
        return self.flat_.score(self.prepare(matrix))

    def percentile(self, raw: np.ndarray) -> np.ndarray:
        """Share of training claims less anomalous than each score, in [0, 1]."""
        return np.searchsorted(self.reference_, raw, side="right") / len(self.reference_)


def average_path_length(n: np.ndarray) -> np.ndarray:
    """c(n) of Liu et al.: mean path length of an unsuccessful search in a binary tree of n points."""
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros_like(n)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + np.euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
    return out


class FlatForest:
    """All trees of a fitted IsolationForest in flat arrays, walked together level by level.

    scikit-learn walks tree after tree with per-call overhead (about 10 ms for one claim with
    200 trees); here one claim costs a few vectorised steps per tree level, and a batch the same
    steps on bigger arrays. The result equals score_samples to floating-point rounding (tested).
    """

    def __init__(self, left, right, feature, threshold, leaf_value, roots, depth, scale):
        self.left, self.right, self.feature = left, right, feature
        self.threshold, self.leaf_value, self.roots = threshold, leaf_value, roots
        self.depth, self.scale = depth, scale

    @classmethod
    def from_isolation_forest(cls, forest: IsolationForest) -> "FlatForest":
        parts = {k: [] for k in ("left", "right", "feature", "threshold", "leaf_value")}
        roots, offset, depth = [], 0, 0
        for tree, features in zip(forest.estimators_, forest.estimators_features_):
            t = tree.tree_
            node_depth = t.compute_node_depths()  # the root counts as 1, as in scikit-learn's own scoring
            leaf = t.children_left == -1
            parts["left"].append(np.where(leaf, -1, t.children_left + offset))
            parts["right"].append(np.where(leaf, -1, t.children_right + offset))
            parts["feature"].append(np.where(leaf, 0, np.asarray(features)[np.maximum(t.feature, 0)]))
            parts["threshold"].append(t.threshold)
            parts["leaf_value"].append(node_depth + average_path_length(t.n_node_samples) - 1.0)
            roots.append(offset)
            offset += t.node_count
            depth = max(depth, int(node_depth.max()))
        arrays = {k: np.concatenate(v) for k, v in parts.items()}
        scale = len(forest.estimators_) * float(average_path_length(np.array([forest._max_samples]))[0])
        return cls(arrays["left"], arrays["right"], arrays["feature"], arrays["threshold"], arrays["leaf_value"],
                   np.array(roots), depth, scale)

    def score(self, inputs: np.ndarray) -> np.ndarray:
        """2 ** (-mean path length / c(max_samples)), per row: the negated score_samples."""
        values = inputs.astype(np.float32)  # the trees split float32 values, as scikit-learn does
        node = np.broadcast_to(self.roots, (len(values), len(self.roots))).copy()
        rows = np.arange(len(values))[:, None]
        for _ in range(self.depth):
            inner = self.left[node] >= 0
            if not inner.any():
                break
            go_left = values[rows, self.feature[node]] <= self.threshold[node]
            node = np.where(inner, np.where(go_left, self.left[node], self.right[node]), node)
        depths = self.leaf_value[node].sum(axis=1)
        return 2.0 ** (-depths / self.scale)
