"""The review pages under attack: escaped and URL-encoded whatever a claim id holds, forms that only
their own session can send, logins that lock out, a queue that says only what is so.

The first tests render pages directly; the rest talk to the shared real server (`service`) as a
browser would (cookies, the login form's token, Origin headers) and read the claim store after.
"""

from __future__ import annotations

import re
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote, urljoin

import httpx
import pytest
import sqlalchemy as sa
from markupsafe import escape

from serving import pages
from serving.clock import utc_now
from serving.store import ClaimStore

from tests.serving.client import as_json, clear_queue, get, post

TEMPLATES = Path(pages.__file__).parent / "templates"
# Claim ids a link must carry whole: a slash, a query mark, a fragment mark, a percent sign, a
# space, letters beyond ASCII; and "pages-a", which a careless link to "pages-a?b" would open.
AWKWARD_IDS = ["pages/2025/000777", "pages-a?b#c%d e", "pages-\u00c4rzte-\u00fc", "pages-100%25", "pages-a?b",
               "pages-a"]


def _detail(claim_id: str, outcome: dict | None = None) -> dict:
    """A case as `ClaimStore.case` returns it, with hostile text wherever text can come from outside."""
    now = utc_now()
    return {"claim_id": claim_id, "model_version": "1",
            "case": {"status": "open", "respond_by": now, "resolve_by": now, "seconds_left": 60, "overdue": False,
                     "assignee": None},
            "decision": {"claim_id": claim_id, "decision": "SIU_REFERRAL", "scored_at": "2025-03-01T10:00:00Z",
                         "scores": {"fraud_probability": 0.5, "approval_probability": 0.2, "anomaly_score": 0.9},
                         "rule_hits": [{"text": "<img src=x onerror=alert(1)>"}],
                         "reasons": {"fraud": [{"feature": "report_delay_days", "contribution": 0.7,
                                                "text": "<script>alert(2)</script>"}]},
                         "contribution_totals": {"fraud": {"base_value": -2.0, "model_output": -1.0}}},
            "claim": {"claim_id": claim_id, "region": "'\"><svg onload=alert(3)>"},
            "outcome": outcome, "ring": [{"claim_id": claim_id + "/linked?x#y", "claimant_id": None,
                                          "report_date": now, "loss_type": "theft", "claim_amount": 5.0,
                                          "shares": ["payee_account"]}]}


