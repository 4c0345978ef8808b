"""Integrity under load and under attack (issue #13): one outcome and one taker per claim however
many replicas race for it, who wrote what, and a ledger that covers the claim and its case.

Every race runs on SQLite and PostgreSQL, each thread with its own `ClaimStore` on the same
database, as replicas of the service would."""

import logging
import threading

import pytest
import sqlalchemy as sa

from serving.ledger import LedgerEntry
from serving.review import RESOLVED, RESPONDED, UNIQUE_OUTCOME_INDEX, ReviewError
from serving.schemas import Feedback
from serving.store import ClaimStore
from tests.serving.test_store import decision

REPLICAS = 6
ROUNDS = 4


@pytest.fixture
def store(store_url, typed_claims):
    store = ClaimStore(store_url)
    store.seed(typed_claims.head(20))
    return store


@pytest.fixture
def replicas(store):
    replicas = [ClaimStore(store.url) for _ in range(REPLICAS)]
    yield replicas
    for replica in replicas:
        replica.engine.dispose()


def race(calls) -> tuple[list, list]:
    """Run the calls at once, each on its own thread: (results of those that succeeded, errors)."""
    start = threading.Barrier(len(calls))
    results, errors = [None] * len(calls), [None] * len(calls)

    def run(i, call):
        start.wait()
        try:
            results[i] = call()
        except Exception as e:  # noqa: BLE001 - every failure is judged by the test
            errors[i] = e

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors


def assert_only_conflicts(errors) -> None:
    """A lost race is a 409 with a reason, never a database error or a 500."""
    for e in errors:
        if e is not None:
            assert isinstance(e, ReviewError) and e.status == 409, repr(e)


def outcomes_of(store, claim_id) -> list:
    o = store.review.outcomes.c
    with store.engine.connect() as conn:
        return conn.execute(sa.select(store.review.outcomes).where(o.claim_id == claim_id)).all()


def test_concurrent_outcomes_for_one_claim_store_exactly_one(store, replicas, typed_claims):
    for n in range(ROUNDS):
        claim = typed_claims.iloc[[100 + n]]
        claim_id = claim["claim_id"].iloc[0]
        store.record(claim, [decision("STANDARD_REVIEW")], "1")
        outcomes = ["denied", "paid_as_filed", "confirmed_fraud", "not_fraud", "paid_adjusted", "denied"]
        results, errors = race([lambda r=r, i=i: r.record_outcome(claim_id, outcomes[i], None, by=f"adjuster.{i}",
                                                                  via=f"review page adjuster.{i}")
                                for i, r in enumerate(replicas)])
        assert_only_conflicts(errors)
        won = [i for i, r in enumerate(results) if r is not None]
        assert len(won) == 1, errors
        assert any("already recorded" in str(e) or "resolved" in str(e) for e in errors if e)
        kept = outcomes_of(store, claim_id)
        assert [(o.outcome, o.recorded_by) for o in kept] == [(outcomes[won[0]], f"adjuster.{won[0]}")]
        case = store.case(claim_id)["case"]
        assert case["status"] == RESOLVED and case["assignee"] == f"adjuster.{won[0]}"
    assert store.verify_ledger().ok


def test_concurrent_outcomes_for_a_claim_without_a_case_store_exactly_one(store, replicas, typed_claims):
    """An auto-approved claim has no case to resolve: the unique outcome per claim decides alone."""
    for n in range(ROUNDS):
        claim = typed_claims.iloc[[110 + n]]
        claim_id = claim["claim_id"].iloc[0]
        store.record(claim, [decision("AUTO_APPROVE")], "1")
        results, errors = race([lambda r=r, i=i: r.record_outcome(claim_id, "confirmed_fraud", f"from {i}",
                                                                  by="claims-system", via="api key claims-system")
                                for i, r in enumerate(replicas)])
        assert_only_conflicts(errors)
        assert sum(r is not None for r in results) == 1
        assert len(outcomes_of(store, claim_id)) == 1
    assert store.verify_ledger().ok


def test_concurrent_takers_of_one_case_leave_one_assignee(store, replicas, typed_claims):
    for n in range(ROUNDS):
        claim = typed_claims.iloc[[120 + n]]
        claim_id = claim["claim_id"].iloc[0]
        store.record(claim, [decision("SIU_REFERRAL", 0.8)], "1")
        results, errors = race([lambda r=r, i=i: r.respond(claim_id, f"adjuster.{i}", via=f"api key key-{i}")
                                for i, r in enumerate(replicas)])
        assert_only_conflicts(errors)
        won = [i for i, r in enumerate(results) if r is not None]
        assert len(won) == 1
        assert all(f"taken by adjuster.{won[0]}" in str(e) for e in errors if e)  # who, and when
        case = store.case(claim_id)["case"]
        assert (case["status"], case["assignee"], case["changed_by"]) == \
            (RESPONDED, f"adjuster.{won[0]}", f"api key key-{won[0]}")
    assert store.verify_ledger().ok


