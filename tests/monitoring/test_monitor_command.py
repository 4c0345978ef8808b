"""`claimtriage monitor` end to end: a trained champion in a tmp registry, claims scored into a SQLite
store, outcomes and responses recorded through the review API, then the report, its JSON, the
MLflow run, and the exit codes a scheduler pages on."""

import json
import re
from datetime import timedelta

import mlflow
import pandas as pd
import pytest

from cli.main import main
from models.config import load_config
from monitoring.alerts import ALERT_EXIT_CODE
from serving.clock import utc_now
from serving.monitor_reads import period_decisions, review_cases
from serving.monitor_runs import latest_alerts
from serving.store import ClaimStore
from tests.conftest import use_home
from tests.serving.client import as_json
from tests.serving.conftest import postgres_database, store_url
from tests.serving.test_store import decision
from training.generate import generate_claims, write_claims

# The claim store on SQLite and, where a server answers, PostgreSQL (tests/serving/conftest.py).
STORE_FIXTURES = (postgres_database, store_url)
TRAINING, LIVE = 3_000, 300
QUIET = "[monitoring]\nmin_labels = 20\nmax_overdue_cases = 100000\npsi_alert = 50.0\n"


def settings(home, monitoring: str) -> None:
    (home / "claimtriage.toml").write_text("[training]\ncv_below_rows = 0\n" + monitoring)  # no cross-validation


def test_the_period_reads_count_a_claim_once_by_its_newest_decision_with_its_outcome_labels(store_url):
    from features.validation import validate_claims

    store = ClaimStore(store_url)
    claims = validate_claims(generate_claims(100, seed=3)).claims.iloc[:4]
    ids = claims["claim_id"].tolist()
    store.record(claims.iloc[:3], [decision("SIU_REFERRAL", 0.7), decision("AUTO_APPROVE"),
                                   decision("STANDARD_REVIEW")], "2")
    store.record(claims.iloc[[0]], [decision("STANDARD_REVIEW", 0.2)], "3")  # scored again: counted once
    store.record_outcome(ids[0], "confirmed_fraud", None, by="siu", via="api key siu")
    store.record_outcome(ids[1], "not_fraud", None, by="claims-system", via="api key claims-system")
    store.respond(ids[2], by="adjuster.ann", via="review page adjuster.ann")
    now = utc_now()
    found = period_decisions(store, now - timedelta(hours=1), now + timedelta(hours=1)).set_index("claim_id")
    assert sorted(found.index) == sorted(ids[:3])
    assert (found.loc[ids[0], "decision"], found.loc[ids[0], "model_version"]) == ("STANDARD_REVIEW", "3")
    assert found.loc[ids[0], "is_fraud"] and not found.loc[ids[0], "payable"]
    assert not found.loc[ids[1], "is_fraud"] and found["payable"].isna()[ids[1]]  # "not fraud" says nothing of payment
    assert found[["is_fraud", "payable"]].isna().loc[ids[2]].all() and pd.isna(found.loc[ids[2], "recorded_at"])
    assert found["fraud_probability"].dtype == "float64" and found.loc[ids[0], "fraud_probability"] == 0.2
    assert found.loc[ids[0], "report_date"] == claims["report_date"].iloc[0]
    assert period_decisions(store, now + timedelta(hours=1), now + timedelta(hours=2)).empty
    cases = review_cases(store, now - timedelta(days=30)).set_index("claim_id")
    assert cases.loc[ids[0], "status"] == "resolved" and cases.loc[ids[2], "assignee"] == "adjuster.ann"
    assert pd.api.types.is_datetime64_any_dtype(cases["respond_by"]) and pd.isna(cases.loc[ids[2], "resolved_at"])
    store.engine.dispose()


@pytest.fixture(scope="module")
def monitored(tmp_path_factory, empty_tracking_store):
    """A champion trained on the first 3,000 of 3,300 generated claims; the last 300 scored as live
    claims four days ago (so their review deadlines have passed), half of them with outcomes."""
    from serving.loading import load_scorer

    home = tmp_path_factory.mktemp("monitor")
    with pytest.MonkeyPatch.context() as patch:
        use_home(patch, home, empty_tracking_store)
        settings(home, QUIET)
        claims = generate_claims(TRAINING + LIVE, seed=21)
        write_claims(claims.iloc[:TRAINING], home / "training.parquet")
        assert main(["train", "--data", str(home / "training.parquet")]) == 0
        scorer, _ = load_scorer()
        live = claims.iloc[TRAINING:]
        scored = scorer.score(as_json(live, scorer.bundle), explain=False, now=utc_now() - timedelta(days=4))
        assert scored.n_errors == 0
        store = scorer.store
        for row in live.iloc[::2].itertuples():
            outcome = "confirmed_fraud" if row.is_fraud else "paid_as_filed" if row.paid_as_filed else "paid_adjusted"
            store.record_outcome(row.claim_id, outcome, None, by="claims-system", via="api key claims-system")
        for case in store.queue(limit=10)[:5]:
            store.respond(case["claim_id"], by="adjuster.ann", via="review page adjuster.ann")
        store.engine.dispose()
        yield home, patch


