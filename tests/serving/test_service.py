"""The scoring service over real HTTP: a BentoML server on a registered model and a real store."""

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest

from models.policy import AUTO_APPROVE, OUTCOMES
from serving import pages
from serving.store import ClaimStore

from tests.serving.client import as_json as _as_json, browser_tools, clear_queue, get, post

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_a_valid_claim_gets_a_decision_with_reasons_and_deadlines(service):
    claim = _as_json(service["new"].iloc[[0]], service["bundle"])[0]
    reply = post(service, "/score", claim)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["claim_id"] == claim["claim_id"] and body["model_version"] == "1"
    assert body["decision"] in OUTCOMES
    assert all(0 <= body["scores"][k] <= 1 for k in ("approval_probability", "fraud_probability", "anomaly_score"))
    assert set(body["reasons"]) == {"fraud", "eligibility", "anomaly"}
    assert all(r["text"] for rs in body["reasons"].values() for r in rs)
    scored_at = datetime.fromisoformat(body["scored_at"].rstrip("Z"))
    if body["decision"] != AUTO_APPROVE:
        assert datetime.fromisoformat(body["deadlines"]["respond_by"].rstrip("Z")) - scored_at == timedelta(hours=24)
        assert datetime.fromisoformat(body["deadlines"]["resolve_by"].rstrip("Z")) - scored_at == timedelta(hours=72)


def test_every_decision_is_committed_before_the_reply_and_rescoring_never_double_counts(service):
    store = ClaimStore(service["store_url"])
    claim = _as_json(service["new"].iloc[[1]], service["bundle"])[0]
    before = store.count_claims()
    first = post(service, "/score", claim).json()
    kept = store.decisions_for(claim["claim_id"])  # a separate connection, right after the reply
    assert [d["decision"] for d in kept] == [first["decision"]]
    assert kept[0]["response"]["scores"] == first["scores"]
    post(service, "/score", claim)
    assert len(store.decisions_for(claim["claim_id"])) == 2
    assert store.count_claims() == before + 1


def test_online_scores_equal_the_offline_pipeline_exactly(service):
    bundle, new = service["bundle"], service["new"].iloc[10:40]
    replies = [post(service, "/score", c).json() for c in _as_json(new, bundle)]
    # Offline, the history is every claim the service has seen: its training claims, what this test
    # sent, and what other tests sent to the same server, with when fraud was confirmed (the claim
    # graph reads whole rings).
    offline = bundle.score(new, history=ClaimStore(service["store_url"]).book())
    for reply, (_, row) in zip(replies, offline.iterrows()):
        assert reply["claim_id"] == row["claim_id"]
        assert reply["scores"]["fraud_probability"] == row["fraud_probability"]
        assert reply["scores"]["approval_probability"] == row["approval_probability"]
        assert reply["scores"]["anomaly_score"] == row["anomaly_score"]
        assert reply["decision"] == row["decision"]


def test_a_batch_answers_every_claim_in_order_and_one_bad_claim_fails_alone(service):
    claims = _as_json(service["new"].iloc[50:60], service["bundle"])
    claims[3]["claim_amount"] = -1
    reply = post(service, "/score_batch", {"claims": claims, "explain": False})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["n_scored"] == 9 and body["n_errors"] == 1
    assert [r["claim_id"] for r in body["results"]] == [c["claim_id"] for c in claims]
    assert [(e["field"], e["reason"]) for e in body["results"][3]["errors"]] == [("claim_amount", "must be greater than 0")]
    assert "reasons" not in body["results"][0] or body["results"][0]["reasons"] is None


