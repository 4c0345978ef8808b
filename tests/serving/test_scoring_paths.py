"""One claim, and any few claims, get their features claim by claim; they must answer exactly as the
vectorised batch path does (whose features the store and feature tests hold to the offline pipeline)."""

import asyncio
import copy
import sqlite3
import threading
import time
from datetime import datetime

import pytest
import sqlalchemy as sa

from models.config import Deadlines
from models.pyfunc import wire_format
from serving.grouping import ClaimGroups
from serving.schemas import BatchResult, ClaimError, Decision
from serving.scoring import Scorer
from serving.store import ClaimStore
from training.generate import generate_claims

NOW = datetime(2026, 11, 25, 12, 0, 0)


def _as_json(frame, bundle) -> list[dict]:
    wire = wire_format(frame, bundle)
    records = wire.astype(object).where(wire.notna(), None).to_dict(orient="records")
    return [{k: v for k, v in r.items() if v is not None} for r in records]


def _bad_variants(claim: dict) -> list[dict]:
    """Each a realistic mistake a claims system could send."""
    changes = [
        {"claim_amount": -5.0}, {"claim_amount": 0}, {"claim_amount": "12x"}, {"claim_amount": True},
        {"loss_date": "3000-01-01"}, {"loss_date": "2025-02-30"}, {"loss_date": "2025-03-01T10:00:00Z"},
        {"report_date": "yesterday"}, {"report_date": "2099-01-01T00:00:00Z"}, {"line_of_business": "marine"},
        {"witnesses": 2.5}, {"witnesses": -1}, {"claimant_age": 1e300}, {"police_report": "maybe"},
        {"claim_id": ""}, {"policy_id": "x" * 10_000}, {"colour": "red"}, {"loss_hour": 24},
    ]
    out = [dict(claim, **change) for change in changes]
    missing = dict(claim)
    del missing["policy_id"], missing["report_date"]
    return out + [missing, {}]


@pytest.fixture(scope="module")
def scorers(fitted_run, typed_claims, tmp_path_factory):
    """Two scorers on one bundle over two identically seeded stores; the second makes features
    the vectorised way for any number of claims, the first claim by claim below 48."""
    home = tmp_path_factory.mktemp("paths")
    pair = []
    for name in ("fast", "frame"):
        store = ClaimStore(f"sqlite:///{home / name}.db")
        store.seed(typed_claims)
        pair.append(Scorer(fitted_run.bundle, "1", store, Deadlines()))
    pair[1].record_rows_below = 0
    return pair


def test_one_claim_answers_exactly_as_the_batch_path(scorers, fitted_run, typed_claims):
    fast, frame = scorers
    new = generate_claims(2_000, seed=21).sort_values("report_date").iloc[-120:].reset_index(drop=True)
    # Reuse known entities so history features are non-trivial: repeat claimants, shared payees.
    known = typed_claims.tail(500)
    new.loc[::3, "claimant_id"] = known["claimant_id"].iloc[:len(new.loc[::3])].to_numpy()
    new.loc[1::5, "payee_account"] = known["payee_account"].iloc[100:100 + len(new.loc[1::5])].to_numpy()
    new.loc[2::7, "provider_id"] = known["provider_id"].iloc[200:200 + len(new.loc[2::7])].to_numpy()
    claims = _as_json(new, fitted_run.bundle)
    decided = set()
    for claim in claims:
        for record in [claim] + _bad_variants(claim)[:3]:
            one = fast.score([copy.deepcopy(record)], explain=True, now=NOW).results[0]
            other = frame._score_many([copy.deepcopy(record)], explain=True, now=NOW).results[0]
            assert one == other, record
            _conforms(one)
            decided.add(one.get("decision"))
    for record in _bad_variants(claims[0]):
        one = fast.score([copy.deepcopy(record)], now=NOW).results[0]
        other = frame._score_many([copy.deepcopy(record)], explain=True, now=NOW).results[0]
        assert "errors" in one and one == other, record
    assert len(decided - {None}) >= 2  # the comparison covered more than one outcome
    batch = fast.score(claims[:20] + _bad_variants(claims[20])[:2], now=NOW)
    BatchResult.model_validate({"results": batch.results, "n_scored": 20, "n_errors": 2}, strict=True)
    for result in batch.results + fast.score(claims[30:40], explain=False, now=NOW).results:
        _conforms(result)