@pytest.mark.slow
def test_the_report_its_figures_and_the_mlflow_run_without_alerts(monitored, capsys):
    home, patch = monitored
    out = home / "reports" / "week.html"
    assert main(["monitor", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"{LIVE:,} claims decided" in printed and "ALERT" not in printed

    html = out.read_text()
    assert "Claim triage monitor" in html and "data:image/png;base64," in html
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.IGNORECASE)  # nothing fetched
    figures = json.loads(out.with_suffix(".json").read_text())
    assert figures["period"]["claims_decided"] == LIVE and figures["model_versions"] == ["1"]
    mix = figures["indicators"]["decision_mix"]
    assert sum(d["n"] for d in mix["overall"].values()) == LIVE and mix["by"] == "day"
    quality = figures["quality"]
    assert quality["label_delay"]["labelled"] == LIVE // 2
    assert quality["fraud_scores"]["n"] == LIVE // 2 and 0.5 < quality["fraud_scores"]["roc_auc"] <= 1
    assert quality["expected"]["approval_precision"] is None or 0 < quality["expected"]["approval_precision"] < 1
    deadlines = figures["indicators"]["deadlines"]
    assert deadlines["overdue_now"] > 0 and deadlines["responded_in_time"]["due"] > 0
    assert "adjuster.ann" in {a["assignee"] for a in figures["indicators"]["per_adjuster"]}
    drift = figures["drift"]
    assert drift["version"] == "1" and drift["note"] == ("300 claims: too few for a drift alert (500 needed, "
                                                         "[monitoring] min_drift_claims); the figures are shown as they are")
    assert {"fraud_probability", "anomaly_score"} <= {r["name"] for r in drift["rows"] if r["kind"] == "score"}
    assert all(r["n"] == LIVE for r in drift["rows"])

    runs = mlflow.search_runs(experiment_names=["claim-triage-monitoring"], output_format="list")
    assert len(runs) == 1 and runs[0].data.tags["model_versions"] == "1"
    assert runs[0].data.metrics["claims_decided"] == LIVE and runs[0].data.metrics["alerts"] == 0
    kept = {a.path for a in mlflow.MlflowClient().list_artifacts(runs[0].info.run_id, "report")}
    assert kept == {"report/week.html", "report/week.json"}


@pytest.mark.slow
def test_overdue_cases_above_the_threshold_alert_with_exit_code_3(monitored, capsys):
    home, patch = monitored
    settings(home, "[monitoring]\nmax_overdue_cases = 0\npsi_alert = 50.0\n")
    try:
        assert main(["monitor", "--json", "--out", str(home / "alerting.html")]) == ALERT_EXIT_CODE
    finally:
        settings(home, QUIET)
    figures = json.loads(capsys.readouterr().out)
    assert [a["name"] for a in figures["alerts"]] == ["overdue_cases"]
    assert "review cases are past a deadline now (more than 0 allowed)" in figures["alerts"][0]["message"]
    store = ClaimStore(load_config().database_url)  # kept for the service's /metrics, newest run last
    assert latest_alerts(store.engine, store.metadata) == {"overdue_cases": 1}
    store.engine.dispose()


@pytest.mark.slow
def test_an_empty_period_says_so_and_exits_0(monitored, capsys):
    assert main(["monitor", "--since", "2020-01-01", "--until", "2020-01-31"]) == 0
    assert "no claims were decided from 2020-01-01 00:00 to 2020-02-01 00:00" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("argv, message", [
    (["--since", "last week"], "--since 'last week' is not a date"),
    (["--since", "2026-11-30", "--until", "2026-11-01"], "--since 2026-11-30 00:00 is not before --until"),
])
def test_dates_that_cannot_be_used_are_usage_errors(monitored, capsys, argv, message):
    assert main(["monitor", *argv]) == 2
    assert message in capsys.readouterr().err


def test_the_report_renders_without_labels_or_a_profile_and_says_why():
    from models.config import DecisionTargets
    from monitoring.alerts import Alert
    from monitoring.indicators import indicators
    from monitoring.quality import quality
    from monitoring.report import drift_section, figures, headline_metrics, render_html

    scored = pd.Timestamp("2026-11-03 10:00")
    decided = pd.DataFrame({"decision": ["AUTO_APPROVE", "SIU_REFERRAL"], "scored_at": [scored] * 2,
                            "report_date": [scored - pd.Timedelta(hours=5)] * 2, "fraud_probability": [0.01, 0.7],
                            "approval_probability": [0.995, 0.1], "is_fraud": pd.array([None, None], dtype="boolean"),
                            "payable": pd.array([None, None], dtype="boolean"), "recorded_at": [pd.NaT] * 2})
    cases = pd.DataFrame({"status": ["open"], "assignee": [None], "opened_at": [scored],
                          "respond_by": [scored + pd.Timedelta(hours=24)], "resolve_by": [scored + pd.Timedelta(hours=72)],
                          "responded_at": [pd.NaT], "resolved_at": [pd.NaT]})
    since, until, now = pd.Timestamp("2026-11-02"), pd.Timestamp("2026-11-09"), pd.Timestamp("2026-11-10")
    found = figures({"since": "2026-11-02 00:00", "until": "2026-11-09 00:00", "now": "2026-11-10 00:00",
                     "claims_decided": 2}, ["4"], quality(decided, 30, 1.96, 10),
                    indicators(decided, cases, since, until, now, 56, DecisionTargets()),
                    drift_section([], "4", "claim-triage version 4 has no reference profile <old>"),
                    [Alert("overdue_cases", "1 review case is past a deadline now")])
    html = render_html(found)
    assert "not enough labels (0 labelled, 30 needed)" in html and "1 review case is past a deadline now" in html
    assert "has no reference profile &lt;old&gt;" in html  # escaped, never markup
    assert "<img" in html and 'src="data:image/png;base64,' in html  # the decision mix, drawn
    assert headline_metrics(found) == pytest.approx({
        "claims_decided": 2.0, "share_automatic": 0.5, "time_to_decision_median_hours": 5.0,
        "time_to_decision_p90_hours": 5.0, "responded_in_time_share": 0.0, "resolved_in_time_share": 0.0,
        "overdue_cases_now": 1.0, "expected_approval_precision": 0.995, "expected_referrals_fraud_share": 0.7,
        "labelled_share": 0.0, "alerts": 1.0})
