"""The case page's ring drawing: a claim's neighbourhood within two hops (serving/neighbourhood.py),
built from either store's ring, bounded, marked, laid out the same way every time, and read in the
real browser."""

import math
import re
from collections import Counter
from datetime import datetime, timedelta
from html import unescape
from urllib.parse import quote

import pandas as pd
import pytest

from serving import pages
from serving.clock import utc_now
from serving.history_index import RING_FIELDS
from serving.neighbourhood import BUSY_LINK, NODE_ROOM, neighbourhood, ring_layout
from serving.store import ClaimStore
from tests.serving.test_store import decision

START = datetime(2026, 1, 1, 9, 0, 0)


def book(claims: dict[str, dict]):
    """A one-hop function and details over claims held in a dict, as the in-memory index gives
    them: every claim sharing a ring identity, newest first, each with the fields it shares."""
    def one_hop(claim_id: str) -> list[tuple[str, list[str]]]:
        me = claims[claim_id]
        links = [(other, [f for f in RING_FIELDS if me.get(f) is not None and claim.get(f) == me.get(f)])
                 for other, claim in claims.items() if other != claim_id]
        links = sorted(((other, shares) for other, shares in links if shares),
                       key=lambda link: (-claims[link[0]]["report_date"].timestamp(), link[0]))
        return links

    def details(claim_ids: list[str]) -> dict[str, dict]:
        return {claim_id: claims[claim_id] | {"claim_id": claim_id} for claim_id in claim_ids}
    return one_hop, details


def claim(i: int, **shared) -> dict:
    """Claim i, reported on day i, with identities of its own but those given."""
    own = {field: f"{field}-{i}" for field in RING_FIELDS}
    return own | shared | {"report_date": START + timedelta(days=i), "claim_amount": 100.0 + i,
                           "claimant_id": f"CL{i}", "loss_type": "theft"}


def chain() -> dict[str, dict]:
    """A shares a phone with B, B an account with C, C an address with D: D is three hops from A."""
    return {"A": claim(1, claimant_phone="PH-AB"), "B": claim(2, claimant_phone="PH-AB", payee_account="AC-BC"),
            "C": claim(3, payee_account="AC-BC", claimant_address="AD-CD"), "D": claim(4, claimant_address="AD-CD")}


def graph_of(claims, centre: str, **kwargs) -> dict:
    one_hop, details = book(claims)
    return neighbourhood(claims[centre] | {"claim_id": centre}, one_hop, details, **kwargs)


def edges(graph) -> dict[tuple[str, str], list[str]]:
    return {(e["source"], e["target"]): e["shares"] for e in graph["edges"]}


def test_two_hops_exactly_through_a_chain_of_different_identities():
    graph = graph_of(chain(), "A")
    assert [(n["claim_id"], n["hop"]) for n in graph["nodes"]] == [("A", 0), ("B", 1), ("C", 2)]  # not D
    assert edges(graph) == {("A", "B"): ["claimant_phone"], ("B", "C"): ["payee_account"]}
    assert graph["nodes"][2]["via"] == "B" and graph["nodes"][2]["claim_amount"] == 103.0
    assert (graph["left_out"], graph["at_least"]) == (0, False)
    back = graph_of(chain(), "D")
    assert [(n["claim_id"], n["hop"]) for n in back["nodes"]] == [("D", 0), ("C", 1), ("B", 2)]


def test_a_busy_provider_does_not_crowd_out_the_ring_and_the_page_is_told_how_many_were_left_out():
    claims = chain()
    for i in range(10, 10 + BUSY_LINK + 30):  # newer claims, all sharing only A's provider
        claims[f"P{i}"] = claim(i, provider_id="PR-BUSY")
    claims["A"]["provider_id"] = "PR-BUSY"
    graph = graph_of(claims, "A", max_nodes=6)
    kept = [n["claim_id"] for n in graph["nodes"]]
    # The phone and the account come first although older; then the busy provider's, newest first.
    assert kept == ["A", "B", "C", "P59", "P58", "P57", "P56"]
    assert graph["left_out"] == 1 + (BUSY_LINK + 30) + 1 - 6 and graph["at_least"]  # the provider's not asked
    # Under the cap, everything: no claim left out, none unasked.
    whole = graph_of(claims, "A", max_nodes=100)
    assert len(whole["nodes"]) == 1 + 2 + BUSY_LINK + 30 and (whole["left_out"], whole["at_least"]) == (0, False)
    # Taking only the newest 10 claims per identity: the busy provider's are cut, not the older phone's.
    few = graph_of(claims, "A", max_nodes=100, fan_out=10)
    assert few["at_least"] and {"B", "C"} <= {n["claim_id"] for n in few["nodes"]}
    # "Or more" exactly when an identity had more claims than were taken.
    assert [graph_of(claims, "A", max_nodes=100, fan_out=n)["at_least"] for n in (49, 50)] == [True, False]


