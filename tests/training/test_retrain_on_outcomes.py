"""The loop closes: outcomes recorded on scored claims are exported and a new model trains on them."""

import pandas as pd
import pytest

from serving.store import ClaimStore
from cli.main import main
from training.generate import generate_claims

pytestmark = pytest.mark.slow
# Each outcome is recorded on its own, as adjusters record them (a transaction and ledger entries each):
# 2,000 are enough to train on, and half the 4,000 this test once recorded.
CLAIMS = 2_000


def test_recorded_outcomes_export_as_labels_and_train_a_model(few_folds, tmp_path, capsys):
    config = few_folds
    store = ClaimStore(config.database_url)
    claims = generate_claims(CLAIMS, seed=12)
    from features.validation import validate_claims

    typed = validate_claims(claims).claims
    responses = [{"decision": "STANDARD_REVIEW", "scores": {"fraud_probability": 0.1, "approval_probability": 0.5,
                                                            "anomaly_score": 0.5},
                  "deadlines": {"respond_by": "2026-11-26T12:00:00Z", "resolve_by": "2026-11-28T12:00:00Z"}}
                 for _ in range(len(typed))]
    store.record(typed, responses, "1")
    # What adjusters decided is what the generator drew: fraud confirmed, paid as filed, or adjusted.
    for row in claims.itertuples():
        outcome = "confirmed_fraud" if row.is_fraud else "paid_as_filed" if row.paid_as_filed else "paid_adjusted"
        store.record_outcome(row.claim_id, outcome, None, by="adjuster", via="review page adjuster")

    out = tmp_path / "labels.parquet"
    assert main(["export-labels", "--out", str(out)]) == 0
    assert f"wrote {CLAIMS:,} claims with outcomes" in capsys.readouterr().out
    exported = pd.read_parquet(out).set_index("claim_id")
    truth = claims.set_index("claim_id")
    assert (exported["is_fraud"] == truth.loc[exported.index, "is_fraud"]).all()
    assert (exported["paid_as_filed"] == (truth.loc[exported.index, "paid_as_filed"] & ~truth.loc[exported.index, "is_fraud"])).all()

    assert main(["train", "--data", str(out)]) == 0
    assert "registered claim-triage version 1" in capsys.readouterr().out