def test_takers_and_outcomes_racing_for_one_case_agree_on_who_holds_it(store, replicas, typed_claims):
    """Half the replicas take the case, half record its outcome: one outcome; a taker wins only
    before the resolution, and the resolution then keeps that taker as the assignee."""
    for n in range(ROUNDS):
        claim = typed_claims.iloc[[130 + n]]
        claim_id = claim["claim_id"].iloc[0]
        store.record(claim, [decision("STANDARD_REVIEW")], "1")
        calls = [(lambda r=r, i=i: r.respond(claim_id, f"taker.{i}", via=f"review page taker.{i}")) if i % 2 else
                 (lambda r=r, i=i: r.record_outcome(claim_id, "denied", None, by=f"closer.{i}",
                                                    via=f"api key closer.{i}"))
                 for i, r in enumerate(replicas)]
        results, errors = race(calls)
        assert_only_conflicts(errors)
        took = [i for i, r in enumerate(results) if r is not None and i % 2]
        closed = [i for i, r in enumerate(results) if r is not None and not i % 2]
        assert len(closed) == 1 and len(took) <= 1
        assert len(outcomes_of(store, claim_id)) == 1
        case = store.case(claim_id)["case"]
        assert case["status"] == RESOLVED
        assert case["assignee"] == (f"taker.{took[0]}" if took else f"closer.{closed[0]}")
    assert store.verify_ledger().ok


def test_outcomes_and_cases_keep_the_identity_that_sent_them(store, typed_claims):
    ids = typed_claims["claim_id"].iloc[140:142].tolist()
    store.record(typed_claims.iloc[140:142], [decision("STANDARD_REVIEW")] * 2, "1")
    taken = store.respond(ids[0], "adjuster.ann", via="api key claims-system")
    assert (taken["assignee"], taken["changed_by"]) == ("adjuster.ann", "api key claims-system")
    row = store.record_outcome(ids[0], "denied", None, by="ann", via="review page ann")
    assert (row["recorded_by"], row["recorded_via"]) == ("ann", "review page ann")
    assert store.case(ids[0])["case"]["changed_by"] == "review page ann"
    assert store.case(ids[1])["case"]["changed_by"] is None  # opened by scoring: no person's identity
    with pytest.raises(TypeError):
        store.record_outcome(ids[1], "denied", None, "ann")  # who sent it is required, by name


def test_feedback_may_name_only_the_api_key_that_sends_it():
    assert Feedback(claim_id="C-1", outcome="denied").problems("tests") == []
    assert Feedback(claim_id="C-1", outcome="denied", recorded_by="tests").problems("tests") == []
    assert Feedback(claim_id="C-1", outcome="denied", recorded_by="ann").problems("tests") == [
        {"field": "recorded_by", "value": "ann", "reason": "must be this API key's name ('tests') or left out: "
                                                          "outcomes are recorded under the identity that sent them"}]
    assert Feedback(claim_id="C-1\u202e", outcome="denied").problems("tests") == [
        {"field": "claim_id", "value": "C-1\u202e", "reason": "contains a format character (U+202E)"}]


def test_a_claim_with_its_outcome_gets_no_new_case_when_scored_again(store, typed_claims):
    claim = typed_claims.iloc[[150]]
    claim_id = claim["claim_id"].iloc[0]
    store.record(claim, [decision("STANDARD_REVIEW")], "1")
    store.record_outcome(claim_id, "paid_as_filed", None, by="ann", via="review page ann")
    store.record(claim, [decision("SIU_REFERRAL", 0.9)], "2")  # re-sent by the claims system
    assert [c for c in store.queue() if c["claim_id"] == claim_id] == []
    assert store.case(claim_id)["case"]["status"] == RESOLVED
    assert len(store.decisions_for(claim_id)) == 2 and store.verify_ledger().ok


# --- a store from before outcomes were unique per claim -----------------------------------------