def test_an_identity_shared_by_several_drawn_claims_is_drawn_as_a_star_from_the_nearest():
    family = "AC-FAMILY"
    claims = {"X": claim(0, payee_account=family), "Y": claim(1, payee_account=family, claimant_phone="PH-YZ"),
              "Z": claim(2, payee_account=family, claimant_phone="PH-YZ"), "W": claim(3, payee_account=family)}
    # One account, four claims: a star from the centre, not six lines; the phone only two of them share.
    assert edges(graph_of(claims, "X")) == {("X", "W"): ["payee_account"], ("X", "Z"): ["payee_account"],
                                            ("X", "Y"): ["payee_account"], ("Z", "Y"): ["claimant_phone"]}


def test_marks_come_from_the_marks_function_once_for_every_drawn_claim():
    asked = []

    def marks(ids):
        asked.append(list(ids))
        return {"C": {"confirmed_fraud"}, "B": {"open_siu", "confirmed_fraud"}, "D": {"confirmed_fraud"}}
    graph = graph_of(chain(), "A", marks=marks)
    assert asked == [["A", "B", "C"]]
    assert {n["claim_id"]: n["marks"] for n in graph["nodes"]} == \
        {"A": [], "B": ["confirmed_fraud", "open_siu"], "C": ["confirmed_fraud"]}


def test_the_same_neighbourhood_gives_the_same_drawing_and_two_hop_claims_sit_by_their_link():
    claims = chain()
    for i in range(10, 16):  # B's account also links six more claims; A's phone two more
        claims[f"Q{i}"] = claim(i, payee_account="AC-BC")
    for i in range(20, 22):
        claims[f"R{i}"] = claim(i, claimant_phone="PH-AB")
    claims["R20"]["payee_account"] = "AC-R"
    claims["S"] = claim(30, payee_account="AC-R")
    graph = graph_of(claims, "A")
    drawing = ring_layout(graph)
    assert drawing == ring_layout(graph_of(claims, "A"))
    size = drawing["size"]
    at = {n["claim_id"]: n for n in drawing["nodes"]}
    angle = {k: math.atan2(n["y"] - size / 2, n["x"] - size / 2) for k, n in at.items()}
    radius = {k: round(math.hypot(n["x"] - size / 2, n["y"] - size / 2), 6) for k, n in at.items()}
    assert radius["A"] == 0 and radius["B"] == radius["R20"] < radius["C"] == radius["S"]
    brought = Counter(node["via"] for node in drawing["nodes"] if node["hop"] == 2)
    for node in drawing["nodes"]:
        assert 0 <= node["x"] <= size and 0 <= node["y"] <= size
        if node["hop"] == 2:  # close around its own one-hop claim: one node's room apart from each other
            offset = abs(math.remainder(angle[node["via"]] - angle[node["claim_id"]], math.tau))
            assert offset <= brought[node["via"]] * NODE_ROOM / radius["C"] / 2 + 1e-9, node["claim_id"]
            nearest = min((k for k, n in at.items() if n["hop"] == 1),
                          key=lambda k: abs(math.remainder(angle[k] - angle[node["claim_id"]], math.tau)))
            assert nearest == node["via"], node["claim_id"]
    for edge in drawing["edges"]:  # each edge's label lies on it
        a, b = (edge["x1"], edge["y1"]), (edge["x2"], edge["y2"])
        cross = (b[0] - a[0]) * (edge["label"]["y"] - a[1]) - (b[1] - a[1]) * (edge["label"]["x"] - a[0])
        assert abs(cross) < 1e-6 * math.dist(a, b) ** 2 and -90 <= edge["label"]["rotate"] <= 90


def test_claimant_and_policy_links_are_drawn_where_the_one_hop_function_gives_them():
    claims = {"A": claim(1) | {"claimant_id": "CL-SAME"}, "B": claim(2) | {"claimant_id": "CL-SAME"}}
    graph = neighbourhood(claims["A"] | {"claim_id": "A"}, lambda me: [(o, ["claimant_id"]) for o in claims if o != me],
                          book(claims)[1])
    assert edges(graph) == {("A", "B"): ["claimant_id"]}
    page = pages.case_page({"claim_id": "A", "neighbourhood": graph}, utc_now(), user="ann", csrf="t")
    assert ">claimant</text>" in page and "shares a claimant" in page
    assert "shares a phone" not in page  # the legend: what is drawn


