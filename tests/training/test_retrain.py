"""`claimtriage retrain`: the training data plus exported outcomes (newer labels win, claims only in the
outcomes added, nothing dropped), trained, registered and made the challenger, never the champion."""

from datetime import datetime

import pandas as pd
import pytest
import sqlalchemy as sa
from mlflow import MlflowClient

from cli.main import main
from features.validation import validate_claims
from serving.shadow import shadow_table
from serving.store import ClaimStore
from training import registry
from training.data import DataError
from training.generate import generate_claims, write_claims
from training.retrain import merge_outcomes

TRAINING, ADDED = 3_000, 500


def as_exported(claims: pd.DataFrame, outcomes: list[str]) -> pd.DataFrame:
    """Claims as `export-labels` writes them: stored fields, the labels their outcome implies, the outcome."""
    from serving.review import OUTCOME_LABELS

    fields = [c for c in claims.columns if c not in ("is_fraud", "paid_as_filed", "true_fraud_prob",
                                                      "true_paid_as_filed_prob", "is_injected_anomaly")]
    out = validate_claims(claims).claims[fields].reset_index(drop=True)
    out["is_fraud"] = pd.array([OUTCOME_LABELS[o][0] for o in outcomes], dtype="boolean")
    out["paid_as_filed"] = pd.array([OUTCOME_LABELS[o][1] for o in outcomes], dtype="boolean")
    out["outcome"] = pd.array(outcomes, dtype="str")
    return out


def test_the_newer_label_wins_claims_are_added_and_none_dropped():
    training = generate_claims(1_000, seed=8)
    honest = training.loc[~training["is_fraud"] & training["paid_as_filed"]].head(30)
    fraud = training.loc[training["is_fraud"]].head(5)
    new = generate_claims(300, seed=9).head(20).assign(claim_id=lambda f: "N" + f["claim_id"])
    outcomes = pd.concat([as_exported(honest, ["confirmed_fraud"] * 30), as_exported(fraud, ["not_fraud"] * 5),
                          as_exported(new, ["paid_adjusted"] * 20)], ignore_index=True)
    merged, merge = merge_outcomes(training, outcomes)
    assert (merge.training, merge.outcomes, merge.relabelled, merge.added, merge.total) == (1_000, 55, 35, 20, 1_020)
    assert merged["claim_id"].is_unique and set(merged["claim_id"]) == set(training["claim_id"]) | set(new["claim_id"])
    labels = merged.set_index("claim_id")
    assert labels.loc[honest["claim_id"], "is_fraud"].all() and not labels.loc[honest["claim_id"], "paid_as_filed"].any()
    # "not fraud" says nothing of payment: is_fraud is overturned, paid_as_filed stays the training file's.
    assert not labels.loc[fraud["claim_id"], "is_fraud"].any()
    assert (labels.loc[fraud["claim_id"], "paid_as_filed"] == fraud.set_index("claim_id")["paid_as_filed"]).all()
    untouched = training.loc[~training["claim_id"].isin(outcomes["claim_id"])].set_index("claim_id")
    assert (labels.loc[untouched.index, "is_fraud"] == untouched["is_fraud"]).all()
    assert (labels.loc[new["claim_id"], "paid_as_filed"] == False).all()  # noqa: E712 (nullable booleans)
    assert "true_fraud_prob" not in merged.columns and "true_fraud_prob" in merge.summary()
    assert validate_claims(merged, require_labels=True).ok


def test_outcomes_that_cannot_be_merged_are_named():
    training = generate_claims(200, seed=1)
    twice = as_exported(training.head(2), ["denied", "denied"])
    twice.loc[1, "claim_id"] = twice.loc[0, "claim_id"]
    with pytest.raises(DataError, match=f"the outcomes: claim_id {twice.loc[0, 'claim_id']} appears more than once"):
        merge_outcomes(training, twice)
    with pytest.raises(DataError, match="the outcomes: no is_fraud column"):
        merge_outcomes(training, twice.drop(columns=["is_fraud"]))


