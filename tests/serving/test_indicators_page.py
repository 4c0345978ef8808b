"""The claims managers' indicators page, in the real browser: behind an adjuster's login, showing the
figures `claimtriage monitor` computes from the same store (serving/monitor_reads.service_indicators)."""

from datetime import timedelta

import httpx

from models.config import load_config
from models.policy import AUTO_APPROVE, OUTCOMES
from serving.clock import utc_now
from serving.monitor_reads import service_indicators
from serving.store import ClaimStore
from tests.serving.client import as_json, browser_tools, post


def _figures(service, days: int) -> tuple:
    now = utc_now()
    config = load_config()
    return service_indicators(ClaimStore(service["store_url"]), now - timedelta(days=days), now, now,
                              config.monitoring.weekly_after_days, config.targets)


def test_the_indicators_page_needs_a_login_and_comes_back_to_itself(service):
    reply = httpx.get(service["base"] + "/indicators?days=30", follow_redirects=False, timeout=30)
    assert reply.status_code == 303 and reply.headers["location"] == "/login?next=%2Findicators%3Fdays%3D30"
    assert httpx.get(service["base"] + "/indicators", headers=service["auth"], follow_redirects=False,
                     timeout=30).status_code == 303  # an API key is not a login


def test_a_claims_manager_reads_the_service_indicators_in_a_real_browser(service):
    sync_api, chromium = browser_tools()
    frame = service["new"].iloc[200:240].copy()
    frame["claim_id"] = [f"IND-{i}" for i in range(len(frame))]
    results = post(service, "/score_batch", {"claims": as_json(frame, service["bundle"])}).json()["results"]
    reviewed = [r["claim_id"] for r in results if r["decision"] != AUTO_APPROVE]
    assert len(reviewed) >= 2
    assert post(service, f"/cases/{reviewed[0]}/respond", {"by": "ann"}).status_code == 200
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        page = browser.new_page()
        console = []
        page.on("console", lambda message: console.append(message.text))
        page.goto(service["base"] + "/indicators")
        page.wait_for_url(lambda url: "/login?next=" in url)
        page.fill("input[name=username]", "ann")
        page.fill("input[name=password]", "correct horse battery")
        page.click("button[type=submit]")
        page.wait_for_url("**/indicators")
        decided, figures = _figures(service, 7)
        assert len(decided) >= len(results)
        assert page.locator("#decided .value").inner_text() == f"{len(decided):,}"
        assert page.locator("#overdue .value").inner_text() == str(figures["deadlines"]["overdue_now"])
        automatic = figures["share_automatic"]
        assert page.locator("#automatic .value").inner_text() == f"{100 * automatic:.1f}%"
        for decision in OUTCOMES:  # the mix's table, and its chart: every decided claim in one bar
            row = page.locator(f"#mix-shares tr[data-decision={decision}] td").all_inner_texts()
            assert row[1] == f"{figures['decision_mix']['overall'][decision]['n']:,}"
        bars = page.locator("svg.mix g.bar")
        assert sum(int(bars.nth(i).get_attribute("data-total")) for i in range(bars.count())) == len(decided)
        drawn = page.locator("svg.mix rect[data-decision=SIU_REFERRAL]")
        assert sum(int(drawn.nth(i).get_attribute("data-n")) for i in range(drawn.count())) == \
            figures["decision_mix"]["overall"]["SIU_REFERRAL"]["n"]
        ann = page.locator("#adjusters tr[data-assignee=ann] td").all_inner_texts()
        mine = next(row for row in figures["per_adjuster"] if row["assignee"] == "ann")
        assert ann[3] == str(mine["open_now"]) and mine["open_now"] >= 1  # the case she took
        # The stylesheet (the pages' only style) styles the tiles; nothing broke the content policy.
        assert page.locator("#decided").evaluate("e => getComputedStyle(e).borderTopStyle") == "solid"
        page.click("a[href='/indicators?days=30']")
        page.wait_for_url("**/indicators?days=30")
        assert page.locator("p.period strong").inner_text() == "30 days"
        page.click("a[href='/review?overdue=true']")
        page.wait_for_url("**/review?overdue=true")
        assert not [text for text in console if "Content Security Policy" in text], console
        browser.close()
