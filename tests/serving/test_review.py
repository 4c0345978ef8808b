"""Review cases, the queue and recorded outcomes, on SQLite and PostgreSQL alike."""

from datetime import datetime

import pytest
import sqlalchemy as sa

from serving.review import RESOLVED, RESPONDED, ReviewError
from serving.store import ClaimStore
from tests.serving.test_store import decision

NOW = datetime(2026, 11, 26, 0, 0, 0)


@pytest.fixture
def store(store_url, typed_claims):
    store = ClaimStore(store_url)
    store.seed(typed_claims.head(200))
    return store


def score(store, claims, *decisions):
    store.record(claims, list(decisions), "1")


def test_decisions_needing_a_person_open_cases_ordered_by_deadline_then_risk(store, typed_claims):
    new = typed_claims.iloc[300:305]
    score(store, new.iloc[[0]], decision("STANDARD_REVIEW", 0.05, "2026-11-26T10:00:00Z", "2026-11-28T10:00:00Z"))
    score(store, new.iloc[[1]], decision("SIU_REFERRAL", 0.60, "2026-11-26T10:00:00Z", "2026-11-28T10:00:00Z"))
    score(store, new.iloc[[2]], decision("ENHANCED_REVIEW", 0.02, "2026-11-25T20:00:00Z", "2026-11-27T20:00:00Z"))
    score(store, new.iloc[[3]], decision("AUTO_APPROVE"))
    ids = new["claim_id"].tolist()
    queue = store.queue(now=NOW)
    assert [c["claim_id"] for c in queue] == [ids[2], ids[1], ids[0]]  # overdue first, then the riskier
    assert queue[0]["overdue"] and not queue[1]["overdue"] and queue[1]["seconds_left"] == 10 * 3600
    assert queue[1]["respond_seconds_left"] == 10 * 3600 and queue[1]["resolve_seconds_left"] == 58 * 3600
    assert [c["claim_id"] for c in store.queue(now=NOW, decision="SIU_REFERRAL")] == [ids[1]]
    assert [c["claim_id"] for c in store.queue(now=NOW, overdue=True)] == [ids[2]]
    assert store.case(ids[3], now=NOW)["case"] is None  # approved automatically: nobody's work


def test_rescoring_an_open_case_follows_the_newest_decision_and_keeps_the_clock(store, typed_claims):
    claim = typed_claims.iloc[[310]]
    score(store, claim, decision("STANDARD_REVIEW", 0.1, "2026-11-26T10:00:00Z", "2026-11-28T10:00:00Z"))
    score(store, claim, decision("SIU_REFERRAL", 0.7, "2026-11-27T10:00:00Z", "2026-11-29T10:00:00Z"))
    queue = store.queue(now=NOW)
    assert len(queue) == 1 and queue[0]["decision"] == "SIU_REFERRAL" and queue[0]["fraud_probability"] == 0.7
    assert queue[0]["respond_by"] == datetime(2026, 11, 26, 10)
    case = store.case(claim["claim_id"].iloc[0], now=NOW)
    assert case["decision"]["decision"] == "SIU_REFERRAL" and case["claim"]["claim_id"] == claim["claim_id"].iloc[0]


def test_respond_then_resolve_and_the_case_leaves_the_queue(store, typed_claims):
    claim_id = typed_claims["claim_id"].iloc[320]
    score(store, typed_claims.iloc[[320]], decision("STANDARD_REVIEW"))
    taken = store.respond(claim_id, by="adjuster.ann", via="review page ann")
    assert taken["status"] == RESPONDED and taken["assignee"] == "adjuster.ann"
    assert taken["next_deadline"] == taken["resolve_by"]
    assert taken["respond_seconds_left"] is None and taken["resolve_seconds_left"] == taken["seconds_left"]
    with pytest.raises(ReviewError, match="already responded"):
        store.respond(claim_id, by="adjuster.bob", via="review page bob")
    store.record_outcome(claim_id, "confirmed_fraud", "ring with PR-17", by="adjuster.ann", via="review page ann")
    assert store.queue() == [] and store.queue(status=RESOLVED)[0]["claim_id"] == claim_id
    with pytest.raises(ReviewError, match="resolved") as second:
        store.record_outcome(claim_id, "not_fraud", None, by="adjuster.bob", via="review page bob")
    assert second.value.status == 409


def test_impossible_outcomes_are_refused_with_the_reason(store, typed_claims):
    with pytest.raises(ReviewError, match="no claim 'nope'") as unknown:
        store.record_outcome("nope", "denied", None, by="claims-system", via="api key claims-system")
    assert unknown.value.status == 404
    score(store, typed_claims.iloc[[330]], decision("STANDARD_REVIEW"))
    with pytest.raises(ReviewError, match="outcome must be one of") as bad:
        store.record_outcome(typed_claims["claim_id"].iloc[330], "maybe", None, by="x", via="api key x")
    assert bad.value.status == 422
    with pytest.raises(ReviewError, match="no review case"):
        store.respond(typed_claims["claim_id"].iloc[331], by="x", via="api key x")


