"""Per-leaf SHAP tables against their references on small models of every shape the tables must read."""

import lightgbm as lgb
import numpy as np
import pytest
import shap
from sklearn.ensemble import IsolationForest

from models.treeshap import TreeTables


def _data(n=600, seed=0):
    rng = np.random.default_rng(seed)
    x = np.column_stack([rng.normal(size=n), rng.integers(0, 6, n).astype(float), rng.exponential(size=n),
                         rng.integers(0, 3, n).astype(float), np.where(rng.random(n) < 0.3, 0.0, rng.normal(size=n))])
    y = ((x[:, 0] + (x[:, 1] % 2) + 0.5 * x[:, 2] + rng.normal(size=n)) > 1).astype(int)
    x[rng.random(n) < 0.1, 0] = np.nan  # missing values the trees learn a direction for
    x[rng.random(n) < 0.05, 1] = np.nan
    return x, y


@pytest.mark.parametrize("params", [
    {"max_depth": 4, "num_leaves": 12},
    {"max_depth": 3, "num_leaves": 8, "zero_as_missing": True},
    {"max_depth": 2, "num_leaves": 4, "use_missing": False},
    {"max_depth": 3, "num_leaves": 8, "min_data_in_leaf": 400},  # most trees are a single leaf
])
def test_lightgbm_tables_equal_pred_contrib(params):
    x, y = _data()
    booster = lgb.train({"objective": "binary", "verbose": -1, "min_data_per_group": 5, "cat_smooth": 1,
                         "learning_rate": 0.3, **params},
                        lgb.Dataset(x, y, categorical_feature=[1, 3]), num_boost_round=25)
    tables = TreeTables.from_lightgbm(booster)
    probe, _ = _data(300, seed=1)
    probe[::17, 1] = 9.0  # a category never seen
    probe[::19, 3] = -0.5
    probe[::23, 4] = np.nan
    probe[::29, 4] = 0.0
    oracle = booster.predict(probe, pred_contrib=True)
    np.testing.assert_allclose(tables.contributions(probe), oracle[:, :-1], rtol=0, atol=1e-12)
    assert tables.expected_value == pytest.approx(oracle[0, -1], abs=1e-12)
    np.testing.assert_allclose(tables.expected_value + tables.contributions(probe).sum(axis=1),
                               booster.predict(probe, raw_score=True), atol=1e-9)


def test_forest_tables_equal_shaps_treeexplainer_on_a_small_forest():
    x, _ = _data()
    x = np.nan_to_num(x)
    forest = IsolationForest(n_estimators=15, max_samples=64, max_features=0.8, random_state=3).fit(x)
    tables = TreeTables.from_isolation_forest(forest)
    oracle = shap.TreeExplainer(forest)
    probe = np.nan_to_num(_data(200, seed=2)[0])
    np.testing.assert_allclose(tables.contributions(probe), oracle.shap_values(probe, check_additivity=False),
                               rtol=0, atol=1e-12)
    assert tables.expected_value == pytest.approx(float(np.ravel(oracle.expected_value)[0]), abs=1e-12)
