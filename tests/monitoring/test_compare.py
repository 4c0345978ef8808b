"""`claimtriage compare` on a claim store filled directly: champion decisions through the store's own
API, the challenger's shadow rows into `shadow_decisions`, outcomes through the review workflow;
versions in a private registry. The matrix, the mix and the ranking quality are known exactly."""

import json

import pytest
import sqlalchemy as sa
from mlflow import MlflowClient

from cli.main import main
from features.validation import validate_claims
from models.config import load_config
from monitoring.compare import agreement, decision_mix, live_comparison
from serving.compare_reads import shadow_pairs
from serving.shadow import shadow_table
from serving.store import ClaimStore
from tests.conftest import use_home
from training.generate import generate_claims

AA, SR, ER, SIU = "AUTO_APPROVE", "STANDARD_REVIEW", "ENHANCED_REVIEW", "SIU_REFERRAL"
CHAMPION = [AA, AA, AA, SR, SR, SR, ER, SIU, SIU, AA]
CHALLENGER = [AA, AA, SR, SR, SR, SIU, ER, SIU, SR, AA]
# Outcomes of the first eight claims: the challenger's fraud probabilities rank them perfectly, the
# champion's exactly backwards.
FRAUD = [False, False, False, False, True, True, True, True]
OUTCOMES = ["confirmed_fraud" if f else "paid_as_filed" for f in FRAUD]


@pytest.fixture(scope="module")
def filled(tmp_path_factory, empty_tracking_store):
    """12 claims decided by champion version 1; 10 of them shadowed by version 2 (one twice: the newest
    counts), one by version 3; outcomes on 8; registry versions 1-3, champion 1, no challenger alias."""
    home = tmp_path_factory.mktemp("compare")
    with pytest.MonkeyPatch.context() as patch:
        use_home(patch, home, empty_tracking_store)
        (home / "claimtriage.toml").write_text("[monitoring]\nmin_labels = 4\n")
        yield fill(home)


def fill(home):
    config = load_config()
    claims = validate_claims(generate_claims(200, seed=3)).claims.head(12)
    ids = claims["claim_id"].tolist()
    store = ClaimStore(config.database_url)
    champion = CHAMPION + [SR, SR]
    n = len(FRAUD)
    store.record(claims, [{"decision": d, "scores": {"fraud_probability": 1 - i / 20, "approval_probability": 0.5,
                                                     "anomaly_score": 0.1},
                           "deadlines": {"respond_by": "2026-12-02T12:00:00Z", "resolve_by": "2026-12-04T12:00:00Z"}}
                          for i, d in enumerate(champion)], "1")
    with store.engine.connect() as conn:
        decision_of = dict(conn.execute(sa.select(store.decisions.c.claim_id, store.decisions.c.id)).all())
    table = shadow_table(store.metadata)
    table.create(store.engine, checkfirst=True)

    def shadow(i, version, decision, fraud_probability):
        return {"claim_id": ids[i], "decision_id": decision_of[ids[i]], "model_version": version, "decision": decision,
                "fraud_probability": fraud_probability, "approval_probability": 0.9, "anomaly_score": 0.2,
                "scored_at": claims["report_date"].iloc[0].to_pydatetime()}

    rows = [shadow(0, "2", SIU, 0.99)]  # superseded by the newer row of the same claim below
    rows += [shadow(i, "2", d, i / 20 if i < n else 0.5) for i, d in enumerate(CHALLENGER)]
    rows += [shadow(11, "3", AA, 0.01)]
    with store.engine.begin() as conn:
        conn.execute(table.insert(), rows)
    for claim_id, outcome in zip(ids, OUTCOMES):
        store.record_outcome(claim_id, outcome, None, by="claims-system", via="api key claims-system")
    client = MlflowClient(tracking_uri=config.tracking_uri, registry_uri=config.tracking_uri)
    name = config.registry.model_name
    client.create_registered_model(name)
    for _ in range(3):
        client.create_model_version(name, source=str(home))
    client.set_registered_model_alias(name, config.registry.champion_alias, "1")
    store.engine.dispose()
    return config, store, client


def test_pairs_matrix_mix_and_quality_are_exact(filled):
    config, store, _ = filled
    pairs = shadow_pairs(store, "2")
    assert len(pairs) == len(CHALLENGER) and set(pairs["model_version"]) == {"1"}
    matrix = agreement(pairs)
    assert list(matrix.index) == [AA, SR, ER, SIU] == list(matrix.columns)
    expected = {(AA, AA): 3, (AA, SR): 1, (SR, SR): 2, (SR, SIU): 1, (ER, ER): 1, (SIU, SIU): 1, (SIU, SR): 1}
    for row in matrix.index:
        for col in matrix.columns:
            assert matrix.loc[row, col] == expected.get((row, col), 0), (row, col)
    mix = decision_mix(pairs)
    assert mix.loc[AA].tolist() == pytest.approx([0.4, 0.3, -0.1])
    assert mix.loc[SR].tolist() == pytest.approx([0.3, 0.4, 0.1])
    assert mix.loc[[ER, SIU], "difference"].tolist() == pytest.approx([0.0, 0.0])
    found = live_comparison(pairs, min_labels=4, z=1.96, bins=5)
    assert found["agreement"]["share"] == pytest.approx(0.7) and found["labelled"] == len(FRAUD)
    assert found["quality"]["challenger"]["fraud_scores"]["roc_auc"] == pytest.approx(1.0)
    assert found["quality"]["champion"]["fraud_scores"]["roc_auc"] == pytest.approx(0.0)
    # Of the labelled automatic approvals (claims 0-2 for the champion, 0-1 for the challenger) all were payable.
    assert found["quality"]["champion"]["approval_precision"]["n"] == 3
    assert found["quality"]["challenger"]["approval_precision"]["n"] == 2


def test_a_decision_the_policy_does_not_know_is_an_error(filled):
    _, store, _ = filled
    pairs = shadow_pairs(store, "2")
    pairs.loc[0, "challenger_decision"] = "MAYBE"
    with pytest.raises(ValueError, match="challenger's decisions include MAYBE"):
        agreement(pairs)


def test_compare_names_what_exists_says_when_nothing_is_shadowed_and_reports(filled, capsys):
    config, _, client = filled
    assert main(["compare"]) == 2  # no challenger alias yet
    assert "no 'challenger' alias (versions: 1, 2, 3; aliases: champion -> 1)" in capsys.readouterr().err
    assert main(["compare", "--version", "9"]) == 2
    assert "has no version 9; versions: 1, 2, 3" in capsys.readouterr().err
    assert main(["compare", "--version", "1"]) == 0
    assert "no shadow decisions of version 1" in capsys.readouterr().out
    assert main(["compare", "--version", "2", "--since", "2099-01-01"]) == 0
    assert "no shadow decisions of version 2 since 2099-01-01" in capsys.readouterr().out
    client.set_registered_model_alias(config.registry.model_name, config.registry.challenger_alias, "2")
    assert main(["compare"]) == 0
    text = capsys.readouterr().out
    assert "10 claims scored by both (challenger version 2, champion version 1)" in text
    assert "agreement: 70.0%" in text
    assert main(["compare", "--json", "--version", "3"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["claims"] == 1 and found["agreement"]["matrix"][SR][AA] == 1