def test_outcomes_become_training_labels_joined_to_the_stored_claims(store, typed_claims):
    picks = typed_claims.iloc[340:344]
    score(store, picks.iloc[[0]], decision("SIU_REFERRAL"))
    score(store, picks.iloc[[1]], decision("STANDARD_REVIEW"))
    score(store, picks.iloc[[2]], decision("AUTO_APPROVE"))
    score(store, picks.iloc[[3]], decision("STANDARD_REVIEW"))
    ids = picks["claim_id"].tolist()
    store.record_outcome(ids[0], "confirmed_fraud", None, by="siu", via="api key siu")
    store.record_outcome(ids[1], "paid_adjusted", None, by="ann", via="review page ann")
    store.record_outcome(ids[2], "paid_as_filed", None, by="claims-system", via="api key claims-system")  # auto-approved, no case
    with pytest.raises(ReviewError, match="already recorded"):
        store.record_outcome(ids[2], "paid_as_filed", None, by="claims-system", via="api key claims-system")
    labels = store.labelled_claims().set_index("claim_id")
    assert sorted(labels.index) == sorted(ids[:3])
    assert labels.loc[ids[0], "is_fraud"] and not labels.loc[ids[0], "paid_as_filed"]
    assert not labels.loc[ids[1], "is_fraud"] and not labels.loc[ids[1], "paid_as_filed"]
    assert labels.loc[ids[2], "paid_as_filed"] and labels.loc[ids[2], "outcome"] == "paid_as_filed"
    assert labels.loc[ids[1], "claim_amount"] == pytest.approx(picks["claim_amount"].iloc[1])


def test_a_case_shows_the_claims_sharing_its_payee_phone_address_or_provider(store, typed_claims):
    claims = typed_claims.iloc[350:353].copy()
    claims["payee_account"] = "AC-RING"
    claims.loc[claims.index[2], "payee_account"] = "AC-ALONE"
    claims.loc[claims.index[2], "claimant_phone"] = claims["claimant_phone"].iloc[0]
    for i in range(3):
        score(store, claims.iloc[[i]], decision("STANDARD_REVIEW"))
    ring = store.case(claims["claim_id"].iloc[0], now=NOW)["ring"]
    shares = {r["claim_id"]: r["shares"] for r in ring}
    assert shares[claims["claim_id"].iloc[1]][0] == "payee_account"
    assert "claimant_phone" in shares[claims["claim_id"].iloc[2]]


def test_two_decisions_for_one_claim_in_one_call_open_one_case_that_follows_the_later(store):
    later = {"respond_by": "2026-11-27T09:00:00Z", "resolve_by": "2026-11-29T09:00:00Z"}
    rows = [{"id": 9001, "claim_id": "TWICE-1", "decision": "STANDARD_REVIEW", "fraud_probability": 0.1,
             "anomaly_score": 0.2, "scored_at": NOW, "response": {"deadlines": later}},
            {"id": 9002, "claim_id": "TWICE-1", "decision": "SIU_REFERRAL", "fraud_probability": 0.7,
             "anomaly_score": 0.3, "scored_at": NOW, "response": {"deadlines": later}}]
    with store.engine.begin() as conn:
        store.review.open_or_follow(conn, rows)
    cases = [c for c in store.queue(now=NOW) if c["claim_id"] == "TWICE-1"]
    assert len(cases) == 1
    assert (cases[0]["decision"], cases[0]["decision_id"], cases[0]["fraud_probability"]) == ("SIU_REFERRAL", 9002, 0.7)


def test_rescoring_a_batch_moves_each_open_case_to_its_own_newest_decision(store, typed_claims):
    claims = typed_claims.iloc[330:334]
    first = decision("STANDARD_REVIEW", 0.1, "2026-11-26T10:00:00Z", "2026-11-28T10:00:00Z")
    store.record(claims, [first] * 4, "1")
    later = [decision(kind, p, "2026-11-27T10:00:00Z", "2026-11-29T10:00:00Z")
             for kind, p in [("SIU_REFERRAL", 0.7), ("ENHANCED_REVIEW", 0.2), ("AUTO_APPROVE", 0.01),
                             ("STANDARD_REVIEW", 0.15)]]
    store.record(claims, later, "2")
    ids = claims["claim_id"].tolist()
    cases = {c["claim_id"]: c for c in store.queue(now=NOW) if c["claim_id"] in ids}
    assert len(cases) == 4  # one case per claim, none opened twice
    got = {i: (cases[i]["decision"], cases[i]["fraud_probability"]) for i in ids}
    # An automatic approval on re-scoring does not close a case a person holds: it keeps its decision.
    assert got == {ids[0]: ("SIU_REFERRAL", 0.7), ids[1]: ("ENHANCED_REVIEW", 0.2),
                   ids[2]: ("STANDARD_REVIEW", 0.1), ids[3]: ("STANDARD_REVIEW", 0.15)}
    assert {cases[i]["respond_by"] for i in ids} == {datetime(2026, 11, 26, 10)}  # the clock started at first notice
    d = store.decisions.c
    with store.engine.connect() as conn:
        newest = dict(conn.execute(sa.select(d.claim_id, sa.func.max(d.id)).where(d.claim_id.in_(ids))
                                   .group_by(d.claim_id)).all())
    assert [cases[i]["decision_id"] == newest[i] for i in ids] == [True, True, False, True]