def test_invalid_claim_gets_422_naming_each_bad_field(service):
    claim = _as_json(service["new"].iloc[[70]], service["bundle"])[0]
    claim.update(claim_amount=-5, line_of_business="marine", loss_date="3000-01-01", colour="red")
    del claim["policy_id"]
    reply = post(service, "/score", claim)
    assert reply.status_code == 422
    fields = {e["field"]: e["reason"] for e in reply.json()["errors"]}
    assert fields == {"claim_amount": "must be greater than 0", "line_of_business": "must be one of auto, property",
                      "loss_date": "is outside 1900-01-01 to 2100-12-31", "policy_id": "is required but missing",
                      "colour": "is not a field of the claim record"}
    assert ClaimStore(service["store_url"]).decisions_for(claim["claim_id"]) == []


BAD_REQUESTS = [
    ("malformed JSON", "/score", b'{"claim_id": ', "application/json"),
    ("array instead of a claim", "/score", b"[1, 2]", "application/json"),
    ("wrong type", "/score", json.dumps({"claim_id": 5, "claim_amount": "lots"}).encode(), "application/json"),
    ("empty claim", "/score", b"{}", "application/json"),
    ("nested object", "/score", json.dumps({"claim_id": {"a": 1}}).encode(), "application/json"),
    ("10 MB string", "/score", json.dumps({"claim_id": "x" * 10_000_000}).encode(), "application/json"),
    ("huge number", "/score", json.dumps({"claim_id": "a", "injuries": 10 ** 40}).encode(), "application/json"),
    ("number beyond any float", "/score", b'{"claim_id": "a", "witnesses": 1' + b"0" * 400 + b"}", "application/json"),
    ("amount overflowing to infinity", "/score", b'{"claim_id": "a", "claim_amount": 1e400}', "application/json"),
    ("a word for a date", "/score", json.dumps({"claim_id": "a", "report_date": "now"}).encode(), "application/json"),
    ("text body", "/score", b"claim please", "text/plain"),
    ("multipart without boundary", "/score", b"--x", "multipart/form-data"),
    ("claims not a list", "/score_batch", json.dumps({"claims": {"a": 1}}).encode(), "application/json"),
    ("oversize batch", "/score_batch", json.dumps({"claims": [{}] * 1001}).encode(), "application/json"),
    # 413: over config.security.max_body_bytes, refused before it is read
    ("body over the limit", "/score", b'{"claim_id": "' + b"x" * 300_000 + b'"}', "application/json"),
    # 400: a key twice, in a claim of a batch
    ("duplicate keys", "/score_batch", b'{"claims": [{"claim_id": "a", "claim_amount": 1, "claim_amount": 2}]}',
     "application/json"),
    # 422: more fields than config.security.max_fields_per_claim
    ("too many fields", "/score", json.dumps({f"field_{i}": 1 for i in range(501)}).encode(), "application/json"),
    # 422: explain must be a JSON boolean
    ("explain not a boolean", "/score_batch", b'{"claims": [], "explain": "yes"}', "application/json"),
]


