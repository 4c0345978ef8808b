"""The claim graph's features: exact values on chains, merges, ties, caps and outcomes, and the
same values online (both stores) as offline."""

import random
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from features.graph import GRAPH_FEATURES, OUTCOME_TIME_FIELD, GraphReport, GraphSettings, graph_features
from features.history import history_pool
from serving.store import ClaimStore

IDENTITIES = ("claimant_id", "policy_id", "payee_account", "claimant_phone", "claimant_address", "provider_id")
START = datetime(2025, 3, 1, 9, 0, 0)
STORED = {"decision": "AUTO_APPROVE", "deadlines": None,
          "scores": {"fraud_probability": 0.2, "approval_probability": 0.5, "anomaly_score": 0.4}}


@pytest.fixture
def template(typed_claims) -> dict:
    row = typed_claims.iloc[0].astype(object).where(typed_claims.iloc[0].notna(), None).to_dict()
    claim = {k: (v.to_pydatetime() if hasattr(v, "to_pydatetime") else v) for k, v in row.items() if v is not None}
    for field in ("is_fraud", "paid_as_filed", "true_fraud_prob", "true_paid_as_filed_prob", "is_injected_anomaly",
                  "ring_id", OUTCOME_TIME_FIELD, *IDENTITIES):
        claim.pop(field, None)
    return claim


def make(template: dict, claim_id: str, days: float, **identities) -> dict:
    """A claim of its own claimant and policy (unless given), reported `days` after START."""
    reported = START + timedelta(days=days)
    own = {"claimant_id": f"CL-{claim_id}", "policy_id": f"P-{claim_id}"}
    claim = dict(template, claim_id=claim_id, report_date=reported, loss_date=reported.replace(hour=0),
                 **(own | identities))
    claim["policy_start_date"] = datetime(2020, 1, 1)
    return claim


def frame(claims: list[dict], confirmed: dict[str, datetime] | None = None) -> pd.DataFrame:
    out = pd.DataFrame(claims)
    for name in ("report_date", "loss_date"):
        out[name] = out[name].astype("datetime64[s]")
    for name in IDENTITIES:
        if name not in out:
            out[name] = None
    out[OUTCOME_TIME_FIELD] = pd.Series([(confirmed or {}).get(c) for c in out["claim_id"]],
                                        dtype="datetime64[s]")
    return out


def offline(claims: list[dict], confirmed=None, settings=GraphSettings(), report=None) -> pd.DataFrame:
    """The offline features of every claim, the list being its own history."""
    return pd.DataFrame(graph_features(frame(claims, confirmed), settings=settings, report=report),
                        index=[c["claim_id"] for c in claims])


def test_a_chain_is_one_ring_although_its_ends_share_nothing(template):
    a = make(template, "A", 0, claimant_phone="PH1")
    b = make(template, "B", 1, claimant_phone="PH1", payee_account="AC1")
    c = make(template, "C", 2, payee_account="AC1", claimant_address="AD1")
    d = make(template, "D", 3, claimant_address="AD1")
    e = make(template, "E", 4, claimant_id="CL-A")  # A's claimant again: reaches the whole chain
    got = offline([a, b, c, d, e])
    assert got.loc["E", "ring_claims"] == 4  # A, B, C, D through A
    assert got.loc["E", "ring_claims_2hop"] == 2  # A, then B through A's phone
    assert got.loc["E", "ring_claimants"] == 3  # B, C, D: A's claimant is E's own
    assert got.loc["D", "ring_claims"] == 3 and got.loc["D", "ring_claims_2hop"] == 2
    assert got.loc["A", "ring_claims"] == 0 and np.isnan(got.loc["A", "ring_fraud_share"])
    assert got.loc["E", "ring_claims_90d"] == 4


def test_a_claim_joining_two_rings_sees_both_and_later_claims_see_the_merged_ring(template):
    ring1 = [make(template, f"R1{i}", i, claimant_phone="PH1") for i in range(3)]
    ring2 = [make(template, f"R2{i}", 10 + i, payee_account="AC2") for i in range(4)]
    bridge = make(template, "X", 20, claimant_phone="PH1", payee_account="AC2")
    later = make(template, "Y", 21, claimant_phone="PH1")
    got = offline(ring1 + ring2 + [bridge, later])
    assert got.loc["R23", "ring_claims"] == 3
    assert got.loc["X", "ring_claims"] == 7
    assert got.loc["Y", "ring_claims"] == 8  # ring 2 now reachable through X
    assert got.loc["Y", "ring_claims_2hop"] == 8  # the phone's 4 claims, X's account's 4


