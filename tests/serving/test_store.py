"""The claim store: history for exactly-equal online features, claims kept once, decisions kept all."""

import time

import numpy as np
import pandas as pd
import pytest

from features.builder import FeatureBuilder
from features.graph import GraphSettings
from features.history import history_feature_requirements, history_features
from serving.store import ClaimStore


@pytest.fixture
def store(history_store):
    return history_store


def decision(label: str, fraud: float = 0.1, respond_by: str = "2026-11-26T12:00:00.000Z",
             resolve_by: str = "2026-11-28T12:00:00.000Z") -> dict:
    return {"decision": label, "scores": {"fraud_probability": fraud, "approval_probability": 0.8,
                                          "anomaly_score": 0.3},
            "deadlines": None if label == "AUTO_APPROVE" else {"respond_by": respond_by, "resolve_by": resolve_by}}


def test_features_from_store_history_equal_the_offline_pipeline(store, typed_claims):
    claims = typed_claims.head(4000)
    builder = FeatureBuilder(graph=GraphSettings(link_fields=())).fit(claims)  # the graph: test_graph_history.py
    offline = builder.transform(claims)
    assert store.seed(claims) == len(claims)
    for i in list(range(0, 4000, 97)) + list(np.flatnonzero(claims["claimant_id"].duplicated().to_numpy())[:20]):
        one = claims.iloc[[i]]
        online = builder.transform(one, history=store.history(one))
        np.testing.assert_array_equal(online[0], offline[i])


def test_history_returns_only_claims_sharing_an_entity(store, typed_claims):
    claims = typed_claims.head(2000)
    store.seed(claims)
    one = claims.iloc[[1500]]
    history = store.history(one)
    shares = np.zeros(len(history), bool)
    for col in ("claimant_id", "policy_id", "payee_account", "claimant_phone", "claimant_address", "provider_id"):
        shares |= (history[col] == one[col].iloc[0]).to_numpy(dtype=bool, na_value=False)
    assert shares.all() and one["claim_id"].iloc[0] in set(history["claim_id"])
    assert str(history["report_date"].dtype).startswith("datetime64")


def test_rescoring_keeps_one_claim_and_every_decision(store, typed_claims):
    claims = typed_claims.head(50)
    store.seed(claims.head(40))
    again = claims.iloc[[10]]
    store.record(again, [decision("STANDARD_REVIEW")], "3")
    store.record(again.assign(claim_amount=again["claim_amount"] * 2), [decision("SIU_REFERRAL")], "3")
    assert store.count_claims() == 40
    kept = store.decisions_for(again["claim_id"].iloc[0])
    assert [d["decision"] for d in kept] == ["STANDARD_REVIEW", "SIU_REFERRAL"]
    assert kept[1]["response"]["decision"] == "SIU_REFERRAL" and kept[0]["model_version"] == "3"
    stored = store.history(again)
    row = stored.loc[stored["claim_id"] == again["claim_id"].iloc[0]]
    assert len(row) == 1 and row["claim_amount"].iloc[0] == pytest.approx(again["claim_amount"].iloc[0] * 2)


def test_seeding_twice_adds_nothing(store, typed_claims):
    claims = typed_claims.head(100)
    assert store.seed(claims) == 100
    assert store.seed(claims) == 0
    assert store.count_claims() == 100


def test_a_failed_record_leaves_nothing_half_written(store, typed_claims):
    claims = typed_claims.head(5)
    store.seed(claims.head(3))
    with pytest.raises(Exception):
        store.record(claims.iloc[[4]], [{"decision": None, "scores": {}}], "1")  # no scores: must not commit
    assert store.count_claims() == 3
    assert store.decisions_for(claims["claim_id"].iloc[4]) == []


def _python_record(row) -> dict:
    """A typed claim row as the online path holds it: plain Python values, missing ones absent."""
    out = {}
    for name, value in row.items():
        if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)) or value is pd.NaT:
            continue
        out[name] = value.to_pydatetime() if isinstance(value, pd.Timestamp) else \
            value.item() if isinstance(value, np.generic) else value
    return out