def _conforms(result: dict) -> None:
    """The service sends results as built, so each must be exactly its declared response model."""
    model = ClaimError if "errors" in result else Decision
    parsed = model.model_validate(result, strict=True)
    assert parsed.model_dump(mode="json") == result, "a key the response model does not declare, or a missing one"


def _new_claims(bundle, typed_claims, prefix: str, n: int, seed: int) -> list[dict]:
    """`n` claims reported after the seeded history, with ids of their own; every third reuses a
    known claimant and the sixth (if any) that of the first, so history features count something."""
    new = generate_claims(500, seed=seed).sort_values("report_date").iloc[-n:].reset_index(drop=True)
    new["claim_id"] = [f"{prefix}-{i}" for i in range(n)]
    new.loc[::3, "claimant_id"] = typed_claims["claimant_id"].tail(n).iloc[:len(new.loc[::3])].to_numpy()
    if n > 5:
        new.loc[5, "claimant_id"] = new.loc[0, "claimant_id"]
    return _as_json(new, bundle)


def test_single_claims_scored_together_answer_as_a_batch_and_a_retry_follows_its_first_copy(
        scorers, fitted_run, typed_claims):
    fast, frame = scorers
    claims = _new_claims(fitted_run.bundle, typed_claims, "TOGETHER", 8, seed=33)
    bad = dict(claims[7], claim_id="TOGETHER-bad", claim_amount=-5.0)
    retry = dict(claims[0], claim_amount=claims[0]["claim_amount"] + 100.0)  # the same claim, sent again
    arrived = claims[:4] + [bad] + claims[4:6] + [retry] + claims[6:8]
    before = fast.store.count_claims()

    got = fast.score_each(copy.deepcopy(arrived), now=NOW)

    # What the batch path answers: the claims before the retry as one batch, then the retry and
    # the claims after it (a batch would reject the repeated claim_id instead).
    first = frame.score(copy.deepcopy(claims[:6]), now=NOW).results
    second = frame.score(copy.deepcopy([retry] + claims[6:8]), now=NOW).results
    error = frame.score([copy.deepcopy(bad)], now=NOW).results
    assert got == first[:4] + error + first[4:6] + second
    assert got[7]["claim_id"] == "TOGETHER-0" and "decision" in got[7]
    assert [d["response"]["scores"] for d in fast.store.decisions_for("TOGETHER-0")] == \
        [got[0]["scores"], got[7]["scores"]]
    assert fast.store.count_claims() == before + 8  # the retried claim is kept once


def _arrive_while_the_first_is_scored(score_each, claims: list[dict], gate: threading.Event, cancel: int | None = None):
    """The first claim finds the scorer idle; the others arrive while it is held at `gate`."""
    async def arrive():
        grouping = ClaimGroups(score_each, max_group=4)
        first = asyncio.create_task(grouping.score(claims[0]))
        await asyncio.sleep(0.2)  # the first claim is being scored, alone
        later = [asyncio.create_task(grouping.score(c)) for c in claims[1:]]
        while grouping.waiting < len(later):
            await asyncio.sleep(0.01)
        if cancel is not None:
            later[cancel - 1].cancel()  # its caller went away before its group started
            await asyncio.sleep(0)
        gate.set()
        return await asyncio.gather(first, *later, return_exceptions=True)

    return asyncio.run(arrive())


def test_claims_arriving_while_others_are_scored_wait_and_go_together(scorers, fitted_run, typed_claims):
    fast, _ = scorers
    claims = _new_claims(fitted_run.bundle, typed_claims, "GROUPED", 8, seed=34)
    gate, groups = threading.Event(), []

    def score_each(records):  # the real scorer, held until the test lets the first group go
        gate.wait(timeout=60)
        groups.append([r["claim_id"] for r in records])
        if "GROUPED-6" in groups[-1]:
            raise ValueError("a claim the scorer cannot handle")
        return fast.score_each(records, now=NOW)

    answers = _arrive_while_the_first_is_scored(score_each, claims, gate, cancel=3)
    # At most 4 together; the cancelled caller's claim is never scored; the failed group's claims
    # are tried again alone, so only the claim at fault fails.
    assert groups == [["GROUPED-0"], ["GROUPED-1", "GROUPED-2", "GROUPED-4", "GROUPED-5"],
                      ["GROUPED-6", "GROUPED-7"], ["GROUPED-6"], ["GROUPED-7"]]
    scored = [0, 1, 2, 4, 5, 7]
    assert [answers[i]["claim_id"] for i in scored] == [f"GROUPED-{i}" for i in scored]
    assert all("decision" in answers[i] for i in scored)
    assert isinstance(answers[3], asyncio.CancelledError)
    assert fast.store.decisions_for("GROUPED-3") == []  # nothing was acknowledged, nothing kept
    assert isinstance(answers[6], ValueError) and str(answers[6]) == "a claim the scorer cannot handle"