def test_claims_of_the_same_second_do_not_see_each_other_but_later_ones_see_both(template):
    first = make(template, "S1", 5, claimant_phone="PH1")
    second = make(template, "S2", 5, claimant_phone="PH1")
    later = make(template, "S3", 5 + 1 / 86_400, claimant_phone="PH1")
    got = offline([first, second, later])
    assert got.loc["S1", "ring_claims"] == 0 and got.loc["S2", "ring_claims"] == 0
    assert got.loc["S3", "ring_claims"] == 2


def test_the_90_day_window_excludes_a_claim_exactly_90_days_and_one_second_before(template):
    old = make(template, "O", 0, claimant_phone="PH1")
    edge = make(template, "E", 0, claimant_address="AD1")
    edge["report_date"] += timedelta(seconds=1)
    bridge = make(template, "B", 1, claimant_phone="PH1", claimant_address="AD1")
    now = make(template, "N", 90, claimant_phone="PH1")
    now["report_date"] = edge["report_date"] + timedelta(days=90)
    got = offline([old, edge, bridge, now])
    assert got.loc["N", "ring_claims"] == 3
    assert got.loc["N", "ring_claims_90d"] == 2  # exactly 90 days before counts, as the history windows do;
    # 90 days and a second before does not


def test_placeholders_and_overused_identities_link_nothing_and_are_reported(template):
    claims = [make(template, f"U{i}", i, claimant_phone="unknown") for i in range(3)]
    claims += [make(template, f"C{i}", 10 + i, claimant_phone="CALLCENTRE") for i in range(5)]
    report = GraphReport()
    got = offline(claims, settings=GraphSettings(max_claims_per_identity=3), report=report)
    assert (got.loc[["U0", "U1", "U2"], "ring_claims"] == 0).all()
    assert got.loc["C2", "ring_claims"] == 2  # the first three link
    assert got.loc["C3", "ring_claims"] == 0 and got.loc["C4", "ring_claims"] == 0  # then the phone is too busy
    assert report.placeholder_values == 3
    assert report.over_shared_links == 2
    assert report.over_shared_values == {"claimant_phone": 1}


def test_fraud_counts_only_once_confirmed_before_the_claim(template):
    a = make(template, "A", 0, claimant_phone="PH1")
    b = make(template, "B", 1, claimant_phone="PH1")
    c = make(template, "C", 30, claimant_phone="PH1")
    d = make(template, "D", 60, claimant_phone="PH1")
    confirmed = {"A": START + timedelta(days=40), "B": START + timedelta(days=200)}
    e = make(template, "E", 200, claimant_phone="PH1")  # reported the second B's fraud was confirmed
    got = offline([a, b, c, d, e], confirmed)
    assert got.loc["C", "ring_fraud_share"] == 0.0  # A confirmed after C was reported
    assert got.loc["D", "ring_fraud_share"] == pytest.approx(1 / 3)
    assert got.loc["E", "ring_fraud_share"] == pytest.approx(1 / 4)  # B not yet: strictly before


def test_the_settings_refuse_what_cannot_link():
    with pytest.raises(ValueError, match="claim_amount"):
        GraphSettings(link_fields=("claim_amount",))
    with pytest.raises(ValueError, match="at least 1"):
        GraphSettings(max_claims_per_identity=0)


# --- online, from the claim store --------------------------------------------------------------

def assert_online_equals_offline(store: ClaimStore, probe: list[dict], settings: GraphSettings) -> None:
    online = store.history_features(probe, GRAPH_FEATURES, settings)
    probe_frame = frame(probe)
    pool = history_pool(probe_frame, store.book())
    expected = graph_features(pool, slice(len(pool) - len(probe), len(pool)), settings)
    for name in GRAPH_FEATURES:
        np.testing.assert_array_equal(online[name], expected[name], err_msg=name)


def crowded(rng: random.Random, template: dict, claim_id: str) -> dict:
    """A claim whose identities come from a few values each (some placeholders, some absent),
    reported at one of a few moments (ties in the same second, exactly 90 days apart)."""
    claim = make(template, claim_id, rng.choice([0, 0, 1, 30, 90, 91, 200]))
    for field, values in (("claimant_id", 9), ("policy_id", 9), ("payee_account", 5), ("claimant_phone", 5),
                          ("claimant_address", 4), ("provider_id", 3)):
        choice = rng.randrange(values + 1)
        if choice == values:
            claim[field] = "n/a" if field not in ("claimant_id", "policy_id") else claim[field]
        else:
            claim[field] = f"{field[:3].upper()}-{choice}"
    return claim


@pytest.mark.parametrize("settings", [GraphSettings(max_claims_per_identity=6),
                                      GraphSettings(link_fields=IDENTITIES, max_claims_per_identity=1000)],
                         ids=["capped", "with providers, uncapped"])