@pytest.mark.parametrize("name, path, body, content_type", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_requests_get_a_4xx_with_a_message_never_a_server_error(service, name, path, body, content_type):
    reply = httpx.post(service["base"] + path, content=body, headers={"content-type": content_type, **service["auth"]},
                       timeout=60)
    assert name in BAD_REQUEST_STATUS, f"say which status {name!r} must get in BAD_REQUEST_STATUS"
    assert reply.status_code == BAD_REQUEST_STATUS[name], (reply.status_code, reply.text[:300])
    answer = reply.json()
    assert answer.get("error"), answer
    assert len(reply.content) < 100_000  # a 10 MB value is never echoed back
    if "errors" in answer:  # the claim's own validation: which claim, and what it sent in each bad field
        assert set(answer) == {"error", "claim_id", "errors"} and answer["errors"], answer
        assert all(set(e) == {"field", "value", "reason"} for e in answer["errors"]), answer
        sent = json.loads(body)
        assert answer["claim_id"] == (None if sent.get("claim_id") is None else str(sent["claim_id"]))
        for error in answer["errors"]:
            if sent.get(error["field"]) is not None:
                assert error["value"] is not None, error


# Each case's exact status, so one that drifts to another 4xx is noticed: 400 for a body that is
# not JSON, 413 for a body or a batch over its limit, 415 for another content type (README.md,
# Errors), 422 for a claim that fails validation and for JSON that is no claim at all (a list, an
# object for a field: serving/strict_json.py). New cases in BAD_REQUESTS need their status here.
BAD_REQUEST_STATUS = {
    "malformed JSON": 400,
    "array instead of a claim": 422,
    "wrong type": 422,
    "empty claim": 422,
    "nested object": 422,
    "10 MB string": 413,
    "huge number": 422,
    "number beyond any float": 422,
    "amount overflowing to infinity": 422,
    "a word for a date": 422,
    "text body": 415,
    "multipart without boundary": 415,
    "claims not a list": 422,
    "oversize batch": 413,
    "body over the limit": 413,
    "duplicate keys": 400,
    "too many fields": 422,
    "explain not a boolean": 422,
}


def test_review_queue_case_response_and_feedback_over_http(service):
    claims = _as_json(service["new"].iloc[200:260], service["bundle"])
    decided = post(service, "/score_batch", {"claims": claims, "explain": True}).json()["results"]
    needing = [d["claim_id"] for d in decided if d["decision"] != AUTO_APPROVE]
    assert needing, "some claims need a person"
    queue = get(service, "/cases", params={"limit": 1000}).json()
    assert set(needing) <= {c["claim_id"] for c in queue}
    deadlines = [c["next_deadline"] for c in queue]
    assert deadlines == sorted(deadlines)
    claim_id = needing[0]
    case = get(service, f"/cases/{claim_id}").json()
    assert case["decision"]["claim_id"] == claim_id and case["case"]["status"] == "open"
    assert case["decision"]["reasons"]["fraud"][0]["text"] and case["claim"]["claim_id"] == claim_id
    taken = post(service, f"/cases/{claim_id}/respond", {"by": "adjuster.ann"})
    assert taken.status_code == 200 and taken.json()["status"] == "responded"
    done = post(service, "/feedback", {"claim_id": claim_id, "outcome": "denied", "note": "no cover"})
    assert done.status_code == 201, done.text
    again = post(service, "/feedback", {"claim_id": claim_id, "outcome": "denied"})
    assert again.status_code == 409 and "resolved" in again.json()["detail"]
    assert post(service, "/feedback", {"claim_id": "never-seen", "outcome": "denied"}).status_code == 404
    assert post(service, "/feedback", {"claim_id": claim_id, "outcome": "maybe"}).status_code == 422
    assert claim_id not in {c["claim_id"] for c in get(service, "/cases").json()}
    assert get(service, "/cases/never-seen").status_code == 404


def test_model_information_and_bentoml_endpoints(service):
    info = get(service, "/model").json()
    assert info["version"] == "1" and "test_fraud_roc_auc" in info["metrics"]
    assert info["features"] == service["bundle"].builder.feature_names_
    assert info["policy"]["thresholds"]["siu_fraud_probability"] > 0
    for path in ("/healthz", "/readyz", "/metrics", "/docs.json"):  # /metrics with a key (security.metrics_access)
        assert httpx.get(service["base"] + path, timeout=10, headers=service["auth"]).status_code == 200, path
    paths = httpx.get(service["base"] + "/docs.json", timeout=10).json()["paths"]
    assert {"/score", "/score_batch", "/model"} <= set(paths)


def test_single_claims_are_left_out_of_tracing_and_batches_are_not(service):
    claims = _as_json(service["new"].iloc[170:172], service["bundle"])
    before = len(service["log"].read_text())  # other modules' requests to the shared server came before
    assert post(service, "/score", claims[0]).status_code == 200
    assert post(service, "/score_batch", {"claims": claims[1:]}).status_code == 200
    time.sleep(0.5)  # the access log is written after the reply
    lines = service["log"].read_text()[before:].splitlines()
    single = [line for line in lines if "path=/score," in line]
    batch = [line for line in lines if "path=/score_batch," in line]
    assert single and batch
    assert not any("trace=" in line for line in single)  # the OpenTelemetry middleware let it through
    assert all("trace=" in line for line in batch)


def _group_sizes(service) -> tuple[float, float]:
    """(groups, claims) so far in the service's histogram of /score group sizes."""
    metrics = httpx.get(service["base"] + "/metrics", timeout=10, headers=service["auth"]).text
    values = dict(line.rsplit(" ", 1) for line in metrics.splitlines()
                  if line.startswith("claimtriage_score_group_size_") and "{" not in line)
    return float(values["claimtriage_score_group_size_count"]), float(values["claimtriage_score_group_size_sum"])


def test_concurrent_single_claims_each_get_their_own_answer(service):
    claims = _as_json(service["new"].iloc[100:160], service["bundle"])
    groups_before, claims_before = _group_sizes(service)
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda claim: post(service, "/score", claim), claims))
    assert [r.status_code for r in replies] == [200] * len(claims)
    assert [r.json()["claim_id"] for r in replies] == [c["claim_id"] for c in claims]
    groups, scored = _group_sizes(service)
    assert scored - claims_before == len(claims)  # every claim went through a group, once
    assert 1 <= groups - groups_before < len(claims)  # and claims that arrived together went together
    store = ClaimStore(service["store_url"])
    assert all(len(store.decisions_for(c["claim_id"])) == 1 for c in claims)


