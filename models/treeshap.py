"""Exact path-dependent tree SHAP from per-leaf tables: the reference values, several times faster.

Path-dependent tree SHAP (shap's TreeExplainer, LightGBM's own contributions) splits a tree's
output over its leaves. A leaf of value v, reached through splits on the distinct features U
(m of them), gives feature u of U

    v * (o_u - z_u) * sum over S within O minus u of  |S|! (m-1-|S|)! / m!  *  prod over j in U minus S minus u of z_j

where z_j is the product, over the path's splits on j, of the share of the training samples at
the split that go the path's way (the cover), o_j is 1 when the claim goes the path's way at all
of them and 0 otherwise, and O is the set of j with o_j = 1. For a given leaf, that depends on
the claim only through O, one of 2^m subsets, so all 2^m x m values are tabulated once, when the
model loads (Yang et al., "Fast TreeSHAP", 2021, its second algorithm). Explaining a claim is
then, per leaf, which of its path's splits the claim follows (each tested as the model decides
it) and one table row: no recursion and no path bookkeeping per claim. One kernel serves the
forest and LightGBM; it is compiled (numba, which shap itself depends on) and lets go of the GIL,
so a batch is explained on both cores.

Tests hold the values to their references claim by claim: shap's TreeExplainer for the isolation
forest, LightGBM's own `pred_contrib` for the boosted models.
"""

from __future__ import annotations

import math

import numba
import numpy as np


# LightGBM's missing-value handling of a numerical split, as its model dump names it. "None": a
# missing value is read as 0, which is also how the forest's splits are tested (its inputs are never
# missing: the detector fills them).
_MISSING = {"None": 0, "Zero": 1, "NaN": 2}
_ZERO = 1.0000000180025095e-35  # LightGBM's kZeroThreshold (1e-35 as float32)

# A split on a leaf's path: (feature, cover share of the child, numerical?, threshold, missing-value
# rule, default left?, does the path go left?, row of the categorical split's set or -1).
Split = tuple[int, float, bool, float, int, bool, bool, int]