def test_online_features_equal_offline_through_scoring_rescoring_and_outcomes(history_store, template, settings,
                                                                              monkeypatch):
    """Claims scored in batches, some scored again with other identities and times, some with fraud
    confirmed at chosen moments: after each step, the features of probe claims online equal the
    offline code's over the stored claims, on each store (index, SQLite in SQL, PostgreSQL)."""
    rng = random.Random(11)
    claims = [crowded(rng, template, f"K{i:03d}") for i in range(60)]
    store = history_store
    for step in range(4):
        batch = claims[step * 15:(step + 1) * 15]
        if step:  # some earlier claims scored again, with other identities and times
            batch += [crowded(rng, template, c["claim_id"]) for c in rng.sample(claims[:step * 15], 4)]
        store.record(batch, [STORED] * len(batch), "1")
        for claim in rng.sample(batch, 2):
            when = START + timedelta(days=rng.choice([0.5, 1, 45, 90, 95]))  # some at a probe's very second
            monkeypatch.setattr("serving.store.utc_now", lambda when=when: when)
            try:
                store.record_outcome(claim["claim_id"], "confirmed_fraud", None, "tester", via="test")
            except Exception as error:  # noqa: BLE001 - recorded once per claim: a second try is refused
                assert "already recorded" in str(error) or "resolved" in str(error)
        probe = [crowded(rng, template, f"Q{step}{i}") for i in range(12)]
        probe += [dict(crowded(rng, template, claims[0]["claim_id"]))]  # a stored claim scored again
        assert_online_equals_offline(store, probe, settings)


def test_an_outcome_recorded_by_another_process_reaches_this_index(tmp_path, template, monkeypatch):
    url = f"sqlite:///{tmp_path / 'claims.db'}"
    ours, theirs = ClaimStore(url), ClaimStore(url)
    claims = [make(template, "A", 0, claimant_phone="PH1"), make(template, "B", 1, claimant_phone="PH1")]
    ours.record(claims, [STORED] * 2, "1")
    probe = [make(template, "P", 10, claimant_phone="PH1")]
    assert ours.history_features(probe, ["ring_fraud_share"])["ring_fraud_share"][0] == 0.0
    monkeypatch.setattr("serving.store.utc_now", lambda: START + timedelta(days=5))
    theirs.record_outcome("A", "confirmed_fraud", None, "tester", via="test")
    assert ours.history_features(probe, ["ring_fraud_share"])["ring_fraud_share"][0] == 0.5


def test_a_seeded_history_brings_when_its_fraud_was_confirmed(history_store, template, monkeypatch):
    """The training claims a service is seeded with carry their confirmation times, and the review's
    outcomes add the claims decided here."""
    ring = [make(template, f"H{i}", i, payee_account="AC1") for i in range(4)]
    confirmed = {"H0": START + timedelta(days=10), "H1": START + timedelta(days=50)}
    history_store.seed(frame(ring, confirmed))
    history_store.record([make(template, "S", 5, payee_account="AC1")], [STORED], "1")
    monkeypatch.setattr("serving.store.utc_now", lambda: START + timedelta(days=20))
    history_store.record_outcome("S", "confirmed_fraud", None, "tester", via="test")
    probe = [make(template, "P1", 15, payee_account="AC1"), make(template, "P2", 30, payee_account="AC1")]
    got = history_store.history_features(probe, ["ring_fraud_share"])["ring_fraud_share"]
    # H0 confirmed from day 10, S from day 20, H1 only from day 50; P2 also sees P1, of its batch
    np.testing.assert_array_equal(got, [1 / 5, 2 / 6])
    assert_online_equals_offline(history_store, probe, GraphSettings())


def test_a_claim_confirmed_twice_counts_from_the_first_confirmation(history_store, template, monkeypatch):
    """A history claim with its confirmation, scored again here and given a confirmed-fraud outcome
    later: its fraud was known from the history's moment on."""
    ring = [make(template, f"H{i}", i, payee_account="AC1") for i in range(3)]
    history_store.seed(frame(ring, {"H0": START + timedelta(days=10)}))
    history_store.record([ring[0]], [STORED], "1")
    monkeypatch.setattr("serving.store.utc_now", lambda: START + timedelta(days=20))
    history_store.record_outcome("H0", "confirmed_fraud", None, "tester", via="test")
    probe = [make(template, "P", 15, payee_account="AC1")]
    assert history_store.history_features(probe, ["ring_fraud_share"])["ring_fraud_share"][0] == 1 / 3
    assert_online_equals_offline(history_store, probe, GraphSettings())