def _old_outcomes_table(url: str, rows: list[tuple[str, str]]) -> None:
    """The outcomes table as earlier versions created it (no recorded_via, claim_id not unique)."""
    engine = sa.create_engine(url)
    key = "SERIAL PRIMARY KEY" if engine.dialect.name == "postgresql" else "INTEGER PRIMARY KEY"
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE outcomes (id {key}, claim_id VARCHAR(128) NOT NULL, case_id INTEGER, "
                             "outcome VARCHAR(32) NOT NULL, note TEXT, recorded_by VARCHAR(128) NOT NULL, "
                             "recorded_at TIMESTAMP NOT NULL)")
        conn.exec_driver_sql("CREATE INDEX ix_outcomes_claim_id ON outcomes (claim_id)")
        for claim_id, outcome in rows:
            conn.execute(sa.text("INSERT INTO outcomes (claim_id, outcome, recorded_by, recorded_at) "
                                 "VALUES (:c, :o, 'ann', '2026-01-05 10:00:00')"), {"c": claim_id, "o": outcome})
    engine.dispose()


def _indexes(store) -> set[str]:
    return {ix["name"] for ix in sa.inspect(store.engine).get_indexes("outcomes")}


def test_an_old_store_with_two_outcomes_for_a_claim_serves_warns_and_verify_names_the_claim(
        store_url, typed_claims, caplog):
    twice, once = typed_claims["claim_id"].iloc[160], typed_claims["claim_id"].iloc[161]
    _old_outcomes_table(store_url, [(twice, "denied"), (once, "denied"), (twice, "paid_as_filed")])
    with caplog.at_level(logging.WARNING, logger="claimtriage.review"):
        store = ClaimStore(store_url)
    assert "more than one outcome" in caplog.text
    assert UNIQUE_OUTCOME_INDEX not in _indexes(store)
    assert "recorded_via" in {c["name"] for c in sa.inspect(store.engine).get_columns("outcomes")}
    store.record(typed_claims.iloc[160:163], [decision("STANDARD_REVIEW")] * 3, "1")  # it serves on
    with pytest.raises(ReviewError, match="already recorded") as third:
        store.record_outcome(twice, "denied", None, by="bob", via="review page bob")
    assert third.value.status == 409
    store.record_outcome(typed_claims["claim_id"].iloc[162], "denied", None, by="bob", via="review page bob")
    report = store.verify_ledger()
    assert not report.ok
    assert any(p.startswith(f"claim {twice} has 2 outcomes (ids 1, 3)") for p in report.problems), report.summary()
    assert not any(f"claim {once} has" in p for p in report.problems)
    with store.engine.begin() as conn:  # resolved as verify_ledger's docstring says: one outcome stands
        conn.exec_driver_sql("DELETE FROM outcomes WHERE id = 3")
    store.engine.dispose()
    reopened = ClaimStore(store_url)
    assert UNIQUE_OUTCOME_INDEX in _indexes(reopened)
    assert not any("outcomes (ids" in p for p in reopened.verify_ledger().problems)


def test_an_old_store_with_one_outcome_per_claim_gets_the_unique_index_on_opening(store_url, typed_claims):
    _old_outcomes_table(store_url, [(typed_claims["claim_id"].iloc[i], "denied") for i in range(3)])
    store = ClaimStore(store_url)
    assert UNIQUE_OUTCOME_INDEX in _indexes(store)
    with store.engine.begin() as conn, pytest.raises(sa.exc.IntegrityError):
        conn.execute(sa.text("INSERT INTO outcomes (claim_id, outcome, recorded_by, recorded_at) "
                             "VALUES (:c, 'denied', 'x', '2026-01-06 10:00:00')"), {"c": typed_claims["claim_id"].iloc[0]})


# --- the ledger covers the claim and the case ---------------------------------------------------

@pytest.fixture
def worked(store, typed_claims):
    """A store as the service leaves it: 20 claims seeded from training, 12 scored (one of them twice,
    with a new amount), cases opened, followed, taken and resolved, and outcomes."""
    scored = typed_claims.iloc[200:212]
    store.record(scored.iloc[:8], [decision("STANDARD_REVIEW")] * 4 + [decision("AUTO_APPROVE")] * 4, "1")
    for i in range(8, 12):
        store.record(scored.iloc[[i]], [decision("SIU_REFERRAL", 0.7)], "1")
    again = scored.iloc[[1]].assign(claim_amount=scored["claim_amount"].iloc[1] * 3)
    store.record(again, [decision("ENHANCED_REVIEW", 0.4)], "2")  # the case follows; the claim is replaced
    ids = scored["claim_id"].tolist()
    store.respond(ids[0], "adjuster.ann", via="review page ann")
    store.respond(ids[8], "adjuster.bob", via="api key claims-system")
    store.record_outcome(ids[8], "confirmed_fraud", "ring", by="adjuster.bob", via="review page bob")
    store.record_outcome(ids[5], "paid_as_filed", None, by="tests", via="api key tests")  # auto-approved
    store.ids = ids
    return store