def test_online_history_equals_the_frame_pipeline_claim_by_claim_and_for_a_batch(store, typed_claims):
    claims = typed_claims.head(6000).copy()
    # Some claims lack optional entities; some are reported at the very second of an earlier one.
    claims.loc[claims.index[::13], "provider_id"] = None
    claims.loc[claims.index[::17], "payee_account"] = None
    claims.loc[claims.index[5::50], "report_date"] = claims["report_date"].shift(1).loc[claims.index[5::50]]
    # The claim graph's features need the whole book as history, not the claims sharing an entity
    # that `store.history` gives: tests/serving/test_graph_history.py holds them against the store.
    builder = FeatureBuilder(graph=GraphSettings(link_fields=())).fit(claims)
    names = [s.name for s in builder.specs_ if s.source == "history"]
    # Edge cases at the boundaries: another claimant on the same payee at the very same second,
    # and the same claimant exactly 90 and 365 days after an earlier claim.
    bases = claims.iloc[:3000].loc[lambda f: f["payee_account"].notna()].iloc[::100]
    twins = bases.assign(claim_id="TA-" + bases["claim_id"], claimant_id="TCA-" + bases["claimant_id"])
    edges = pd.concat([
        bases.assign(claim_id="T1-" + bases["claim_id"], claimant_id="TCB-" + bases["claimant_id"]),
        bases.assign(claim_id="T2-" + bases["claim_id"], report_date=bases["report_date"] + pd.Timedelta(days=90)),
        bases.assign(claim_id="T3-" + bases["claim_id"], report_date=bases["report_date"] + pd.Timedelta(days=365)),
    ])
    store.seed(pd.concat([claims.iloc[:5000], twins]))
    shared = np.zeros(len(claims), bool)
    for col in ("claimant_id", "payee_account", "claimant_phone", "claimant_address", "provider_id", "policy_id"):
        shared |= claims[col].duplicated(keep=False).to_numpy() & claims[col].notna().to_numpy()
    picks = sorted(set(range(0, 6000, 61)) | set(np.flatnonzero(shared)[:150].tolist())
                   | set(range(5, 6000, 500)))
    assert len(picks) > 200
    candidates = pd.concat([claims, edges], ignore_index=True)
    edge_rows = list(range(len(claims), len(candidates)))
    rows = picks + edge_rows
    for i in picks[::3] + edge_rows:  # one at a time (the batch below takes them all)
        one = candidates.iloc[[i]]
        record = _python_record(one.iloc[0])
        frame_history = history_features(one, store.history(one), names)
        sql_history = store.history_features([record], names)
        for name in names:
            np.testing.assert_array_equal(sql_history[name], frame_history[name], err_msg=f"{name} row {i}")
        single = {name: values[0] for name, values in sql_history.items()}
        np.testing.assert_array_equal(builder.transform_record(record, single),
                                      builder.transform(one, history=store.history(one)), err_msg=f"row {i}")
    # A whole batch at once: its claims count each other (reported earlier, not at the same
    # second), and a claim already stored counts once, in its new version.
    batch = candidates.iloc[rows].reset_index(drop=True)
    records = [_python_record(row) for _, row in batch.iterrows()]
    frame_history = history_features(batch, store.history(batch), names)
    sql_history = store.history_features(records, names)
    for name in names:
        np.testing.assert_array_equal(sql_history[name], frame_history[name], err_msg=name)
    assert any(sql_history[n].max() > frame_history[n].min() for n in names)  # not all missing or zero
    np.testing.assert_array_equal(builder.transform_records(records, sql_history),
                                  builder.transform(batch, history=store.history(batch)))
    assert store.count_claims() == 5000 + len(twins)  # asking for features kept nothing