@pytest.mark.slow
def test_retrain_makes_the_merged_model_the_challenger_and_leaves_the_champion(few_folds, tmp_path, capsys):
    config = few_folds
    (tmp_path / "claimtriage.toml").write_text("[training]\ncv_below_rows = 0\n")  # no cross-validation: faster
    claims = generate_claims(TRAINING + ADDED, seed=13)
    training, later = claims.iloc[:TRAINING], claims.iloc[TRAINING:]
    write_claims(training, tmp_path / "training.parquet")
    assert main(["train", "--data", str(tmp_path / "training.parquet")]) == 0
    # Outcomes, through the store and `export-labels`: 100 training claims found fraudulent since, and
    # the 500 later claims as they turned out.
    flipped = training.loc[~training["is_fraud"]].iloc[::20].head(100)
    scored = pd.concat([flipped, later])
    outcomes = ["confirmed_fraud"] * len(flipped) + [
        "confirmed_fraud" if r.is_fraud else "paid_as_filed" if r.paid_as_filed else "paid_adjusted"
        for r in later.itertuples()]
    store = ClaimStore(config.database_url)
    typed = validate_claims(scored).claims
    store.record(typed, [{"decision": "STANDARD_REVIEW", "scores": {"fraud_probability": 0.1, "anomaly_score": 0.5,
                                                                    "approval_probability": 0.5},
                          "deadlines": {"respond_by": "2026-12-02T12:00:00Z", "resolve_by": "2026-12-04T12:00:00Z"}}
                         for _ in range(len(typed))], "1")
    for claim_id, outcome in zip(scored["claim_id"], outcomes):
        store.record_outcome(claim_id, outcome, None, by="claims-system", via="api key claims-system")
    store.engine.dispose()
    assert main(["export-labels", "--out", str(tmp_path / "outcomes.parquet")]) == 0
    capsys.readouterr()

    assert main(["retrain", "--data", str(tmp_path / "training.parquet"),
                 "--outcomes", str(tmp_path / "outcomes.parquet")]) == 0
    out = capsys.readouterr().out
    assert "3,000 training claims + 600 claims with outcomes: 100 in both (100 relabelled by their outcome), " \
           "500 added; 3,500 claims to train on" in out
    assert "challenger -> version 2 (champion unchanged)" in out
    assert "offline, on version 2's test claims (the promotion gate's comparison with champion version 1)" in out
    assert "no shadow decisions of version 2" in out
    client = MlflowClient(tracking_uri=config.tracking_uri, registry_uri=config.tracking_uri)
    name = config.registry.model_name
    assert str(client.get_model_version_by_alias(name, config.registry.challenger_alias).version) == "2"
    assert str(client.get_model_version_by_alias(name, config.registry.champion_alias).version) == "1"
    # What version 2 was trained and judged on: every claim of both files, with the newer labels.
    judged = registry._evaluation_claims(client, client.get_model_version(name, "2").run_id).set_index("claim_id")
    assert len(judged) == TRAINING + ADDED
    assert judged.loc[flipped["claim_id"], "is_fraud"].all()
    assert (judged.loc[later["claim_id"], "is_fraud"] == later.set_index("claim_id")["is_fraud"]).all()

    # Shadow decisions of version 2 on the 100 relabelled claims: `promote --live` shows them beside the gate.
    store = ClaimStore(config.database_url)
    table = shadow_table(store.metadata)
    table.create(store.engine, checkfirst=True)
    with store.engine.begin() as conn:
        decided = conn.execute(sa.select(store.decisions.c.claim_id, store.decisions.c.id)
                               .where(store.decisions.c.claim_id.in_(flipped["claim_id"].tolist()))).all()
        conn.execute(table.insert(), [{"claim_id": claim_id, "decision_id": id_, "model_version": "2",
                                       "decision": "SIU_REFERRAL", "fraud_probability": 0.9, "anomaly_score": 0.5,
                                       "approval_probability": 0.01, "scored_at": datetime(2026, 12, 1)}
                                      for claim_id, id_ in decided])
    store.engine.dispose()
    # Forced: which version the offline gate prefers on a 3,500-claim book is not what this test is
    # about (the gate judges the champion on claims it was trained on; see the closing notes).
    assert main(["promote", "2", "--live", "--force", "--reason", "test"]) == 0
    out = capsys.readouterr().out
    assert "live, in the champion's shadow:\n100 claims scored by both (challenger version 2, champion version 1)" in out
    assert "version 2 " in out and " to champion (was version 1)" in out