def test_a_worked_store_verifies_with_its_uncovered_claims_counted_in_one_line(worked):
    report = worked.verify_ledger()
    assert report.ok, report.summary()
    assert report.rows_checked == {"claim": 12, "case": 8, "decision": 13, "outcome": 2}
    # 13 decisions, 8 cases opened, 1 followed, 2 taken, 1 resolved, 2 outcomes
    assert report.n_entries == 13 + 8 + 1 + 2 + 1 + 2
    lines = [line for line in report.summary().splitlines() if "not covered" in line]
    assert lines == ["not covered: 20 claims seeded from training or last scored before claim digests were kept"]


TAMPERING = {
    # name: (SQL given the claim id, the problem verify must name)
    "claim amount raised": ("UPDATE claims SET claim_amount = claim_amount * 10 WHERE claim_id = '{id}'",
                            "claim {id} was altered after it was scored (decision {decision})"),
    "claim paid elsewhere": ("UPDATE claims SET payee_account = 'AC-MALLORY' WHERE claim_id = '{id}'",
                             "claim {id} was altered after it was scored (decision {decision})"),
    "claim deleted": ("DELETE FROM claims WHERE claim_id = '{id}'",
                      "claim {id} is gone: deleted after it was scored (decision {decision})"),
    "case status changed": ("UPDATE cases SET status = CASE WHEN status = 'open' THEN 'resolved' ELSE 'open' END "
                            "WHERE claim_id = '{id}'",
                      "entry {entry} (case {case}, claim {id}): the case was altered after it was recorded"),
    "case reassigned": ("UPDATE cases SET assignee = 'mallory' WHERE claim_id = '{id}'",
                        "entry {entry} (case {case}, claim {id}): the case was altered after it was recorded"),
    "case opened behind the ledger's back": (
        "INSERT INTO cases (claim_id, decision_id, decision, fraud_probability, anomaly_score, status, opened_at, "
        "respond_by, resolve_by) SELECT claim_id, decision_id, decision, fraud_probability, anomaly_score, 'open', "
        "opened_at, respond_by, resolve_by FROM cases WHERE claim_id = '{id}'",
        "case {new_case} (claim {id}) has no ledger entry: written behind the ledger's back"),
}


@pytest.mark.parametrize("tampering", list(TAMPERING))
@pytest.mark.parametrize("victim", [1, 8], ids=["followed case", "resolved case"])
def test_altering_a_scored_claim_or_its_case_is_named(worked, tampering, victim):
    sql, expected = TAMPERING[tampering]
    claim_id = worked.ids[victim]
    case = worked.case(claim_id)["case"]
    lg = worked.ledger.table.c
    with worked.engine.connect() as conn:
        entry = conn.execute(sa.select(sa.func.max(lg.seq)).where(lg.kind == "case", lg.ref == str(case["id"]))).scalar()
        newest = max(d["id"] for d in worked.decisions_for(claim_id))
        new_case = conn.execute(sa.text("SELECT max(id) + 1 FROM cases")).scalar()
    with worked.engine.begin() as conn:
        conn.exec_driver_sql(sql.format(id=claim_id))
    report = worked.verify_ledger()
    assert not report.ok
    assert report.problems == [expected.format(id=claim_id, decision=newest, entry=entry, case=case["id"],
                                               new_case=new_case)], report.summary()


def test_a_case_entry_is_checked_against_the_newest_version_only(worked):
    """The resolved case has three entries (opened, taken, resolved): putting the row back as it was
    when taken matches an entry, but not the newest one."""
    claim_id = worked.ids[8]
    with worked.engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE cases SET status = 'responded', resolved_at = NULL, "
                             f"changed_by = 'api key claims-system' WHERE claim_id = '{claim_id}'")
    report = worked.verify_ledger()
    assert report.n_problems == 1 and "the case was altered" in report.problems[0], report.summary()


