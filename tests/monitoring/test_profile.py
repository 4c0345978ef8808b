"""The reference profile kept with each version: logged by training on the held-out periods, read
back by version with the same bins, named when absent, and made for an old version by
`claimtriage profile` (a real MLflow registry in a temporary folder)."""

import mlflow
import pytest
from mlflow import MlflowClient

from cli.main import main
from models.config import load_config
from models.pyfunc import load_bundle
from monitoring.profile import SCORE_NAMES, ProfileError, load_profile, profile_claims
from tests.conftest import tracking_store_in

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory, empty_tracking_store):
    """Version 1 trained on 5,000 generated claims (held-out evaluation: no cross-validation), the
    claims file, and the configuration pointing at the temporary registry."""
    from training.generate import generate_claims, write_claims
    from training.train import run_training

    home = tmp_path_factory.mktemp("profile")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CLAIMTRIAGE_HOME", str(home))
        patch.setenv("MLFLOW_TRACKING_URI", tracking_store_in(home, empty_tracking_store))
        patch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        patch.chdir(home)
        (home / "claimtriage.toml").write_text("[training]\ncv_below_rows = 0\n")
        config = load_config()
        frame = generate_claims(5_000, seed=5)
        path = home / "claims.parquet"
        write_claims(frame, path)
        result = run_training(frame, config, str(path))
        yield config, result, path


def _held_out_claims(config, path):
    """The claims training profiled, rebuilt here: validated, and the test period."""
    from training.data import read_claims, split_claims, validate_for_training

    claims = validate_for_training(read_claims(path)).claims
    cfg = config.training
    split = split_claims(claims, cfg.validation_share, cfg.test_share, cfg.seed)
    return claims, claims.loc[split.test]


def test_training_keeps_a_profile_of_the_held_out_periods_read_back_by_version(trained):
    config, result, path = trained
    profile = load_profile(config, result.version)
    bundle = load_bundle(f"models:/{config.registry.model_name}/{result.version}")
    features = bundle.builder.feature_names_
    assert [c.name for c in profile.columns] == features + list(SCORE_NAMES)
    assert profile.about["run_id"] == result.run_id

    claims, held_out = _held_out_claims(config, path)
    assert profile.about["n"] == len(held_out) < len(claims)
    rebuilt = profile_claims(bundle, held_out, {}, history=claims)
    assert profile.columns == rebuilt.columns  # same bins, same shares: the held-out periods, fixed bins
    assert load_profile(config, result.version).columns == profile.columns
    assert len(profile.sample) == len(held_out) and list(profile.sample.columns) == features + list(SCORE_NAMES)

    ranks = [c.importance_rank for c in profile.columns if c.source == "feature"]
    assert sorted(ranks) == list(range(1, len(features) + 1))
    assert all(c.importance_rank is None for c in profile.columns if c.source == "score")
    loss_type = profile.column("loss_type")
    assert loss_type.kind == "categorical" and loss_type.labels[-2:] == ("(other)", "(missing)")
    amount = profile.column("claim_amount")
    assert amount.kind == "numeric" and len(amount.edges) == 9 and sum(amount.shares) == pytest.approx(1.0)


def test_a_version_without_a_profile_is_named_and_claimtriage_profile_makes_one(trained, capsys):
    config, result, path = trained
    client, name = MlflowClient(), config.registry.model_name
    first = client.get_model_version(name, result.version)
    # A version registered from a run that kept no profile, as every version trained before them.
    with mlflow.start_run() as run:
        mlflow.set_tag("note", "trained before reference profiles were kept")
    old = client.create_model_version(name, first.source, run_id=run.info.run_id)

    with pytest.raises(ProfileError, match=rf"{name} version {old.version} has no reference profile.*"
                                           rf"claimtriage profile --version {old.version} --data CLAIMS"):
        load_profile(config, old.version)

    assert main(["profile", "--version", str(old.version), "--data", str(path)]) == 0
    _, held_out = _held_out_claims(config, path)
    said = capsys.readouterr().out
    assert f"reference profile of {len(held_out):,} claims (test period)" in said
    assert "replacing" not in said
    made = load_profile(config, old.version)
    assert made.about["run_id"] == run.info.run_id
    assert made.columns == load_profile(config, result.version).columns  # as training made it
    assert main(["profile", "--version", str(old.version), "--data", str(path), "--whole-file"]) == 0
    assert "reference profile of 5,000 claims (every valid claim)" in (said := capsys.readouterr().out)
    assert "replacing the one it had" in said
    assert load_profile(config, old.version).about["n"] == 5_000

    assert main(["profile", "--version", "9", "--data", str(path)]) == 2
    assert f"{name} has no version 9; versions: 1, {old.version}" in capsys.readouterr().err
