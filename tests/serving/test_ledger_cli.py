"""`claimtriage ledger verify` over the store the service writes: passes, then names a tampered decision."""

import sqlalchemy as sa

from serving.store import ClaimStore
from tests.serving.test_store import decision
from training.cli import main


def test_ledger_verify_passes_then_names_the_decision_edited_in_the_database(mlflow_home, typed_claims, capsys):
    store = ClaimStore(mlflow_home.database_url)
    claims = typed_claims.head(30)
    store.record(claims.head(20), [decision("STANDARD_REVIEW")] * 20, "1")
    for i in range(20, 30):
        store.record(claims.iloc[[i]], [decision("SIU_REFERRAL", 0.8)], "1")
    store.record_outcome(claims["claim_id"].iloc[3], "confirmed_fraud", "ring", by="adjuster.ann")
    assert main(["ledger", "verify"]) == 0
    assert "31" in capsys.readouterr().out  # 30 decisions and one outcome, all chained

    assert main(["ledger", "head"]) == 0
    anchor = capsys.readouterr().out.strip()
    assert anchor.startswith("31:")

    victim = claims["claim_id"].iloc[25]
    with store.engine.begin() as conn:  # someone turns a referral into an approval behind the service's back
        conn.execute(sa.update(store.decisions).where(store.decisions.c.claim_id == victim)
                     .values(decision="AUTO_APPROVE"))
    assert main(["ledger", "verify", "--anchor", anchor]) == 1
    out = capsys.readouterr().out
    assert f"claim {victim}" in out and "altered" in out