def test_a_store_from_before_claims_and_cases_were_entered_verifies_and_counts_what_is_not_covered(
        store, typed_claims):
    """Decisions and outcomes entered as earlier versions did (no claim_digest, no recorded_via),
    cases never entered: after opening with this version, verify passes and counts the claims and
    cases it cannot check; what is changed from then on is covered."""
    ids = typed_claims["claim_id"].iloc[300:306].tolist()
    store.record(typed_claims.iloc[300:306], [decision("STANDARD_REVIEW")] * 6, "1")
    store.record_outcome(ids[0], "denied", None, by="ann", via="review page ann")
    d, o = store.decisions, store.review.outcomes
    with store.engine.begin() as conn:  # rewrite as the earlier version wrote it
        conn.execute(store.ledger.table.delete())
        entries = [LedgerEntry.of("decision", {k: v for k, v in r._mapping.items() if k != "claim_digest"})
                   for r in conn.execute(sa.select(d).order_by(d.c.id))]
        entries += [LedgerEntry.of("outcome", {k: v for k, v in r._mapping.items() if k != "recorded_via"})
                    for r in conn.execute(sa.select(o).order_by(o.c.id))]
        store.ledger.append(conn, entries)
        conn.exec_driver_sql(f"DROP INDEX {UNIQUE_OUTCOME_INDEX}")
        for table, column in (("decisions", "claim_digest"), ("outcomes", "recorded_via"), ("cases", "changed_by")):
            conn.exec_driver_sql(f"ALTER TABLE {table} DROP COLUMN {column}")
    store.engine.dispose()

    upgraded = ClaimStore(store.url)
    report = upgraded.verify_ledger()
    assert report.ok, report.summary()
    assert report.predating == {"case": 6} and report.rows_checked["claim"] == 0
    assert "not covered: 26 claims" in report.summary() and "6 cases" in report.summary()
    upgraded.respond(ids[1], "adjuster.ann", via="review page ann")  # an old case changes: entered from now on
    upgraded.record(typed_claims.iloc[[310]], [decision("STANDARD_REVIEW")], "2")
    report = upgraded.verify_ledger()
    assert report.ok and report.predating == {"case": 5} and report.rows_checked["claim"] == 1, report.summary()
    with upgraded.engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE cases SET assignee = 'mallory' WHERE claim_id = '{ids[1]}'")
        conn.exec_driver_sql(f"UPDATE decisions SET claim_digest = NULL WHERE claim_id = '{typed_claims['claim_id'].iloc[310]}'")
    problems = upgraded.verify_ledger().problems
    assert len(problems) == 2 and all("was altered after it was recorded" in p for p in problems), problems


# --- over HTTP --------------------------------------------------------------------------------

@pytest.mark.slow
def test_over_http_feedback_is_recorded_once_and_under_the_key_that_sent_it(service):
    """Six POST /feedback at once for one claim: one 201, five 409s. recorded_by may only repeat
    the API key's name; left out, it is the key's name; the outcome keeps the key as recorded_via."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.serving.client import as_json, get, post

    claims = as_json(service["new"].iloc[380:383], service["bundle"])
    ids = [f"INTEGRITY-{i}" for i in range(3)]
    for claim, claim_id in zip(claims, ids):  # over the automatic-approval cap: each needs a person
        claim.update(claim_id=claim_id, claim_amount=90_000.0, coverage_limit=500_000.0)
    scored = post(service, "/score_batch", {"claims": claims, "explain": False})
    assert scored.status_code == 200 and scored.json()["n_scored"] == 3, scored.text

    wrong = post(service, "/feedback", {"claim_id": ids[0], "outcome": "denied", "recorded_by": "adjuster.ann"})
    assert wrong.status_code == 422
    assert wrong.json()["errors"] == [{"field": "recorded_by", "value": "adjuster.ann",
                                       "reason": "must be this API key's name ('tests') or left out: outcomes are "
                                                 "recorded under the identity that sent them"}]
    with ThreadPoolExecutor(6) as pool:
        replies = list(pool.map(lambda i: post(service, "/feedback", {"claim_id": ids[0], "outcome": "denied",
                                                                      "note": f"sender {i}"}), range(6)))
    assert sorted(r.status_code for r in replies) == [201] + [409] * 5, [r.text for r in replies]
    [done] = [r.json() for r in replies if r.status_code == 201]
    assert (done["recorded_by"], done["recorded_via"]) == ("tests", "api key tests")
    assert get(service, f"/cases/{ids[0]}").json()["outcome"]["note"] == done["note"]

    with ThreadPoolExecutor(6) as pool:
        replies = list(pool.map(lambda i: post(service, f"/cases/{ids[1]}/respond", {"by": f"adjuster.{i}"}), range(6)))
    assert sorted(r.status_code for r in replies) == [200] + [409] * 5, [r.text for r in replies]
    [taken] = [r.json() for r in replies if r.status_code == 200]
    assert taken["changed_by"] == "api key tests"
    assert get(service, f"/cases/{ids[1]}").json()["case"]["assignee"] == taken["assignee"]
    same = post(service, "/feedback", {"claim_id": ids[2], "outcome": "paid_as_filed", "recorded_by": "tests"})
    assert same.status_code == 201 and same.json()["recorded_via"] == "api key tests"