def chain_frame(claims: pd.DataFrame, prefix: str) -> tuple[pd.DataFrame, list[str]]:
    """Four claims A-B-C-D linked only as a chain: A and B share a phone, B and C an account, C and D
    an address; every other identity (claimant and policy too) their own."""
    claims = claims.copy()
    ids = [f"{prefix}-{name}" for name in "ABCD"]
    claims["claim_id"] = ids
    for field in (*RING_FIELDS, "claimant_id", "policy_id"):
        claims[field] = [f"{prefix}-{field}-{i}" for i in range(4)]
    claims.loc[claims.index[[0, 1]], "claimant_phone"] = f"{prefix}-PH-AB"
    claims.loc[claims.index[[1, 2]], "payee_account"] = f"{prefix}-AC-BC"
    claims.loc[claims.index[[2, 3]], "claimant_address"] = f"{prefix}-AD-CD"
    return claims, ids


def stored_chain(store: ClaimStore, typed_claims) -> list[str]:
    """The chain A-B-C-D stored as scored claims: B referred to investigators, C confirmed fraud."""
    claims, ids = chain_frame(typed_claims.iloc[1000:1004], "RG")
    store.record(claims, [decision("STANDARD_REVIEW"), decision("SIU_REFERRAL"), decision("STANDARD_REVIEW"),
                          decision("SIU_REFERRAL")], "1")
    store.record_outcome(ids[2], "confirmed_fraud", None, by="siu", via="api key siu")
    store.record_outcome(ids[3], "not_fraud", None, by="siu", via="api key siu")  # its SIU case resolved
    return ids


def test_the_case_carries_the_neighbourhood_from_every_store(history_store, typed_claims):
    a, b, c, d = stored_chain(history_store, typed_claims)
    graph = history_store.case(a)["neighbourhood"]
    assert [(n["claim_id"], n["hop"], n["marks"]) for n in graph["nodes"]] == \
        [(a, 0, []), (b, 1, ["open_siu"]), (c, 2, ["confirmed_fraud"])]
    assert edges(graph) == {(a, b): ["claimant_phone"], (b, c): ["payee_account"]}
    assert graph["nodes"][2]["claimant_id"] == "RG-claimant_id-2"
    assert graph["nodes"][2]["report_date"] == typed_claims["report_date"].iloc[1002].to_pydatetime()
    back = history_store.case(d)["neighbourhood"]
    assert [(n["claim_id"], n["marks"]) for n in back["nodes"]] == \
        [(d, []), (c, ["confirmed_fraud"]), (b, ["open_siu"])]
    assert history_store.case(a)["neighbourhood"] == graph


def test_both_sqlite_stores_draw_the_same_neighbourhoods_of_a_crowded_book(tmp_path, typed_claims):
    claims = typed_claims.head(600)
    stores = [ClaimStore(f"sqlite:///{tmp_path / 'memory.db'}"),
              ClaimStore(f"sqlite:///{tmp_path / 'sql.db'}", history_in_memory=False)]
    for store in stores:
        store.seed(claims)
    hops = Counter()
    for claim_id in claims["claim_id"].iloc[::60]:
        in_memory, in_sql = (store.case(claim_id)["neighbourhood"] for store in stores)
        assert in_memory == in_sql, claim_id
        hops.update(node["hop"] for node in in_memory["nodes"])
    assert hops[1] > 20 and hops[2] > 20  # shared providers and claimants: real two-hop neighbourhoods


@pytest.mark.parametrize("claim_id", ["ring/2025/7?x#y", "<script>alert(1)</script>", "x\" onmouseover=\"alert(1)"])
def test_the_drawing_links_every_claim_to_its_case_and_escapes_what_it_shows(claim_id):
    other = claim_id + "-linked"
    graph = {"nodes": [{"claim_id": claim_id, "hop": 0, "shares": [], "via": None, "marks": [], "claimant_id": "CL1",
                        "claim_amount": 5.0, "report_date": START, "loss_type": "theft"},
                       {"claim_id": other, "hop": 1, "shares": ["claimant_phone"], "via": None,
                        "marks": ["confirmed_fraud"], "claimant_id": "<b>CL2</b>", "claim_amount": 7.5,
                        "report_date": START, "loss_type": "theft"}],
             "edges": [{"source": claim_id, "target": other, "shares": ["claimant_phone"]}], "left_out": 3,
             "at_least": True}
    page = pages.case_page({"claim_id": claim_id, "neighbourhood": graph}, utc_now(), user="ann", csrf="t")
    svg = page[page.index("<svg class=\"ring\""):page.index("</svg>", page.index("<svg class=\"ring\"")) + 6]
    hrefs = [unescape(v) for v in re.findall(r'href="([^"]*)"', svg)]
    assert hrefs == [f"/review/{quote(claim_id, safe='')}", f"/review/{quote(other, safe='')}"]
    assert "<script>" not in page and "<b>CL2</b>" not in page and "&lt;b&gt;CL2&lt;/b&gt;" in svg
    assert re.search(r">phone</text>", svg) and ">F</text>" in svg and "confirmed fraud" in svg
    assert "3 or more left out" in page and not re.search(r"\sstyle=|\son[a-z]+=", page.replace(
        "onmouseover=&#34;", ""))