class TreeTables:
    """Per-leaf SHAP tables of a tree ensemble: `from_isolation_forest` (the values of shap's
    TreeExplainer) or `from_lightgbm` (those of LightGBM's own `pred_contrib`)."""

    def __init__(self, leaves: list[tuple[float, tuple[Split, ...]]], categories: list[list[int]], n_features: int,
                 float32_inputs: bool = False):
        """`leaves`: (value, the splits on its path from the root); `categories`: the category sets of
        categorical splits; `float32_inputs`: compare inputs as float32, as scikit-learn's trees do."""
        self.n_features = n_features
        self.float32_inputs = float32_inputs
        width = max([c for cs in categories for c in cs] + [0]) + 1
        self.category_member = np.zeros((max(len(categories), 1), width), dtype=np.bool_)
        for i, cs in enumerate(categories):
            self.category_member[i, cs] = True
        n = len(leaves)
        edges = max([len(p) for _, p in leaves] + [1])
        self.edge_feature = np.zeros((n, edges), dtype=np.int64)
        self.edge_slot = np.zeros((n, edges), dtype=np.int64)
        self.edge_numeric = np.zeros((n, edges), dtype=np.bool_)
        self.edge_threshold = np.zeros((n, edges))
        self.edge_missing = np.zeros((n, edges), dtype=np.int64)
        self.edge_default_left = np.zeros((n, edges), dtype=np.bool_)
        self.edge_left = np.zeros((n, edges), dtype=np.bool_)
        self.edge_category = np.zeros((n, edges), dtype=np.int64)
        self.n_edges = np.zeros(n, dtype=np.int64)
        slot_share, slot_feature, values = [], [], np.empty(n)
        for i, (value, path) in enumerate(leaves):
            values[i] = value
            slots: dict[int, int] = {}  # feature -> its slot: the leaf's distinct path features
            shares: list[float] = []
            for e, (feature, share, numeric, threshold, missing, default_left, goes_left, category) in enumerate(path):
                if feature not in slots:
                    slots[feature] = len(shares)
                    shares.append(1.0)
                shares[slots[feature]] *= share
                self.edge_feature[i, e], self.edge_slot[i, e] = feature, slots[feature]
                self.edge_numeric[i, e], self.edge_threshold[i, e] = numeric, threshold
                self.edge_missing[i, e], self.edge_default_left[i, e] = missing, default_left
                self.edge_left[i, e], self.edge_category[i, e] = goes_left, category
            self.n_edges[i] = len(path)
            slot_share.append(shares)
            slot_feature.append(list(slots))
        depth = max([len(s) for s in slot_share] + [1])
        self.slot_feature = np.zeros((n, depth), dtype=np.int64)
        self.n_slots = np.array([len(s) for s in slot_share], dtype=np.int64)
        share = np.ones((n, depth))
        for i, (fs, ss) in enumerate(zip(slot_feature, slot_share)):
            self.slot_feature[i, :len(fs)] = fs
            share[i, :len(ss)] = ss
        self.table = np.zeros((n, 2 ** depth, depth))  # contribution per leaf, subset met and slot
        for m in range(1, depth + 1):
            rows = np.flatnonzero(self.n_slots == m)
            if len(rows):
                self.table[rows, : 2 ** m, :m] = _leaf_tables(values[rows], share[rows, :m])
        # Every feature unknown: each leaf weighted by the covers all the way down.
        self.expected_value = float(np.sum(values * np.prod(share, axis=1)))
        self.contributions(np.zeros((1, n_features)))  # compile (or load from numba's cache) now, not per request

    @classmethod
    def from_isolation_forest(cls, forest) -> "TreeTables":
        """A fitted scikit-learn IsolationForest over its input columns, valued as shap's TreeExplainer
        values it: a leaf's path length (its depth plus c(samples in the leaf)) over the number of
        trees, covers from the training samples each node saw."""
        from models.anomaly import average_path_length

        n_trees = len(forest.estimators_)
        leaves = []
        for estimator, columns in zip(forest.estimators_, forest.estimators_features_):
            tree = estimator.tree_
            left, right, samples = tree.children_left, tree.children_right, tree.n_node_samples
            unsplit = average_path_length(samples)  # c(n): the path still to go in a leaf of n samples
            stack = [(0, 0, ())]
            while stack:
                node, depth, path = stack.pop()
                if left[node] == -1:
                    value = (depth + float(unsplit[node])) / n_trees
                    leaves.append((value, path))
                    continue
                column, threshold = int(columns[tree.feature[node]]), float(tree.threshold[node])
                for child, goes_left in ((left[node], True), (right[node], False)):
                    split = (column, samples[child] / samples[node], True, threshold, 0, False, goes_left, -1)
                    stack.append((child, depth + 1, path + (split,)))
        return cls(leaves, [], forest.n_features_in_, float32_inputs=True)

    @classmethod
    def from_lightgbm(cls, booster) -> "TreeTables":
        """A LightGBM booster with one output, its splits tested as LightGBM decides them."""
        model = booster.dump_model()
        if model["num_class"] != 1 or model.get("average_output"):
            raise NotImplementedError("tables are built for one-output boosted trees")
        categories: list[list[int]] = []
        leaves = []
        for tree in model["tree_info"]:
            stack = [(tree["tree_structure"], ())]
            while stack:
                node, path = stack.pop()
                if "leaf_value" in node:
                    leaves.append((float(node["leaf_value"]), path))
                    continue
                numeric = node["decision_type"] == "<="
                if numeric:
                    threshold, category = float(node["threshold"]), -1
                else:
                    category, threshold = len(categories), math.nan
                    categories.append([int(c) for c in str(node["threshold"]).split("||")])
                count = node["internal_count"]
                for child, goes_left in ((node["left_child"], True), (node["right_child"], False)):
                    child_count = child["leaf_count"] if "leaf_value" in child else child["internal_count"]
                    split = (node["split_feature"], child_count / count, numeric, threshold,
                             _MISSING[node["missing_type"]], bool(node["default_left"]), goes_left, category)
                    stack.append((child, path + (split,)))
        return cls(leaves, categories, model["max_feature_idx"] + 1)

    def contributions(self, inputs: np.ndarray) -> np.ndarray:
        """SHAP values per claim and input column; with `expected_value` they sum to the model's raw output."""
        values = np.ascontiguousarray(inputs, dtype=np.float32 if self.float32_inputs else np.float64)
        values = values.astype(np.float64, copy=False)
        out = np.zeros((len(values), self.n_features))
        _explain(values, self.edge_feature, self.edge_slot, self.edge_numeric, self.edge_threshold,
                 self.edge_missing, self.edge_default_left, self.edge_left, self.edge_category,
                 self.n_edges, self.category_member, self.slot_feature, self.n_slots, self.table, out)
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
def _explain(values, edge_feature, edge_slot, edge_numeric, edge_threshold, edge_missing, edge_default_left,
             edge_left, edge_category, n_edges, category_member, slot_feature, n_slots, table,
             out):  # pragma: no cover - compiled
    # Leaf by leaf, every claim: the leaf's table stays in the processor's cache for the batch.
    n = values.shape[0]
    width = category_member.shape[1]
    for leaf in range(edge_feature.shape[0]):
        m = n_slots[leaf]
        for i in range(n):
            met = (1 << m) - 1
            for e in range(n_edges[leaf]):
                x = values[i, edge_feature[leaf, e]]
                if edge_numeric[leaf, e]:  # as LightGBM's NumericalDecision
                    missing = edge_missing[leaf, e]
                    if np.isnan(x) and missing != 2:
                        x = 0.0
                    if (missing == 1 and abs(x) <= _ZERO) or (missing == 2 and np.isnan(x)):
                        left = edge_default_left[leaf, e]
                    else:
                        left = x <= edge_threshold[leaf, e]
                elif np.isnan(x):  # CategoricalDecision: missing goes right, and so does a negative code
                    left = False
                else:
                    code = int(x)  # towards zero, as C++ casts it: -0.5 reads as category 0
                    left = 0 <= code < width and category_member[edge_category[leaf, e], code]
                if left != edge_left[leaf, e]:
                    met &= ~(1 << edge_slot[leaf, e])
            for k in range(m):
                out[i, slot_feature[leaf, k]] += table[leaf, met, k]
