"""End to end on small data: train, log, register, promote; the registered model predicts."""

from dataclasses import replace

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from models.policy import OUTCOMES
from models.pyfunc import load_bundle, wire_format
from training import registry
from cli.main import main
from training.train import run_training

pytestmark = pytest.mark.slow

REQUIRED_METRICS = (
    "test_fraud_roc_auc", "test_fraud_pr_auc", "test_approval_roc_auc", "test_fraud_brier",
    "test_auto_approve_rate", "test_auto_approve_precision", "test_siu_fraud_recall", "test_anomaly_recall",
    "oracle_fraud_roc_auc", "oracle_fraud_pr_auc", "oracle_approval_roc_auc",
)


def test_train_register_promote_and_predict(generated_claims, mlflow_home):
    # Three trainings on the last 8,000 of the shared claims with held-out evaluation, as on 20,000: the
    # plumbing and the promotion gate's verdicts (a one-tree model is worse by far, a retrained one ties)
    # do not depend on the size, and a third of the claims is a third of the time.
    config = replace(mlflow_home, training=replace(mlflow_home.training, cv_below_rows=0))
    claims = generated_claims.tail(8_000)
    first = run_training(claims, config, source="fixture")
    assert first.version == "1" and first.promotion is not None and first.promotion.previous is None

    client = MlflowClient()
    run = client.get_run(first.run_id)
    missing = [k for k in REQUIRED_METRICS if k not in run.data.metrics]
    assert not missing, f"metrics not logged: {missing}"
    assert run.data.params["split"] == "time"
    artifacts = {a.path for a in client.list_artifacts(first.run_id, "plots")}
    assert {"plots/roc_pr.png", "plots/calibration.png", "plots/shap_fraud.png", "plots/shap_eligibility.png",
            "plots/shap_anomaly.png"} <= artifacts
    assert str(client.get_model_version_by_alias("claim-triage", "champion").version) == "1"
    assert run.inputs.dataset_inputs, "the dataset's description is logged with the run"

    # The registered model, loaded as any MLflow user would, scores canonical claims.
    model = mlflow.pyfunc.load_model("models:/claim-triage@champion")
    bundle = load_bundle("models:/claim-triage@champion")
    sample = claims.tail(50)
    out = model.predict(wire_format(sample, bundle))
    assert out["claim_id"].tolist() == sample["claim_id"].tolist()
    assert set(out["decision"]) <= set(OUTCOMES)
    assert out[["approval_probability", "fraud_probability", "anomaly_score"]].stack().between(0, 1).all()

    # A deliberately weak challenger (one tree) is refused, then forced, and the force is recorded.
    weak = replace(config, training=replace(config.training, max_trees=1, early_stopping_rounds=1))
    second = run_training(claims, weak, source="fixture")
    assert second.version == "2" and second.promotion is None
    with pytest.raises(registry.PromotionError, match="worse than champion version 1"):
        registry.promote("2", config)
    assert str(client.get_model_version_by_alias("claim-triage", "champion").version) == "1"
    forced = registry.promote("2", config, force=True, reason="drill")
    assert forced.forced and str(client.get_model_version_by_alias("claim-triage", "champion").version) == "2"
    assert client.get_model_version("claim-triage", "2").tags["forced"] == "drill"

    # An equally good challenger (same data, same seed) is promoted without force.
    third = run_training(claims, config, source="fixture")
    assert registry.promote(third.version, config).previous == "2"


def test_cli_generate_validate_train(tmp_path, few_folds, capsys):
    data = tmp_path / "claims.csv"
    assert main(["generate", "--claims", "6000", "--seed", "3", "--out", str(data)]) == 0
    assert main(["validate", "--data", str(data)]) == 0
    assert "6000 claims, all valid." in capsys.readouterr().out

    assert main(["train", "--data", str(data)]) == 0
    out = capsys.readouterr().out
    assert "registered claim-triage version 1" in out and "first champion" in out
    assert "test_fraud_roc_auc" in out

    broken = pd.read_csv(data)
    broken.loc[3, "claim_amount"] = -10
    broken.to_csv(tmp_path / "broken.csv", index=False)
    assert main(["validate", "--data", str(tmp_path / "broken.csv")]) == 1
    assert "claim_amount" in capsys.readouterr().out
    assert main(["promote", "99"]) == 2
    assert "no version 99" in capsys.readouterr().err
