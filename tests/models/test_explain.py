"""Explanations are exact and every feature reads as a sentence an adjuster understands."""

import dataclasses

import numpy as np
import pytest

from features.builder import CLAIM_FEATURES, HISTORY_FEATURES
from models.anomaly import AnomalyDetector, TailDetector, input_columns
from models.explain import Explainer
from models.reasons import SENTENCES, reason_sentence


@pytest.fixture(scope="module")
def explained(fitted_run):
    explainer = Explainer(fitted_run.bundle)
    matrix = fitted_run.matrix[fitted_run.split.test][:300]
    return explainer, matrix, explainer.contributions(matrix)


@pytest.fixture(scope="module")
def forest_bundle(fitted_run):
    """The same bundle with the isolation forest: the "forest" detector, and bundles registered before issue #15."""
    names = fitted_run.bundle.builder.feature_names_
    forest = AnomalyDetector(input_columns(names), 100, 128, 0).fit(fitted_run.matrix[fitted_run.split.train])
    return dataclasses.replace(fitted_run.bundle, anomaly=forest)


@pytest.fixture(scope="module")
def forest_explained(forest_bundle, fitted_run):
    explainer = Explainer(forest_bundle)
    matrix = fitted_run.matrix[fitted_run.split.test][:300]
    return explainer, matrix, explainer.contributions(matrix)


def test_base_plus_contributions_reproduce_each_boosted_model(explained, fitted_run):
    _, matrix, parts = explained
    for name, model in (("fraud", fitted_run.bundle.fraud), ("eligibility", fitted_run.bundle.eligibility)):
        base, values = parts[name]
        np.testing.assert_allclose(base + values.sum(axis=1), model.margin(matrix), atol=1e-9)


@pytest.mark.parametrize("which", ["explained", "forest_explained"])
def test_anomaly_contributions_reproduce_the_detector_score(which, request):
    explainer, matrix, parts = request.getfixturevalue(which)
    detector = explainer.bundle.anomaly
    assert isinstance(detector, TailDetector) == (which == "explained")
    base, values = parts["anomaly"]
    np.testing.assert_allclose(explainer.anomaly_raw_score(base, values), detector.raw_score(matrix), rtol=1e-9)
    unused = [j for j in range(matrix.shape[1]) if j not in detector.columns]
    assert not values[:, unused].any()
    assert values[:, detector.columns].any()


def test_the_anomaly_reasons_name_what_made_an_abnormal_payout_unusual(explained, fitted_run):
    # An abnormal payout's strongest anomaly reason is its amount, pushing towards the alert.
    explainer, matrix, parts = explained
    names = explainer.names
    payout = matrix[:20].copy()
    payout[:, names.index("amount_to_typical_for_loss_type")] *= 40.0
    reasons = explainer.reasons(payout, top=3)
    for claim in reasons:
        strongest = claim["anomaly"][0]
        assert strongest.feature == "amount_to_typical_for_loss_type" and strongest.contribution > 0
        assert "times the typical claim of this loss type" in strongest.text


def test_boosted_tables_give_lightgbms_own_contributions(explained, fitted_run):
    # The boosted models are explained from per-leaf tables (models.treeshap); LightGBM is the oracle,
    # on claims with missing values in every column and category codes the model never saw.
    explainer, matrix, _ = explained
    matrix = matrix.copy()
    for j in range(matrix.shape[1]):
        matrix[j::matrix.shape[1] + 1, j] = np.nan
    categorical = [j for j, name in enumerate(explainer.names) if name in fitted_run.bundle.builder.categories_]
    assert categorical
    matrix[5::9, categorical] = 40.0  # an unseen code
    matrix[6::9, categorical] = -0.5  # read as category 0, as LightGBM casts it
    matrix[7::9, categorical] = -3.0
    for name, model in (("fraud", fitted_run.bundle.fraud), ("eligibility", fitted_run.bundle.eligibility)):
        oracle = model.booster.predict(matrix, pred_contrib=True)
        np.testing.assert_allclose(explainer.sources[name].contributions(matrix), oracle[:, :-1], rtol=0, atol=1e-12)
        assert explainer.sources[name].expected_value == pytest.approx(oracle[0, -1], abs=1e-12)


def test_forest_tables_give_shaps_treeexplainer_values(forest_explained, forest_bundle):
    # The forest is explained from per-leaf tables (models.treeshap); shap's TreeExplainer is the oracle.
    import shap

    explainer, matrix, _ = forest_explained
    forest = forest_bundle.anomaly.forest_
    inputs = forest_bundle.anomaly.prepare(matrix)
    # Claims at split thresholds rounded to float32 (the trees compare float32 values) and one float32 step
    # either side: the closest a claim comes to a split.
    tree, columns = forest.estimators_[0].tree_, forest.estimators_features_[0]
    edges = []
    for node in np.flatnonzero(tree.children_left != -1)[:20]:
        for nudge in (-1, 0, 1):
            row = inputs[node % len(inputs)].copy()
            value = np.float32(tree.threshold[node])
            row[columns[tree.feature[node]]] = np.nextafter(value, np.float32(nudge * np.inf)) if nudge else value
            edges.append(row)
    inputs = np.vstack([inputs, edges])
    oracle = shap.TreeExplainer(forest)
    np.testing.assert_allclose(explainer.sources["anomaly"].contributions(inputs),
                               oracle.shap_values(inputs, check_additivity=False), rtol=0, atol=1e-12)
    assert explainer.sources["anomaly"].expected_value == pytest.approx(float(np.ravel(oracle.expected_value)[0]), abs=1e-12)


