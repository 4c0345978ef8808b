"""Exact path-dependent tree SHAP from per-leaf tables: shap's TreeExplainer values, several times faster.

Path-dependent tree SHAP (shap's TreeExplainer, LightGBM's own contributions) splits a tree's
output over its leaves. A leaf of value v, reached through splits on the distinct features U
(m of them), gives feature u of U

    v * (o_u - z_u) * sum over S within O minus u of  |S|! (m-1-|S|)! / m!  *  prod over j in U minus S minus u of z_j

where z_j is the share of the training samples at the path's first split on j that follow all
its splits on j (the cover), o_j is 1 when the claim follows all of them and 0 otherwise, and O
is the set of j with o_j = 1. For a given leaf, that depends on the claim only through O, one of
2^m subsets, so all 2^m x m values are tabulated once, when the model loads (Yang et al., "Fast
TreeSHAP", 2021, its second algorithm). Explaining a claim is then, per leaf, which of the
leaf's conditions (an interval per feature) it meets and one table row: no recursion and no
path bookkeeping per claim. The kernel is compiled (numba, which shap itself depends on) and lets
go of the GIL, so it runs beside LightGBM on the other core.

Tests hold the values to shap's TreeExplainer on the same forest, claim by claim.
"""

from __future__ import annotations

import math

import numba
import numpy as np


class TreeTables:
    """Per-leaf SHAP tables of a tree ensemble whose splits go left when x <= threshold."""

    def __init__(self, feature: np.ndarray, low: np.ndarray, high: np.ndarray, n_conditions: np.ndarray,
                 table: np.ndarray, expected_value: float, n_features: int):
        self.feature, self.low, self.high = feature, low, high  # (leaves, depth): the leaf's interval per feature
        self.n_conditions = n_conditions  # (leaves,): how many distinct features its path splits on
        self.table = table  # (leaves, 2 ** depth, depth): contribution per subset O and feature slot
        self.expected_value = expected_value
        self.n_features = n_features
        self.contributions(np.zeros((1, n_features)))  # compile (or load from numba's cache) now, not per request

    @classmethod
    def from_isolation_forest(cls, forest) -> "TreeTables":
        """Tables of a fitted scikit-learn IsolationForest over its input columns, valued as shap's
        TreeExplainer values it: a leaf's path length (its depth plus c(samples in the leaf)) over
        the number of trees, covers from the training samples each node saw."""
        from sklearn.ensemble._iforest import _average_path_length

        n_trees = len(forest.estimators_)
        leaves = []
        for estimator, columns in zip(forest.estimators_, forest.estimators_features_):
            tree = estimator.tree_
            columns = np.asarray(columns)
            left, right, samples = tree.children_left, tree.children_right, tree.n_node_samples
            stack = [(0, 0, ())]
            while stack:
                node, depth, path = stack.pop()
                if left[node] == -1:
                    value = (depth + float(_average_path_length(np.array([samples[node]]))[0])) / n_trees
                    leaves.append((value, path))
                    continue
                column, threshold = int(columns[tree.feature[node]]), float(tree.threshold[node])
                for child, goes_left in ((left[node], True), (right[node], False)):
                    stack.append((child, depth + 1, path + ((column, threshold, goes_left,
                                                             samples[child] / samples[node]),)))
        return cls._tabulate(leaves, forest.n_features_in_)

    @classmethod
    def _tabulate(cls, leaves: list[tuple[float, tuple]], n_features: int) -> "TreeTables":
        """`leaves`: (value, path) with path the (feature, threshold, goes_left, cover share) splits."""
        slots_per_leaf = []
        for value, path in leaves:
            slots: dict[int, list[float]] = {}  # feature -> [low, high, cover share]
            for feature, threshold, goes_left, share in path:
                slot = slots.setdefault(feature, [-math.inf, math.inf, 1.0])
                if goes_left:
                    slot[1] = min(slot[1], threshold)
                else:
                    slot[0] = max(slot[0], threshold)
                slot[2] *= share
            slots_per_leaf.append((value, slots))
        depth = max([len(s) for _, s in slots_per_leaf] + [1])
        n = len(leaves)
        feature = np.zeros((n, depth), dtype=np.int64)
        low = np.full((n, depth), math.inf)  # unused slots: never met, and never read
        high = np.full((n, depth), math.inf)
        share = np.ones((n, depth))
        n_conditions = np.zeros(n, dtype=np.int64)
        values = np.empty(n)
        for i, (value, slots) in enumerate(slots_per_leaf):
            values[i] = value
            n_conditions[i] = len(slots)
            for k, (f, (lo, hi, z)) in enumerate(slots.items()):
                feature[i, k], low[i, k], high[i, k], share[i, k] = f, lo, hi, z
        table = np.zeros((n, 2 ** depth, depth))
        for m in range(1, depth + 1):
            rows = np.flatnonzero(n_conditions == m)
            if len(rows):
                table[rows, : 2 ** m, :m] = _leaf_tables(values[rows], share[rows, :m])
        expected = float(np.sum(values * np.prod(share, axis=1)))  # every feature unknown: covers all the way
        return cls(feature, low, high, n_conditions, table, expected, n_features)

    def contributions(self, inputs: np.ndarray) -> np.ndarray:
        """SHAP values per claim and input column; with `expected_value` they sum to the model's output.
        Inputs are compared as float32, as scikit-learn's trees compare them."""
        values = np.ascontiguousarray(inputs, dtype=np.float32).astype(np.float64)
        out = np.zeros((len(values), self.n_features))
        _explain(values, self.feature, self.low, self.high, self.n_conditions, self.table, out)
        return out


def _leaf_tables(values: np.ndarray, share: np.ndarray) -> np.ndarray:
    """(leaves, 2^m, m) tables for leaves with m distinct path features, vectorised over leaves."""
    n, m = share.shape
    weight = [math.factorial(s) * math.factorial(m - 1 - s) / math.factorial(m) for s in range(m)]
    # For every subset A of the m features: sum over S within A of weight(|S|) * prod_{j in A minus S} z_j,
    # i.e. sum_s weight(s) * e_{|A|-s}(z_A), with e the elementary symmetric polynomials of A's shares.
    summed = {}
    for subset in range(2 ** m - 1):  # the full set is never A (A always lacks the feature explained)
        members = [j for j in range(m) if subset >> j & 1]
        e = [np.ones(n)] + [np.zeros(n) for _ in members]
        for j in members:
            for r in range(len(members), 0, -1):
                e[r] = e[r] + share[:, j] * e[r - 1]
        a = len(members)
        summed[subset] = sum(weight[s] * e[a - s] for s in range(a + 1))
    table = np.zeros((n, 2 ** m, m))
    for met in range(2 ** m):
        for k in range(m):
            outside = np.ones(n)  # prod of z_j over the features not met, other than k
            for j in range(m):
                if j != k and not met >> j & 1:
                    outside = outside * share[:, j]
            table[:, met, k] = values * ((met >> k & 1) - share[:, k]) * outside * summed[met & ~(1 << k)]
    return table


@numba.njit(nogil=True, cache=True)
def _explain(values, feature, low, high, n_conditions, table, out):  # pragma: no cover - compiled
    # Leaf by leaf, every claim: the leaf's table stays in the processor's cache for the batch.
    n = values.shape[0]
    for leaf in range(feature.shape[0]):
        m = n_conditions[leaf]
        for i in range(n):
            met = 0
            for k in range(m):
                x = values[i, feature[leaf, k]]
                if low[leaf, k] < x <= high[leaf, k]:
                    met |= 1 << k
            for k in range(m):
                out[i, feature[leaf, k]] += table[leaf, met, k]
