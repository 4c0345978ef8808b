"""The promotion gate, met with real registered versions whose metrics tie, differ within and beyond
the tolerance, and disagree between fraud and approval; always judged on the candidate's claims.

The end-to-end test only ever meets a one-tree challenger, which is worse on everything by far: the
tie, the tolerance and a mixed verdict never reach the comparison there.
"""

from dataclasses import replace

import mlflow
import pytest
from mlflow import MlflowClient

from models.config import Config, load_config
from models.pyfunc import wire_format
from tests.conftest import tracking_store_in
from training import registry
from training.fit import fit_bundle


@pytest.fixture(scope="module")
def weak_bundle(fitted_run, typed_claims):
    """A one-tree bundle on the same claims and split as `fitted_run`: worse at everything."""
    config = Config()
    weak = replace(config, training=replace(config.training, max_trees=1, early_stopping_rounds=1))
    bundle = fit_bundle(typed_claims, fitted_run.split, weak).bundle
    assert bundle.builder.feature_names_ == fitted_run.bundle.builder.feature_names_  # parts can be swapped
    return bundle


@pytest.fixture(scope="module")
def versions(fitted_run, weak_bundle, typed_claims, tmp_path_factory, empty_tracking_store):
    """One private registry holding, by name, the versions the tests set against each other.

    Judged on the test period ("A"): the fitted bundle, the one-tree bundle, and two hybrids (the
    good fraud model with the weak eligibility model, and the other way round). Judged on the
    validation period instead ("B"): the fitted bundle again."""
    home = tmp_path_factory.mktemp("registry")
    good, split = fitted_run.bundle, fitted_run.split
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CLAIMTRIAGE_HOME", str(home))
        patch.setenv("MLFLOW_TRACKING_URI", tracking_store_in(home, empty_tracking_store))
        patch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        patch.chdir(home)
        config = load_config()
        registry.configure(config)

        def register(bundle, in_test) -> str:
            with mlflow.start_run():
                registry.log_evaluation_data(typed_claims, in_test)
                return registry.log_bundle(bundle, wire_format(typed_claims.head(5), bundle), config)

        out = {
            "good": register(good, split.test),
            "good_on_B": register(good, split.validation),
            "weak": register(weak_bundle, split.test),
            "good_fraud_weak_approval": register(replace(good, eligibility=weak_bundle.eligibility), split.test),
            "weak_fraud_good_approval": register(replace(good, fraud=weak_bundle.fraud), split.test),
        }
        yield config, out


def _judge(config, champion: str, candidate: str, tolerance: float = 0.0) -> registry.Promotion:
    MlflowClient().set_registered_model_alias(config.registry.model_name, config.registry.champion_alias, champion)
    tolerant = replace(config, registry=replace(config.registry, promotion_tolerance=tolerance))
    return registry.promote(candidate, tolerant)


def _champion(config) -> str:
    return str(registry.champion_version(MlflowClient(), config).version)


def _metrics(bundle, claims, in_test) -> dict[str, float]:
    return registry.compare_metrics(bundle, claims.assign(in_test=in_test))


def test_a_tie_is_promoted_and_both_are_judged_on_the_candidates_claims(versions, fitted_run, typed_claims):
    config, v = versions
    # The same model, its evaluation claims another period: a tie on those claims, not a loss.
    result = _judge(config, champion=v["good"], candidate=v["good_on_B"])
    assert not result.forced and result.previous == v["good"] and _champion(config) == v["good_on_B"]
    on_candidates_claims = _metrics(fitted_run.bundle, typed_claims, fitted_run.split.validation)
    on_champions_claims = _metrics(fitted_run.bundle, typed_claims, fitted_run.split.test)
    assert on_candidates_claims != on_champions_claims  # else the claims used could not be told apart
    assert result.candidate_metrics == on_candidates_claims
    assert result.champion_metrics == on_candidates_claims
    assert set(result.candidate_metrics) == set(registry.PROMOTION_METRICS)


def test_worse_within_the_tolerance_is_promoted_and_beyond_it_refused_per_metric(versions, fitted_run, weak_bundle,
                                                                                 typed_claims):
    config, v = versions
    ours = _metrics(weak_bundle, typed_claims, fitted_run.split.test)
    theirs = _metrics(fitted_run.bundle, typed_claims, fitted_run.split.test)
    gaps = sorted((theirs[k] - ours[k], k) for k in registry.PROMOTION_METRICS)
    assert gaps[0][0] > 0.005 and gaps[1][0] - gaps[0][0] > 0.002, gaps  # worse on all, by different amounts

    refused = f"worse than champion version {v['good']} on"
    with pytest.raises(registry.PromotionError, match=refused) as beyond_all:
        _judge(config, champion=v["good"], candidate=v["weak"], tolerance=gaps[0][0] - 0.001)
    assert all(k in str(beyond_all.value) for _, k in gaps) and _champion(config) == v["good"]

    # Between the smallest and the next gap: refused, naming only the metrics beyond the tolerance.
    with pytest.raises(registry.PromotionError) as beyond_some:
        _judge(config, champion=v["good"], candidate=v["weak"], tolerance=(gaps[0][0] + gaps[1][0]) / 2)
    named = str(beyond_some.value).splitlines()[0]
    assert gaps[0][1] not in named and all(k in named for _, k in gaps[1:]), named
    assert _champion(config) == v["good"]

    within = _judge(config, champion=v["good"], candidate=v["weak"], tolerance=gaps[-1][0] + 0.001)
    assert not within.forced and within.previous == v["good"] and _champion(config) == v["weak"]
    assert within.candidate_metrics == ours and within.champion_metrics == theirs


def test_better_at_fraud_but_worse_at_approval_is_refused(versions, fitted_run, weak_bundle, typed_claims):
    config, v = versions
    good, test = fitted_run.bundle, fitted_run.split.test
    candidate = _metrics(replace(good, eligibility=weak_bundle.eligibility), typed_claims, test)
    champion = _metrics(replace(good, fraud=weak_bundle.fraud), typed_claims, test)
    assert candidate["fraud_roc_auc"] > champion["fraud_roc_auc"] and candidate["fraud_pr_auc"] > champion["fraud_pr_auc"]
    assert candidate["approval_roc_auc"] < champion["approval_roc_auc"]

    with pytest.raises(registry.PromotionError, match="on approval_roc_auc \\(use --force"):
        _judge(config, champion=v["weak_fraud_good_approval"], candidate=v["good_fraud_weak_approval"])
    assert _champion(config) == v["weak_fraud_good_approval"]
    # The other way round it is worse at fraud, however good its approvals.
    with pytest.raises(registry.PromotionError, match="on fraud_roc_auc, fraud_pr_auc \\(use --force"):
        _judge(config, champion=v["good_fraud_weak_approval"], candidate=v["weak_fraud_good_approval"])