@pytest.mark.parametrize("which, anomaly_source", [("explained", "TailContributions"),
                                                    ("forest_explained", "ShapTreeContributions")])
def test_the_reference_engine_calls_the_named_tools_and_gives_the_same_reasons(which, anomaly_source, request):
    """serving.shap_engine = "reference": LightGBM's pred_contrib and shap's TreeExplainer on the hot
    path instead of the tables; the same contributions, base values and reasons. The tail detector
    is its own reference: its terms are exact."""
    from models.explain import LightGBMContributions

    tables, matrix, parts = request.getfixturevalue(which)
    reference = Explainer(tables.bundle, "reference")
    assert isinstance(reference.sources["fraud"], LightGBMContributions)
    assert type(reference.sources["anomaly"]).__name__ == anomaly_source
    theirs = reference.contributions(matrix)
    for name, (base, values) in parts.items():
        np.testing.assert_allclose(theirs[name][1], values, rtol=0, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(theirs[name][0], base, rtol=0, atol=1e-12, err_msg=name)
    ours, its = tables.reasons(matrix[:50], contributions=parts), reference.reasons(matrix[:50], contributions=theirs)
    for mine, other in zip(ours, its):
        for model in mine:
            assert [(r.feature, r.text) for r in mine[model]] == [(r.feature, r.text) for r in other[model]]
            np.testing.assert_allclose([r.contribution for r in mine[model]],
                                       [r.contribution for r in other[model]], atol=2e-6)
    with pytest.raises(ValueError, match="one of tables, reference, not 'shap'"):
        Explainer(tables.bundle, "shap")


def test_a_batch_is_explained_exactly_as_each_claim_alone(explained):
    # Batches take a different road (half of the claims on a second thread).
    explainer, matrix, parts = explained
    for i in (0, 31, 32, 150, 299):
        alone = explainer.contributions(matrix[i:i + 1])
        for name, (base, values) in parts.items():
            np.testing.assert_array_equal(alone[name][1][0], values[i], err_msg=f"{name} claim {i}")
            assert alone[name][0][0] == base[i]


def test_every_feature_has_a_sentence():
    assert set(CLAIM_FEATURES) | set(HISTORY_FEATURES) <= set(SENTENCES)


def test_reasons_are_strongest_first_with_values_and_sentences(explained):
    explainer, matrix, parts = explained
    reasons = explainer.reasons(matrix[:20], top=5, contributions={k: (b[:20], v[:20]) for k, (b, v) in parts.items()})
    for per_claim in reasons:
        assert set(per_claim) == {"fraud", "eligibility", "anomaly"}
        for model, items in per_claim.items():
            strengths = [abs(r.contribution) for r in items]
            assert strengths == sorted(strengths, reverse=True) and 0 < len(items) <= 5
            assert all(r.text and (r.text[0].isupper() or r.text[0].isdigit()) for r in items)


@pytest.mark.parametrize("feature, value, typical, expected", [
    ("report_delay_days", 41.2, 1.3, "Reported 41 days after the loss; most claims are reported within 1 day"),
    ("report_delay_days", 0.2, 1.3, "Reported on the day of the loss"),
    ("policy_age_days", -12.0, 700.0, "The loss happened 12 days before the policy started"),
    ("amount_to_typical_for_loss_type", 23.4, 1.0, "The amount is 23.4 times the typical claim of this loss type"),
    ("payee_account_other_claimants", 3.0, 0.0, "3 other claimants used the same bank account before"),
    ("claimant_claims_365d", 0.0, 0.0, "No earlier claims by this claimant in the previous year"),
    ("police_report", 0.0, None, "No police report was filed"),
    ("loss_hour", 3.0, None, "The loss happened at 03:00 (night)"),
    ("days_since_claimant_last_claim", float("nan"), None, "The claimant has no earlier claim"),
    ("extra_insured_hobbies", "chess", None, "Insured hobbies: chess"),
])
def test_sentences_read_like_an_adjuster_would_say_them(feature, value, typical, expected):
    label = feature.replace("extra_", "").replace("_", " ")
    assert reason_sentence(feature, label, value, typical).startswith(expected)


def test_a_missing_tenure_reads_as_not_stated():
    from models.reasons import reason_sentence

    assert reason_sentence("customer_tenure_days", "days the claimant had been a customer at the loss",
                           float("nan"), None) == "Not stated since when the claimant is a customer"
