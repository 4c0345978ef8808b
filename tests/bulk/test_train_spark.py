"""`claimtriage train --engine spark`: history features counted on Spark over the whole book, exactly
as training counts them in pandas; a stratified sample that keeps the book's fraud rate; the run
records the engine and the sample."""

from __future__ import annotations

import numpy as np
import pytest
from mlflow import MlflowClient

from bulk.spark_training import training_frame
from cli.main import main
from features.builder import PRECOUNTED
from features.graph import GRAPH_FEATURES, GraphSettings, graph_features
from features.history import history_feature_requirements, history_features
from features.validation import validate_claims

pytestmark = pytest.mark.slow
NAMES = [*history_feature_requirements(), *GRAPH_FEATURES]


def _local_history(book):
    claims = validate_claims(book, require_labels=True).claims.reset_index(drop=True)
    values = history_features(claims)
    values.update(graph_features(claims, None, GraphSettings()))
    return claims["claim_id"].astype(str).to_numpy(), values


def test_history_counted_on_spark_is_the_local_pipeline_s(spark, edge_book, tmp_path):
    edge_book.to_parquet(tmp_path / "book.parquet")
    frame, info = training_frame(str(tmp_path / "book.parquet"), GraphSettings(), sample_claims=10_000)
    ids, expected = _local_history(edge_book)
    frame = frame.set_index("claim_id").loc[ids]
    for name in NAMES:
        np.testing.assert_array_equal(frame[PRECOUNTED + name].to_numpy(dtype=float), expected[name], err_msg=name)
    assert info["sample_share"] == 1.0 and info["sample_claims"] == info["book_valid_claims"] == len(edge_book)
    assert np.nanmax(expected["ring_claims"]) > 0 and np.nanmax(expected["payee_account_other_claimants"]) > 0


def test_a_sample_keeps_the_book_s_fraud_rate_and_its_history(spark, edge_book, tmp_path):
    book = edge_book.copy()
    book.loc[3, "claim_amount"] = -1.0  # an invalid row is neither history nor sample
    book.to_parquet(tmp_path / "book.parquet")
    first, info = training_frame(str(tmp_path / "book.parquet"), GraphSettings(), sample_claims=1_000, seed=5)
    again, _ = training_frame(str(tmp_path / "book.parquet"), GraphSettings(), sample_claims=1_000, seed=5)
    other, _ = training_frame(str(tmp_path / "book.parquet"), GraphSettings(), sample_claims=1_000, seed=6)
    valid = book.drop(index=3)
    share = 1_000 / len(valid)
    assert info["book_invalid_rows"] == 1 and info["book_valid_claims"] == len(valid)
    assert first["is_fraud"].sum() == round(share * valid["is_fraud"].sum())
    assert (~first["is_fraud"]).sum() == round(share * (~valid["is_fraud"]).sum())
    assert list(first["claim_id"]) == list(again["claim_id"]) != list(other["claim_id"])
    # Sampled claims keep the history they have in the whole book, not a recount within the sample.
    ids, expected = _local_history(valid)
    at = {claim_id: i for i, claim_id in enumerate(ids)}
    rows = [at[c] for c in first["claim_id"]]
    for name in ("claimant_claims_365d", "ring_claims", "payee_account_other_claimants"):
        np.testing.assert_array_equal(first[PRECOUNTED + name].to_numpy(dtype=float), expected[name][rows])


def test_train_on_spark_records_engine_and_sample(spark, edge_book, tmp_path, monkeypatch, empty_tracking_store):
    from tests.conftest import use_home

    use_home(monkeypatch, tmp_path, empty_tracking_store)
    (tmp_path / "claimtriage.toml").write_text("[training]\ncv_below_rows = 0\n")
    edge_book.to_parquet(tmp_path / "book.parquet")
    assert main(["train", "--data", str(tmp_path / "book.parquet"), "--engine", "spark", "--master", "local[2]",
                 "--sample-claims", "2000"]) == 0
    client = MlflowClient()
    run = client.get_run(client.get_model_version("claim-triage", "1").run_id)
    params = run.data.params
    assert params["engine.engine"] == "spark" and params["engine.book_valid_claims"] == str(len(edge_book))
    assert params["engine.sample_claims"] == "2000" and params["data.rows"] == "2000"
    assert run.data.metrics["test_fraud_roc_auc"] > 0.6
    assert main(["train", "--synthetic", "500", "--engine", "spark"]) == 2