class _Tags(HTMLParser):
    """Every tag and attribute as a browser's parser reads them."""

    def __init__(self, html: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _smuggled(html: str) -> list:
    """Script, inline style or event handlers in a page: what a broken escape would let in."""
    return [(tag, attrs) for tag, attrs in _Tags(html).tags
            if tag in ("script", "style", "iframe", "object") or any(a == "style" or a.startswith("on") for a in attrs)]


def _attributes(html: str, name: str) -> list[str]:
    return [unescape(v) for v in re.findall(rf'{name}="([^"]*)"', html)]


@pytest.mark.parametrize("claim_id", AWKWARD_IDS + ["<script>alert(1)</script>", "x\" onmouseover=\"alert(1)"])
def test_every_link_and_form_address_carries_the_whole_claim_id_encoded(claim_id):
    case = pages.case_page(_detail(claim_id), utc_now(), user="ann", csrf="token-1")
    queue = pages.queue_page([{"claim_id": claim_id, "status": "open", "overdue": False, "respond_seconds_left": 60,
                               "resolve_seconds_left": 120, "decision": "SIU_REFERRAL", "fraud_probability": 0.5,
                               "anomaly_score": 0.5, "assignee": None}], utc_now(), user="ann", csrf="token-1")
    encoded = quote(claim_id, safe="")
    assert _attributes(queue, "href")[-1] == f"/review/{encoded}"
    assert f"/review/{encoded}/respond" in _attributes(case, "action")
    assert f"/review/{encoded}/outcome" in _attributes(case, "action")
    assert f"/review/{quote(claim_id + '/linked?x#y', safe='')}" in _attributes(case, "href")
    for page in (case, queue):
        assert f"Claim {escape(claim_id)}" in page or f'data-claim="{escape(claim_id)}"' in page
        assert "<script>" not in page and "<img" not in page and "<svg onload" not in page
        assert _smuggled(page) == []


def test_pages_carry_no_inline_style_or_script_and_every_form_its_token():
    pages_shown = [pages.case_page(_detail("C1"), utc_now(), user="ann", csrf="token-1"),
                   pages.queue_page([], utc_now(), user="ann", csrf="token-1"),
                   pages.not_found_page("C2", user="ann", csrf="token-1"),
                   pages.login_page("/review", csrf="token-1")]
    for page in pages_shown:
        assert '<link rel="stylesheet" href="/static/review.css">' in page
        assert _smuggled(page) == []
        forms = re.findall(r"<form\b.*?</form>", page, re.DOTALL)
        assert forms and all('name="csrf" value="token-1"' in form for form in forms)
    for template in TEMPLATES.glob("*.html"):  # and none hidden in a branch the pages above did not take
        assert not re.search(r"<style|<script|\sstyle=|\son[a-z]+=|\|\s*safe\b", template.read_text(), re.IGNORECASE)
    assert (Path(pages.__file__).parent / "static" / "review.css").read_text().count("{") > 10


# --- over HTTP, as a browser -------------------------------------------------------------------

class Browser:
    """An httpx client that keeps cookies and sends the Origin a browser sends for a same-site form."""

    def __init__(self, service):
        self.base = service["base"]
        self.client = httpx.Client(base_url=self.base, timeout=30, follow_redirects=False)

    def login(self, username: str, password: str, next_path: str = "/review") -> httpx.Response:
        form = self.client.get("/login", params={"next": next_path})
        return self.client.post("/login", headers={"Origin": self.base},
                                data={"username": username, "password": password, "next": next_path,
                                      "csrf": _attributes(form.text, "value")[-1]})

    def page(self, path: str) -> httpx.Response:
        reply = self.client.get(path)
        assert reply.status_code == 200, (path, reply.status_code, reply.text[:300])
        return reply

    def submit(self, page: httpx.Response, action_ending: str, origin: str | None = "same", **fields):
        """Post the page's form whose address ends with `action_ending`, with its own token."""
        forms = re.findall(r'<form[^>]*action="([^"]*)"[^>]*>(.*?)</form>', page.text, re.DOTALL)
        [(action, body)] = [(unescape(a), b) for a, b in forms if unescape(a).endswith(action_ending)]
        token = re.search(r'name="csrf" value="([^"]*)"', body).group(1)
        headers = {} if origin is None else {"Origin": self.base if origin == "same" else origin}
        return self.client.post(action, data={"csrf": token, **fields}, headers=headers)


def _score_for_review(service, claim_ids: list[str], rows: slice) -> None:
    """Score claims under `claim_ids`, each over the automatic-approval cap so it needs a person."""
    claims = as_json(service["new"].iloc[rows], service["bundle"])
    for claim, claim_id in zip(claims, claim_ids):
        claim.update(claim_id=claim_id, claim_amount=90_000.0, coverage_limit=500_000.0)
    reply = post(service, "/score_batch", {"claims": claims[:len(claim_ids)], "explain": True})
    assert reply.status_code == 200 and reply.json()["n_errors"] == 0, reply.text[:500]


def _outcomes(service) -> dict[str, str]:
    store = ClaimStore(service["store_url"])
    with store.engine.connect() as conn:
        o = store.review.outcomes.c
        return {row.claim_id: row.recorded_by for row in conn.execute(sa.select(o.claim_id, o.recorded_by))}


@pytest.mark.slow
def test_claim_ids_with_slash_query_hash_percent_space_and_unicode_open_and_work_their_own_case(service):
    _score_for_review(service, AWKWARD_IDS, slice(360, 366))
    clear_queue(service, keep=set(AWKWARD_IDS))
    browser = Browser(service)
    assert browser.login("ann", "correct horse battery").status_code == 303
    queue = browser.page("/review")
    links = {unescape(claim_id): unescape(link) for claim_id, link
             in re.findall(r'<tr[^>]*data-claim="([^"]*)">\s*<td><a href="([^"]*)"', queue.text)}
    for claim_id in AWKWARD_IDS:
        case = browser.page(links[claim_id])
        assert f"<h1>Claim {escape(claim_id)}</h1>" in case.text, links[claim_id]
        assert get(service, f"/cases/{quote(claim_id, safe='')}").json()["claim_id"] == claim_id  # the API too
    assert get(service, "/cases/pages/2025/000777").json()["claim_id"] == "pages/2025/000777"  # sent raw
    for claim_id in ("pages-a?b", "pages/2025/000777", "pages-\u00c4rzte-\u00fc"):
        case = browser.page(f"/review/{quote(claim_id, safe='')}")
        taken = browser.submit(case, "/respond")
        assert taken.status_code == 303 and taken.headers["location"] == f"/review/{quote(claim_id, safe='')}"
        assert "<b id=\"status\">responded</b>" in browser.page(taken.headers["location"]).text
        done = browser.submit(case, "/outcome", outcome="denied", note="checked")
        assert done.status_code == 303, done.text[:300]
        assert f"Outcome recorded for claim {escape(claim_id)}" in browser.page(done.headers["location"]).text
    recorded = _outcomes(service)
    assert {c: recorded.get(c) for c in AWKWARD_IDS} == {
        "pages/2025/000777": "ann", "pages-a?b#c%d e": None, "pages-\u00c4rzte-\u00fc": "ann", "pages-100%25": None,
        "pages-a?b": "ann", "pages-a": None}


@pytest.mark.slow
def test_a_page_asked_for_before_the_login_is_the_page_shown_after_it(service):
    reply = httpx.get(service["base"] + "/review/" + quote("pages-a?b#c%d e", safe=""), follow_redirects=False)
    assert reply.status_code == 303 and reply.headers["location"].startswith("/login?next=")
    login_form = urljoin(service["base"], reply.headers["location"])
    next_path = _attributes(httpx.get(login_form).text, "value")[0]
    browser = Browser(service)
    landed = browser.login("ann", "correct horse battery", next_path)
    assert landed.headers["location"] == "/review/" + quote("pages-a?b#c%d e")
    assert "<h1>Claim pages-a?b#c%d e</h1>" in browser.page(landed.headers["location"]).text
    for elsewhere in ("//evil.example/review", "https://evil.example", "/review//evil.example", "/reviewer",
                      "/review\\@evil.example", "/review/\x00"):
        assert Browser(service).login("ann", "correct horse battery", elsewhere).headers["location"] == "/review"


@pytest.mark.slow
def test_a_form_sent_from_another_site_records_nothing(service):
    _score_for_review(service, ["pages-csrf"], slice(366, 367))
    browser = Browser(service)
    assert browser.login("ann", "correct horse battery").status_code == 303
    case = browser.page("/review/pages-csrf")
    evil = "http://evil.example"
    assert browser.submit(case, "/outcome", origin=evil, outcome="denied").status_code == 403
    assert browser.submit(case, "/respond", origin=evil).status_code == 403
    token = re.search(r'name="csrf" value="([^"]*)"', case.text).group(1)
    tricks = [({"Origin": "null", "Sec-Fetch-Site": "cross-site"}, {"csrf": token}),  # a sandboxed frame elsewhere
              ({"Referer": evil + "/page"}, {"csrf": token}), ({"Origin": "http://127.0.0.1.evil.example"}, {"csrf": token}),
              ({"Origin": service["base"], "Sec-Fetch-Site": "same-site"}, {"csrf": token}),  # a sibling host
              ({}, {"csrf": "not-the-token"}), ({"Origin": "null"}, {"csrf": "not-the-token"}),  # a token it cannot know
              ({"Origin": service["base"]}, {"csrf": ""}), ({}, {})]  # or none
    for headers, fields in tricks:
        reply = browser.client.post("/review/pages-csrf/outcome", data={"outcome": "denied", **fields},
                                    headers=headers)
        assert reply.status_code == 403, (headers, fields, reply.status_code)
    assert "pages-csrf" not in _outcomes(service)
    assert browser.client.post("/logout", headers={"Origin": evil}).status_code == 403
    assert browser.client.post("/logout", data={"csrf": "guess"}).status_code == 403
    assert browser.page("/review").status_code == 200  # still logged in
    assert browser.submit(case, "/outcome", outcome="not_fraud").status_code == 303  # the page's own form works
    assert _outcomes(service)["pages-csrf"] == "ann"
    assert browser.submit(browser.page("/review"), "/logout").status_code == 303
    assert browser.client.get("/review").status_code == 303  # logged out


@pytest.mark.slow
def test_a_login_from_another_site_or_without_its_form_is_refused(service):
    base = service["base"]
    form = {"username": "ann", "password": "correct horse battery", "next": "/review"}
    assert httpx.post(base + "/login", data=form, headers={"Origin": "http://evil.example"}).status_code == 403
    refused = httpx.post(base + "/login", data=form)  # no login form was ever loaded: no token
    assert refused.status_code == 403 and "expired" in refused.text
    assert "claimtriage_session=" not in refused.headers.get("set-cookie", "")
    browser = Browser(service)
    reply = browser.login("ann", "correct horse battery")
    cookie = [v for k, v in reply.headers.multi_items() if k == "set-cookie" and "claimtriage_session=" in v]
    assert reply.status_code == 303 and cookie
    assert "httponly" in cookie[0].lower() and "samesite=strict" in cookie[0].lower()
    assert "secure" not in cookie[0].lower()  # secure_cookies = false in claimtriage.toml


@pytest.mark.slow
def test_the_queue_says_an_outcome_was_recorded_only_when_this_adjuster_recorded_it(service):
    _score_for_review(service, ["pages-flash-open", "pages-flash-done"], slice(367, 369))
    store = ClaimStore(service["store_url"])
    store.access.add_adjuster(store.engine, "bob", "bob's long password")
    ann, bob = Browser(service), Browser(service)
    ann.login("ann", "correct horse battery")
    bob.login("bob", "bob's long password")
    assert ann.submit(ann.page("/review/pages-flash-done"), "/outcome", outcome="denied").status_code == 303
    for text in ("<script>alert(1)</script>", "pages-flash-open", "Your account is suspended: call 0900"):
        assert 'class="flash"' not in ann.page("/review?recorded=" + quote(text, safe="")).text
    assert 'class="flash"' not in bob.page("/review?recorded=pages-flash-done").text  # not bob's outcome
    assert "Outcome recorded for claim pages-flash-done" in ann.page("/review?recorded=pages-flash-done").text


@pytest.mark.slow
def test_wrong_passwords_lock_an_adjuster_out_over_http_with_the_same_reply(service):
    store = ClaimStore(service["store_url"])
    password = store.access.add_adjuster(store.engine, "carol")
    wrong = [Browser(service).login("carol", "not her password") for _ in range(5)]  # login_failures_per_user
    assert [r.status_code for r in wrong] == [401] * 5
    locked = Browser(service).login("carol", password)
    assert locked.status_code == 401 and "Wrong username or password." in locked.text
    with store.engine.connect() as conn:
        f = store.access.login_failures.c
        until = conn.execute(sa.select(f.locked_until).where(f.kind == "user", f.subject == "carol")).scalar_one()
    assert until > utc_now()
    assert "login refused: user 'carol' is locked out" in service["log"].read_text()


@pytest.mark.slow
@pytest.mark.parametrize("claim_id, reason", [("pages-\u202egpj.exe", "contains a format character (U+202E)"),
                                              ("pages-\x00", "contains a control character (U+0000)"),
                                              ("   ", "is only spaces"), (" pages-x", "starts or ends with a space")])
def test_an_unsafe_claim_id_is_refused_at_the_door(service, claim_id, reason):
    claim = as_json(service["new"].iloc[[369]], service["bundle"])[0]
    reply = post(service, "/score", {**claim, "claim_id": claim_id})
    assert reply.status_code == 422
    assert [(e["field"], e["reason"]) for e in reply.json()["errors"]] == [("claim_id", reason)]