def test_schemathesis_finds_no_server_error(service):
    run = subprocess.run(
        [str(Path(sys.executable).parent / "schemathesis"), "run", service["base"] + "/docs.json",
         "--checks", "not_a_server_error", "--max-examples", "40", "--seed", "1",
         "--header", f"Authorization: Bearer {service['key']}",
         "--phases", "examples,coverage,fuzzing"],
        capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-4000:]


def test_bentoml_build_succeeds(tmp_path):
    env = {**os.environ, "BENTOML_HOME": str(tmp_path), "BENTOML_DO_NOT_TRACK": "true",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    run = subprocess.run([sys.executable, "-m", "bentoml", "build", "--output", "tag"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert list((tmp_path / "bentos" / "claim-triage").iterdir())


def test_an_adjuster_works_a_case_in_a_real_browser(service):
    """Open the queue, open a case, read why, record the outcome, see the case leave the queue."""
    sync_api, chromium = browser_tools()
    claims = _as_json(service["new"].iloc[300:340], service["bundle"])
    results = post(service, "/score_batch", {"claims": claims}).json()["results"]
    assert any(r["decision"] != AUTO_APPROVE for r in results)
    clear_queue(service, keep={r["claim_id"] for r in results})  # the queue's first row is one of these
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        page = browser.new_page()
        console = []  # a Content-Security-Policy violation is reported here
        page.on("console", lambda message: console.append(message.text))
        page.goto(service["base"] + "/review")
        page.wait_for_url(lambda url: "/login?next=" in url)  # the page needs a login
        page.fill("input[name=username]", "ann")
        page.fill("input[name=password]", "wrong password")
        page.click("button[type=submit]")
        assert "Wrong username or password" in page.locator(".error").inner_text()
        page.fill("input[name=username]", "ann")
        page.fill("input[name=password]", "correct horse battery")
        page.click("button[type=submit]")
        page.wait_for_url("**/review")
        # The stylesheet (/static/review.css, the pages' only style) was loaded and applied.
        assert page.locator("header").evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(29, 36, 48)"
        rows = page.locator("#queue tbody tr")
        assert rows.count() >= 1
        claim_id = rows.first.get_attribute("data-claim")
        address = f"/review/{pages.url_part(claim_id)}"  # any claim id, "/", "?" or "%" included
        rows.first.locator("a").click()
        page.wait_for_url(f"**{address}")
        assert page.locator("h1").inner_text() == f"Claim {claim_id}"
        assert page.locator("#decision").inner_text() in pages.DECISION_TEXT.values()
        fraud_reasons = page.locator("[data-model=fraud] ul.reasons li").all_inner_texts()
        assert fraud_reasons and all(len(text) > 10 for text in fraud_reasons)
        assert page.locator("svg.waterfall[data-model=fraud] rect").count() >= 1
        assert page.locator("#fields").inner_text().count("claim amount") == 1
        page.click("#take-case")
        page.wait_for_url(f"**{address}")
        assert page.locator("#status").inner_text() == "responded" and "taken by ann" in page.content()
        assert page.locator("#take-case").count() == 0
        page.select_option("select[name=outcome]", "confirmed_fraud")
        page.fill("textarea[name=note]", "same payee as two earlier claims")
        page.click("#record-outcome")
        page.wait_for_url("**/review?recorded=*")
        assert f"Outcome recorded for claim {claim_id}" in page.locator(".flash").inner_text()
        assert page.locator(f"#queue tbody tr[data-claim='{claim_id}']").count() == 0
        page.goto(service["base"] + address)
        assert "confirmed fraud" in page.locator("#outcome").inner_text()
        assert "by ann" in page.locator("#outcome").inner_text()  # recorded as the logged-in adjuster
        page.click("header button[type=submit]")  # log out
        page.wait_for_url("**/login")
        page.goto(service["base"] + "/review")
        page.wait_for_url(lambda url: "/login?next=" in url)  # the session has ended
        assert not [text for text in console if "Content Security Policy" in text], console
        browser.close()
    store = ClaimStore(service["store_url"])
    labels = store.labelled_claims().set_index("claim_id")
    assert bool(labels.loc[claim_id, "is_fraud"]) is True


def test_without_valid_credentials_nothing_is_served_and_nothing_is_said(service):
    claim = _as_json(service["new"].iloc[[90]], service["bundle"])[0]
    base = service["base"]
    for headers in ({}, {"Authorization": "Bearer ct_not-a-key"}, {"X-API-Key": "guess"}, {"Authorization": "Basic x"}):
        for reply in (httpx.post(base + "/score", json=claim, headers=headers, timeout=30),
                      httpx.post(base + "/feedback", json={"claim_id": "a", "outcome": "denied"}, headers=headers),
                      httpx.get(base + "/cases", headers=headers), httpx.get(base + "/model", headers=headers)):
            assert reply.status_code == 401 and reply.json() == {"error": "missing or invalid credentials"}
    assert httpx.post(base + "/score", json=claim, headers={"X-API-Key": service["key"]}, timeout=30).status_code == 200
    assert httpx.get(base + "/review", follow_redirects=False).status_code == 303
    assert httpx.post(base + "/review/x/outcome", data={"outcome": "denied"}).status_code == 401
    assert httpx.get(base + "/review", cookies={"claimtriage_session": "forged"}, follow_redirects=False).status_code == 303
    assert httpx.post(base + "/review/x/outcome", data={"outcome": "denied"}, cookies={"claimtriage_session": "forged"},
                      headers={"Origin": base}).status_code == 401
    login = {"username": "ann", "password": "correct horse battery"}
    assert httpx.post(base + "/login", data=login, headers={"Origin": "http://evil.example"}).status_code == 403
    assert httpx.post(base + "/login", data=login).status_code == 403  # not from the login form: no session
    assert httpx.get(base + "/readyz").status_code == 200 and httpx.get(base + "/metrics").status_code == 401

    store = ClaimStore(service["store_url"])
    spare = store.access.create_key(store.engine, "spare")
    assert httpx.get(base + "/model", headers={"Authorization": f"Bearer {spare}"}).status_code == 200
    store.access.revoke_key(store.engine, "spare")
    with store.engine.connect() as conn:  # stored as hashes only
        stored = " ".join(str(v) for row in conn.execute(store.access.keys.select()) for v in row)
        stored += " ".join(str(v) for row in conn.execute(store.access.adjusters.select()) for v in row)
    assert spare not in stored and service["key"] not in stored and "correct horse battery" not in stored
