"""Live metrics on /metrics (serving/live_metrics.py), read with the API key from a real server that has a
challenger in the champion's shadow (tests/serving/test_shadow.py's `shadowed`): decisions by decision
and version, score histograms, overdue cases from the store, and the shadow's agreement."""

from __future__ import annotations

import time
from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa

from tests.serving.client import as_json
from serving.clock import as_datetime
from tests.serving import test_shadow
from tests.serving.test_shadow import metric, rows, serve, stop, wait_for_shadow_rows

pytestmark = pytest.mark.slow
registry = test_shadow.registry  # the champion and challenger, trained once per test session


@pytest.fixture(scope="module")
def shadowed(registry, free_port, wait_until_ready):
    """The champion served with the challenger in its shadow; the overdue gauge counted twice a second."""
    served = serve(registry, "live-metrics", "[serving]\noverdue_refresh_seconds = 0.5\n", free_port,
                   wait_until_ready)
    yield served
    stop(served)


def scrape(served: dict) -> str:
    reply = httpx.get(served["base"] + "/metrics", headers=served["auth"], timeout=30)
    assert reply.status_code == 200
    return reply.text


def test_metrics_need_the_api_key(shadowed):
    assert httpx.get(shadowed["base"] + "/metrics", timeout=30).status_code == 401


def test_each_decision_counts_once_under_its_decision_and_model_version(registry, shadowed):
    version = registry["versions"]["champion"]
    before = scrape(shadowed)
    claim = dict(as_json(registry["new"].iloc[[120]], registry["champion"])[0], claim_id="LIVE-1")
    answer = httpx.post(shadowed["base"] + "/score", json=claim, headers=shadowed["auth"], timeout=30).json()
    after = scrape(shadowed)
    decision = answer["decision"]
    for name in ("AUTO_APPROVE", "STANDARD_REVIEW", "ENHANCED_REVIEW", "SIU_REFERRAL"):
        moved = (metric(after, "claimtriage_decisions_total", decision=name, model_version=version)
                 - metric(before, "claimtriage_decisions_total", decision=name, model_version=version))
        assert moved == (1 if name == decision else 0), name
    assert metric(after, "claimtriage_decisions_total", model_version=registry["versions"]["challenger"]) == 0
    for histogram in ("claimtriage_fraud_probability", "claimtriage_anomaly_score"):
        assert (metric(after, f"{histogram}_count", model_version=version)
                - metric(before, f"{histogram}_count", model_version=version)) == 1
    fraud = answer["scores"]["fraud_probability"]
    below = [b for b in (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0) if fraud <= b][0]
    assert (metric(after, "claimtriage_fraud_probability_bucket", model_version=version, le=str(below))
            - metric(before, "claimtriage_fraud_probability_bucket", model_version=version, le=str(below))) == 1


def test_shadow_decisions_count_by_challenger_version_and_agreement(registry, shadowed):
    challenger = registry["versions"]["challenger"]
    claims = as_json(registry["new"].iloc[130:190], registry["champion"])
    reply = httpx.post(shadowed["base"] + "/score_batch", json={"claims": claims, "explain": False},
                       headers=shadowed["auth"], timeout=60)
    assert reply.status_code == 200
    decided = rows(shadowed["store_url"], "SELECT count(*) FROM decisions")[0][0]
    assert wait_for_shadow_rows(shadowed["store_url"], decided) == decided
    agreeing = rows(shadowed["store_url"], "SELECT count(*) FROM shadow_decisions s JOIN decisions d "
                    "ON d.id = s.decision_id WHERE s.decision = d.decision")[0][0]
    text = scrape(shadowed)
    assert metric(text, "claimtriage_shadow_decisions_total", challenger_version=challenger, agrees="true") == agreeing
    assert metric(text, "claimtriage_shadow_decisions_total", challenger_version=challenger,
                  agrees="false") == decided - agreeing
    assert metric(text, "claimtriage_shadow_skipped_claims_total") == 0


def test_the_overdue_gauge_follows_the_store(registry, shadowed):
    claims = [dict(c, claim_id=f"LATE-{i}") for i, c in enumerate(as_json(registry["new"].iloc[200:260],
                                                                           registry["champion"]))]
    answers = httpx.post(shadowed["base"] + "/score_batch", json={"claims": claims, "explain": False},
                         headers=shadowed["auth"], timeout=60).json()["results"]
    reviewed = [a["claim_id"] for a in answers if a["decision"] != "AUTO_APPROVE"][:2]
    assert len(reviewed) == 2
    engine = sa.create_engine(shadowed["store_url"])
    with engine.begin() as conn:  # two cases' clocks run out: one past its response, one past both deadlines
        past = sa.text("UPDATE cases SET respond_by = :at, resolve_by = :resolve WHERE claim_id = :claim")
        now = conn.exec_driver_sql("SELECT max(opened_at) FROM cases").scalar_one()
        now = as_datetime(now)
        conn.execute(past, {"at": now - timedelta(days=1), "resolve": now + timedelta(days=1), "claim": reviewed[0]})
        conn.execute(past, {"at": now - timedelta(days=4), "resolve": now - timedelta(days=1), "claim": reviewed[1]})
    engine.dispose()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        text = scrape(shadowed)
        counts = (metric(text, "claimtriage_overdue_cases", deadline="respond"),
                  metric(text, "claimtriage_overdue_cases", deadline="resolve"))
        if counts == (2, 1):
            break
        time.sleep(0.3)
    assert counts == (2, 1)


def test_the_newest_monitor_run_s_alerts_are_on_metrics(shadowed):
    """`claimtriage monitor` keeps its alerts in the store (serving/monitor_runs.py); the service shows
    the newest run's, by alert, and none of a kind the newest run did not raise."""
    from serving.monitor_runs import record_monitor_run

    assert metric(scrape(shadowed), "claimtriage_monitor_alerts") == 0  # no run yet: nothing shown
    engine, now = sa.create_engine(shadowed["store_url"]), as_datetime("2026-11-30T00:00:00")
    drift = [{"name": "drift", "message": "score fraud_probability: PSI 0.4"},
             {"name": "drift", "message": "feature claim_amount: PSI 0.3"}]
    record_monitor_run(engine, sa.MetaData(), now - timedelta(days=7), now, 900,
                       drift + [{"name": "overdue_cases", "message": "12 cases"}], None)
    expected = {"drift": 2, "overdue_cases": 1, "approval_precision": 0}
    assert _monitor_alerts_become(shadowed, expected) == expected
    record_monitor_run(engine, sa.MetaData(), now, now + timedelta(days=7), 950, [], None)  # a calm week after
    engine.dispose()
    calm = {"drift": 0, "overdue_cases": 0, "approval_precision": 0}
    assert _monitor_alerts_become(shadowed, calm) == calm


def _monitor_alerts_become(served: dict, expected: dict, seconds: float = 10) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        text = scrape(served)
        found = {name: metric(text, "claimtriage_monitor_alerts", alert=name) for name in expected}
        if found == expected or time.monotonic() > deadline:
            return found
        time.sleep(0.3)