def test_a_batch_counts_its_own_earlier_claims_as_the_offline_pipeline_does(store, typed_claims):
    """Claims of one entity sent together: each sees those of the batch reported before it."""
    claims = typed_claims.head(300).copy()
    store.seed(claims.head(100))
    batch = claims.iloc[100:160].copy()
    batch.loc[batch.index[::2], "claimant_id"] = claims["claimant_id"].iloc[3]  # one claimant, known to the store
    batch["payee_account"] = "PAYEE-SHARED"                                     # one payee, many claimants
    batch["report_date"] = batch["report_date"].iloc[0] + pd.to_timedelta(np.arange(60) // 4, unit="D")
    names = list(history_feature_requirements())  # every one, even those constant in these few claims
    records = [_python_record(row) for _, row in batch.iterrows()]
    online = store.history_features(records, names)
    offline = history_features(batch, store.history(batch), names)
    for name in names:
        np.testing.assert_array_equal(online[name], offline[name], err_msg=name)
    counts = online["claimant_claims_365d"]
    assert counts[4] > counts[2] == counts[0]  # the same second: not before each other
    assert online["payee_account_other_claimants"][-1] > 0


@pytest.mark.parametrize("background", [True, False])
def test_the_service_folds_the_log_into_the_database_off_the_request_path(tmp_path, typed_claims, background):
    """With background checkpoints no commit pays for a checkpoint, yet the log still reaches the file."""
    path = tmp_path / "claims.db"
    store = ClaimStore(f"sqlite:///{path}", background_checkpoints=background)
    store.seed(typed_claims.head(10))
    time.sleep(1.2)
    size = path.stat().st_size
    for i in range(40):
        store.record(typed_claims.iloc[[100 + i]], [decision("STANDARD_REVIEW")], "1")
    time.sleep(1.2)
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == (0 if background else 1000)
    # Pages reach the database file only through a checkpoint; SQLite's own threshold (1,000
    # log frames) is not reached by these few commits, so only the background thread grows the file.
    assert (path.stat().st_size > size) == background
    assert store.count_claims() == 50


@pytest.mark.parametrize("in_memory", [None, False], ids=["default", "history in SQL"])
def test_a_store_from_before_gets_its_seq_and_the_indexes_it_counts_with_on_opening(store_url, typed_claims,
                                                                                    in_memory):
    import sqlalchemy as sa

    old = ClaimStore(store_url)
    old.seed(typed_claims.head(50))
    with old.engine.begin() as conn:  # as an earlier version left it: one single-column index per entity, no seq
        for index in old.claims.indexes:
            conn.exec_driver_sql(f"DROP INDEX {index.name}")
        conn.exec_driver_sql("ALTER TABLE claims DROP COLUMN seq")
        for name in ("claimant_id", "policy_id", "payee_account", "claimant_phone", "claimant_address", "provider_id"):
            conn.exec_driver_sql(f"CREATE INDEX ix_claims_{name} ON claims ({name})")
    old.engine.dispose()
    store = ClaimStore(store_url, history_in_memory=in_memory)
    inspector = sa.inspect(store.engine)
    names = {ix["name"] for ix in inspector.get_indexes("claims")}
    entity_indexes = {f"ix_claims_{name}_at" for name in ("claimant_id", "policy_id", "payee_account",
                                                         "claimant_phone", "claimant_address", "provider_id")}
    # History in memory (SQLite's default) needs no entity index; counted in SQL, it needs all six.
    assert names == {"ix_claims_seq"} | (set() if store.history_in_memory else entity_indexes)
    assert store.history_in_memory == (in_memory is None and store_url.startswith("sqlite"))
    assert "seq" in {c["name"] for c in inspector.get_columns("claims")}
    assert store.count_claims() == 50
    store.record(typed_claims.iloc[[60]], [decision("STANDARD_REVIEW")], "1")  # old rows (no seq) and new live together
    assert store.count_claims() == 51


LACKING = ["claimant_id", "report_date", "claim_amount", "policy_id", "loss_type"]


def test_claims_from_an_extract_lacking_fields_are_kept_with_those_fields_absent(store, typed_claims):
    """A version trained on an extract without claimant ids, report dates or amounts serves: its
    store keeps the claims with those fields absent (never invented) and shows their rings."""
    claims = typed_claims.head(300).drop(columns=LACKING)
    claims.loc[7, "payee_account"] = "ACCOUNT-SHARED"
    assert store.seed(claims) == 300
    scored = claims.iloc[[5]].assign(claim_id="NEW-1", payee_account="ACCOUNT-SHARED")
    store.record(scored, [decision("STANDARD_REVIEW")], "4")
    case = store.case("NEW-1")
    assert case["claim"]["claim_id"] == "NEW-1"
    assert not set(LACKING) & set(case["claim"]), case["claim"]
    assert case["claim"]["loss_date"] == claims.iloc[5]["loss_date"].to_pydatetime()
    # The ring still links claims that share a payee account, though none has a report time.
    assert [(r["claim_id"], r["shares"]) for r in case["ring"] if "payee_account" in r["shares"]] == \
        [(claims.iloc[7]["claim_id"], ["payee_account"])]
    assert store.history_features([{"claim_id": "NEW-2", "payee_account": "x"}], []) == {}


def test_a_store_written_when_claim_fields_were_required_lets_them_be_absent(tmp_path, typed_claims):
    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = ClaimStore(url)
    old.seed(typed_claims.head(20))
    old.engine.dispose()
    # Rebuild the claims table as earlier versions created it: required fields NOT NULL.
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        ddl = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = 'claims'").scalar_one()
        required = ddl.replace("report_date DATETIME,", "report_date DATETIME NOT NULL,") \
            .replace("claimant_id VARCHAR(128),", "claimant_id VARCHAR(128) NOT NULL,")
        assert required != ddl
        conn.exec_driver_sql("ALTER TABLE claims RENAME TO claims_before")
        conn.exec_driver_sql("DROP INDEX ix_claims_seq")
        conn.exec_driver_sql(required)
        conn.exec_driver_sql("INSERT INTO claims SELECT * FROM claims_before")
        conn.exec_driver_sql("DROP TABLE claims_before")
        conn.exec_driver_sql("CREATE INDEX ix_claims_seq ON claims (seq)")
    engine.dispose()

    store = ClaimStore(url)
    assert store.count_claims() == 20
    nullable = {c["name"]: c["nullable"] for c in sa.inspect(store.engine).get_columns("claims")}
    assert nullable["report_date"] and nullable["claimant_id"] and not nullable["claim_id"]
    assert "ix_claims_seq" in {ix["name"] for ix in sa.inspect(store.engine).get_indexes("claims")}
    store.seed(typed_claims.iloc[20:30].drop(columns=["report_date", "claimant_id"]))
    assert store.count_claims() == 30
    kept = store.case(typed_claims["claim_id"].iloc[3])["claim"]
    assert kept["report_date"] == typed_claims["report_date"].iloc[3].to_pydatetime()


def test_without_report_dates_or_claimant_ids_history_counts_by_loss_date_and_policy(store, typed_claims):
    """An extract without report dates places claims by their loss; without claimant ids the policy
    stands in as the person: counted alike offline, from the index and in SQL, claim by claim and
    for a batch that counts its own earlier claims."""
    claims = typed_claims.head(3000).drop(columns=["report_date", "claimant_id"])
    store.seed(claims.head(2400))
    batch = claims.iloc[2400:2460].copy()
    batch["payee_account"] = "PAYEE-SHARED"
    batch.loc[batch.index[::3], "policy_id"] = claims["policy_id"].iloc[5]  # one policy, known to the store
    batch["loss_date"] = batch["loss_date"].iloc[0] + pd.to_timedelta(np.arange(60) // 4, unit="D")
    names = [n for n, needs in history_feature_requirements("loss_date", "policy_id").items()
             if "claimant_id" not in needs]
    assert "payee_account_other_claimants" in names and "policy_claims_365d" in names
    records = [_python_record(row) for _, row in batch.iterrows()]
    online = store.history_features(records, names)
    offline = history_features(batch, store.history(batch), names)
    for name in names:
        np.testing.assert_array_equal(online[name], offline[name], err_msg=name)
    assert online["payee_account_other_claimants"][-1] > 0 and online["policy_claims_365d"][3] > 0
    for i in range(0, 60, 7):
        one = batch.iloc[[i]]
        alone = store.history_features([records[i]], names)
        offline_one = history_features(one, store.history(one), names)
        for name in names:
            np.testing.assert_array_equal(alone[name], offline_one[name], err_msg=f"{name} row {i}")