@pytest.mark.slow
def test_an_adjuster_follows_a_chain_through_the_drawing_in_a_real_browser(service):
    from tests.serving.client import as_json, browser_tools, post

    sync_api, chromium = browser_tools()

    frame, ids = chain_frame(service["new"].iloc[100:104], "RING")
    assert post(service, "/score_batch", {"claims": as_json(frame, service["bundle"])}).status_code == 200
    assert post(service, "/feedback", {"claim_id": ids[2], "outcome": "confirmed_fraud"}).status_code == 201
    a, b, c, d = ids
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        page = browser.new_page(java_script_enabled=False)  # the drawing needs no script
        console = []
        page.on("console", lambda message: console.append(message.text))
        page.goto(service["base"] + f"/review/{a}")
        page.wait_for_url(lambda url: "/login?next=" in url)
        page.fill("input[name=username]", "ann")
        page.fill("input[name=password]", "correct horse battery")
        page.click("button[type=submit]")
        page.wait_for_url(f"**/review/{a}")
        drawing = page.locator("svg#ring-graph")
        assert drawing.locator("a.node").evaluate_all("nodes => nodes.map(n => n.dataset.claim)") == [a, b, c]
        assert drawing.locator(f"a.node[data-claim='{b}']").get_attribute("data-hop") == "1"
        assert drawing.locator(f"g.edge[data-source='{a}'][data-target='{b}'] text").text_content() == "phone"
        assert drawing.locator(f"g.edge[data-source='{b}'][data-target='{c}'] text").text_content() == "account"
        fraud = drawing.locator(f"a.node[data-claim='{c}']")
        assert fraud.get_attribute("data-marks") == "confirmed_fraud"
        assert fraud.locator("text.mark").text_content() == "F"
        assert "confirmed fraud" in fraud.get_attribute("aria-label")
        # Drawn by the stylesheet: the fraud mark red, the phone edge dashed.
        assert fraud.locator("circle").evaluate("e => getComputedStyle(e).fill") == "rgb(217, 45, 32)"
        assert drawing.locator("g.edge line.kind-claimant_phone").evaluate(
            "e => getComputedStyle(e).strokeDasharray") != "none"
        assert page.locator("#ring tbody tr").count() == 1  # the list stays under the drawing: B only
        fraud.locator("circle").click()
        page.wait_for_url(f"**/review/{c}")
        assert page.locator("h1").inner_text() == f"Claim {c}"
        assert {n for n in page.locator("svg#ring-graph a.node").evaluate_all(
            "nodes => nodes.map(n => n.dataset.claim)")} == {c, b, d, a}  # from C: B and D, then A
        assert not [text for text in console if "Content Security Policy" in text], console
        browser.close()


def test_the_drawing_links_by_claimant_and_policy_and_marks_a_seeded_historys_confirmed_fraud(history_store,
                                                                                              typed_claims):
    """As the claim graph reads them: a claim by A's claimant (on A's policy) is drawn linked to A by
    both, and a training claim whose fraud its extract confirmed is marked like a confirmed outcome."""
    a, b, c, d = stored_chain(history_store, typed_claims)
    history = typed_claims.iloc[[1010]].copy()
    history["claim_id"] = "RG-H"
    for field in RING_FIELDS:
        history[field] = "RG-H-" + field
    history["claimant_phone"] = "RG-PH-AB"  # linked to A and B by their phone
    history["fraud_confirmed_at"] = pd.Timestamp("2024-01-01")
    history_store.seed(history)
    again = typed_claims.iloc[[1011]].copy()
    again["claim_id"] = "RG-E"
    for field in RING_FIELDS:
        again[field] = "RG-E-" + field
    stored_a = history_store.case(a)["claim"]
    again["claimant_id"], again["policy_id"] = stored_a["claimant_id"], stored_a["policy_id"]
    history_store.record(again, [decision("STANDARD_REVIEW")], "1")
    graph = history_store.case(a)["neighbourhood"]
    assert edges(graph)[(a, "RG-E")] == ["claimant_id", "policy_id"]
    marks = {n["claim_id"]: n["marks"] for n in graph["nodes"]}
    assert marks["RG-H"] == ["confirmed_fraud"] and marks["RG-E"] == []