def test_when_the_database_fails_a_group_every_caller_is_told_once(scorers, fitted_run, typed_claims):
    fast, _ = scorers
    claims = _new_claims(fitted_run.bundle, typed_claims, "DBDOWN", 4, seed=35)
    gate, groups = threading.Event(), []

    def score_each(records):
        gate.wait(timeout=60)
        groups.append([r["claim_id"] for r in records])
        if len(records) > 1:
            raise sa.exc.OperationalError("COMMIT", {}, Exception("disk I/O error"))
        return fast.score_each(records, now=NOW)

    answers = _arrive_while_the_first_is_scored(score_each, claims, gate)
    assert groups == [["DBDOWN-0"], ["DBDOWN-1", "DBDOWN-2", "DBDOWN-3"]]  # not tried again claim by claim
    assert "decision" in answers[0]
    assert all(isinstance(a, sa.exc.OperationalError) and "disk I/O error" in str(a) for a in answers[1:])


def test_a_claim_waits_for_another_writer_longer_than_the_drivers_five_seconds(scorers, fitted_run, typed_claims):
    fast, _ = scorers
    claim = _new_claims(fitted_run.bundle, typed_claims, "WAITS", 1, seed=36)[0]
    other = sqlite3.connect(fast.store.engine.url.database, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the database's write lock for 6 s
    threading.Timer(6.0, other.rollback).start()
    started = time.monotonic()
    answer = fast.score([claim], now=NOW).results[0]
    assert "decision" in answer and time.monotonic() - started >= 5.5
    assert [d["decision"] for d in fast.store.decisions_for("WAITS-0")] == [answer["decision"]]
    other.close()


def test_every_error_names_its_claim_and_quotes_the_value_sent(scorers, fitted_run, typed_claims):
    # The 422 of /score (claims scored one by one, `score_each`) and a batch's error entries must
    # say which claim and what it sent: a claims system sending a thousand claims cannot fix a
    # reason without its value, nor find the claim without its id.
    fast, _ = scorers
    good, bad, worse = _new_claims(fitted_run.bundle, typed_claims, "ERRORS", 3, seed=37)
    bad.update(claim_amount=-5.0)
    worse.update(line_of_business="marine", witnesses=2.5, report_date="yesterday", colour="red")
    del worse["policy_id"]
    nameless = dict(bad, claim_amount="12x")
    del nameless["claim_id"]
    expected_bad = {"claim_id": "ERRORS-1", "errors": [
        {"field": "claim_amount", "value": "-5.0", "reason": "must be greater than 0"}]}
    expected_worse = {"claim_id": "ERRORS-2", "errors": [
        {"field": "policy_id", "value": None, "reason": "is required but missing"},
        {"field": "line_of_business", "value": '"marine"', "reason": "must be one of auto, property"},
        {"field": "report_date", "value": '"yesterday"',
         "reason": "must be an ISO 8601 date-time, e.g. 2025-03-01T14:30:00Z"},
        {"field": "witnesses", "value": "2.5", "reason": "must be a whole number"},
        {"field": "colour", "value": None, "reason": "is not a field of the claim record"}]}
    expected_nameless = {"claim_id": None, "errors": [
        {"field": "claim_id", "value": None, "reason": "is required but missing"},
        {"field": "claim_amount", "value": '"12x"', "reason": "must be a number"}]}

    batch = fast.score([good, bad, worse, nameless], explain=False, now=NOW).results
    assert "decision" in batch[0]
    assert batch[1:] == [expected_bad, expected_worse, expected_nameless]
    one_by_one = fast.score_each([copy.deepcopy(bad)], now=NOW) + fast.score_each([copy.deepcopy(worse)], now=NOW)
    assert one_by_one == [expected_bad, expected_worse]
    for result in batch[1:] + one_by_one:
        _conforms(result)
