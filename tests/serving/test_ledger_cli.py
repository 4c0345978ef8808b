"""`claimtriage ledger verify` over the store the service writes: passes, then names a tampered decision."""

import sqlalchemy as sa

from serving.store import ClaimStore
from tests.serving.test_store import decision
from cli.main import main


def test_ledger_verify_passes_then_names_the_decision_edited_in_the_database(mlflow_home, typed_claims, capsys):
    store = ClaimStore(mlflow_home.database_url)
    claims = typed_claims.head(30)
    store.record(claims.head(20), [decision("STANDARD_REVIEW")] * 20, "1")
    for i in range(20, 30):
        store.record(claims.iloc[[i]], [decision("SIU_REFERRAL", 0.8)], "1")
    store.record_outcome(claims["claim_id"].iloc[3], "confirmed_fraud", "ring", by="adjuster.ann", via="review page ann")
    assert main(["ledger", "verify"]) == 0
    out = capsys.readouterr().out  # 30 decisions, their 30 cases opened, one outcome and its case resolved
    assert "62 entries" in out and "30 claims" in out and "intact" in out

    assert main(["ledger", "head"]) == 0
    anchor = capsys.readouterr().out.strip()
    assert anchor.startswith("62:")

    victim = claims["claim_id"].iloc[25]
    with store.engine.begin() as conn:  # someone turns a referral into an approval behind the service's back
        conn.execute(sa.update(store.decisions).where(store.decisions.c.claim_id == victim)
                     .values(decision="AUTO_APPROVE"))
    assert main(["ledger", "verify", "--anchor", anchor]) == 1
    out = capsys.readouterr().out
    assert f"claim {victim}" in out and "altered" in out


def test_ledger_verify_names_a_claim_and_a_case_changed_in_the_database(mlflow_home, typed_claims, capsys):
    store = ClaimStore(mlflow_home.database_url)
    store.seed(typed_claims.head(10))
    scored = typed_claims.iloc[10:14]
    store.record(scored, [decision("STANDARD_REVIEW")] * 4, "1")
    ids = scored["claim_id"].tolist()
    store.respond(ids[1], "adjuster.ann", via="review page ann")
    assert main(["ledger", "verify"]) == 0
    out = capsys.readouterr().out
    assert "4 claims" in out and "not covered: 10 claims seeded from training" in out  # one line, not a problem

    with store.engine.begin() as conn:  # the payout goes elsewhere, and the case changes hands
        conn.execute(sa.update(store.claims).where(store.claims.c.claim_id == ids[0]).values(payee_account="AC-X"))
        conn.execute(sa.update(store.review.cases).where(store.review.cases.c.claim_id == ids[1])
                     .values(assignee="mallory"))
    assert main(["ledger", "verify"]) == 1
    out = capsys.readouterr().out
    assert "2 problem(s)" in out
    assert f"claim {ids[0]} was altered after it was scored" in out
    assert f"claim {ids[1]}): the case was altered after it was recorded" in out
