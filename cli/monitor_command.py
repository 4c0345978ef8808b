"""`claimtriage monitor`: how the models did over a period, from the claim store, the outcomes and
the registry: drift, decision mix, quality realised and expected, the service indicators; an HTML
report, the same figures as JSON, an MLflow run holding both, and alerts a scheduler can page on.

Exit codes: 0 no alert (an empty period included), 3 (`ALERT_EXIT_CODE`) an alert fired, 2 a
usage error (a date that is not one, a period that ends before it starts)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pandas as pd

from monitoring.alerts import ALERT_EXIT_CODE, alerts

NAME = "monitor"
EXPERIMENT = "claim-triage-monitoring"
# The scores as stored with each decision; a version without an eligibility model has no profile of
# approval_probability, and drift() leaves out columns the profile does not have.
SCORE_COLUMNS = ("fraud_probability", "approval_probability", "anomaly_score")


def add_parser(sub) -> None:
    monitor = sub.add_parser(NAME, help="drift, decision mix, quality and service indicators over a period; "
                                        f"exits {ALERT_EXIT_CODE} when an alert fires")
    monitor.add_argument("--since", help="first day (YYYY-MM-DD) or moment (ISO, UTC) of the period "
                                         "(default: [monitoring] period_days before --until)")
    monitor.add_argument("--until", help="last day included (YYYY-MM-DD), or the moment the period ends (ISO, "
                                         "UTC, excluded); default now")
    monitor.add_argument("--out", help="the HTML report (default monitor-report.html in $CLAIMTRIAGE_HOME, else the "
                                       "working folder); "
                                       "the figures are written beside it as .json")
    monitor.add_argument("--json", action="store_true", help="print the figures as JSON")


def period_bounds(since: str | None, until: str | None, now: datetime, period_days: int) -> tuple[datetime, datetime]:
    """[since, until) as naive UTC moments. A date alone for --until means through that day."""
    end = now if until is None else moment(until, "--until", whole_day=True)
    start = end - timedelta(days=period_days) if since is None else moment(since, "--since", whole_day=False)
    if not start < end:
        raise ValueError(f"--since {start:%Y-%m-%d %H:%M} is not before --until {end:%Y-%m-%d %H:%M}")
    return start, end


def moment(text: str, option: str, whole_day: bool) -> datetime:
    try:
        day = date.fromisoformat(text)
    except ValueError:
        day = None
    if day is not None:
        return datetime(day.year, day.month, day.day) + (timedelta(days=1) if whole_day else timedelta())
    try:
        moment = datetime.fromisoformat(text.removesuffix("Z"))
    except ValueError:
        raise ValueError(f"{option} {text!r} is not a date: give YYYY-MM-DD or an ISO date-time "
                         "such as 2026-11-30T12:00") from None
    return moment.astimezone(timezone.utc).replace(tzinfo=None) if moment.tzinfo is not None else moment


def run(args: argparse.Namespace, config) -> int:
    from monitoring.quality import quality
    from monitoring.report import as_json, figures, render_html
    from serving.clock import utc_now
    from serving.monitor_reads import service_indicators
    from serving.monitor_runs import record_monitor_run
    from serving.store import ClaimStore

    now = utc_now()
    since, until = period_bounds(args.since, args.until, now, config.monitoring.period_days)
    store = ClaimStore(config.database_url)
    settings = config.monitoring
    decided, found_indicators = service_indicators(store, since, until, now, settings.weekly_after_days,
                                                   config.targets)
    if decided.empty:
        print(f"no claims were decided from {since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M} (UTC) in "
              f"{config.database_url}: nothing to monitor, no alert")
        return 0
    found_quality = quality(decided, settings.min_labels, settings.confidence_z, settings.reliability_bins)
    versions = sorted(decided["model_version"].unique(), key=_version_order)
    drift_rows, drift = _drift(config, store, decided)
    raised = alerts(found_quality, found_indicators, drift_rows, settings, config.targets)
    period = {"since": f"{since:%Y-%m-%d %H:%M}", "until": f"{until:%Y-%m-%d %H:%M}",
              "now": f"{now:%Y-%m-%d %H:%M}", "claims_decided": len(decided)}
    found = figures(period, versions, found_quality, found_indicators, drift, raised)
    html_path = Path(args.out) if args.out else config.home / "monitor-report.html"
    json_path = html_path.with_suffix(".json")
    html_path.parent.mkdir(parents=True, exist_ok=True)
    html_path.write_text(render_html(found), encoding="utf-8")
    json_path.write_text(as_json(found), encoding="utf-8")
    run_id = _record_run(config, found, html_path, json_path)
    record_monitor_run(store.engine, store.metadata, since, until, len(decided), found["alerts"], run_id)
    _print_summary(found, html_path, json_path, run_id, args.json)
    return ALERT_EXIT_CODE if raised else 0


def _version_order(version: str):
    return (0, int(version), "") if version.isdigit() else (1, 0, version)


def _drift(config, store, decided: pd.DataFrame) -> tuple[list, dict]:
    """Drift of the claims the most active version decided, against that version's reference
    profile. Without a profile the other figures still stand: the report (and stderr) say why."""
    from models.pyfunc import load_bundle
    from monitoring.drift import drift
    from monitoring.profile import ProfileError, load_profile
    from monitoring.report import drift_section

    version = str(decided["model_version"].value_counts().idxmax())
    mine = decided.loc[decided["model_version"] == version]
    try:
        profile = load_profile(config, version)
    except ProfileError as err:
        print(f"claimtriage monitor: no drift figures: {err}", file=sys.stderr)
        return [], drift_section([], version, str(err))
    bundle = load_bundle(f"models:/{config.registry.model_name}/{version}")
    claims = store.claims_by_id(mine["claim_id"].tolist())
    features = _features_of(bundle, store, claims)
    scores = mine.set_index("claim_id").loc[features.index, list(SCORE_COLUMNS)]
    rows = drift(profile, features, scores)
    others = sorted(set(decided["model_version"]) - {version}, key=_version_order)
    notes = [f"claims decided by version {version} ({len(mine)} of {len(decided)}); other versions: "
             f"{', '.join(others)}"] if others else []
    if len(features) < config.monitoring.min_drift_claims:
        notes.append(f"{len(features):,} claims: too few for a drift alert ({config.monitoring.min_drift_claims:,} "
                     "needed, [monitoring] min_drift_claims); the figures are shown as they are")
    return rows, drift_section(rows, version, "; ".join(notes) or None)


def _features_of(bundle, store, claims: pd.DataFrame) -> pd.DataFrame:
    """The model features of these stored claims, history counted point in time over the stored
    claims sharing their entities (as scoring counted it), in the claims' order."""
    from features.graph import GRAPH_FEATURES
    from monitoring.drift import period_features
    from serving.bulk import key_chunks

    moments = claims[bundle.builder.history_time_]
    # In parts, as scoring asks for a batch's history: a week's claims would overflow one query's IN lists.
    parts = [store.history(claims.loc[claims["claim_id"].isin(part).to_numpy()])
             for part in key_chunks(claims["claim_id"].tolist())]
    history = pd.concat(parts, ignore_index=True).drop_duplicates("claim_id")
    features = period_features(bundle, history, moments.min(), moments.max() + pd.Timedelta(seconds=1))
    features = features.loc[[i for i in claims["claim_id"] if i in features.index]]
    # A claim's ring reaches past the claims sharing its own identities, and its confirmed fraud is
    # in the outcomes: the graph's features come from the store, as scoring counted them.
    linked = [name for name in features.columns if name in GRAPH_FEATURES]
    if linked and len(features):
        period = claims.set_index("claim_id").loc[features.index].reset_index()
        values = store.claims_history_features(period, linked, bundle.builder.graph_settings)
        for name in linked:
            features[name] = values[name]
    return features


def _record_run(config, found: dict, html_path: Path, json_path: Path) -> str:
    """An MLflow run in the monitoring experiment, tagged with the model version(s), holding the report."""
    import mlflow

    from monitoring.report import headline_metrics
    from training.registry import configure

    configure(replace(config, registry=replace(config.registry, experiment=EXPERIMENT)))
    period = found["period"]
    with mlflow.start_run(run_name=f"monitor {period['since']} to {period['until']}") as active:
        mlflow.set_tags({"model_versions": ",".join(found["model_versions"]), "since": period["since"],
                         "until": period["until"], "alerts": str(len(found["alerts"]))})
        mlflow.log_metrics(headline_metrics(found))
        mlflow.log_artifact(str(html_path), artifact_path="report")
        mlflow.log_artifact(str(json_path), artifact_path="report")
    return active.info.run_id


def _print_summary(found: dict, html_path: Path, json_path: Path, run_id: str, print_json: bool) -> None:
    from monitoring.report import as_json

    if print_json:
        print(as_json(found))
        return
    period, q, ind = found["period"], found["quality"], found["indicators"]
    print(f"{period['claims_decided']:,} claims decided from {period['since']} to {period['until']} (UTC) by "
          f"version(s) {', '.join(found['model_versions'])}")
    precision = q["approval_precision"]
    realised = precision["note"] if precision["value"] is None else f"{precision['value']:.2%}"
    expected = q["expected"]["approval_precision"]
    print(f"  automatic approvals: {ind['share_automatic']:.1%} of claims; precision realised {realised}, "
          f"expected {'—' if expected is None else f'{expected:.2%}'}")
    print(f"  cases overdue now: {ind['deadlines']['overdue_now']}")
    print(f"report: {html_path}\nfigures: {json_path}\nMLflow run {run_id} in experiment {EXPERIMENT}")
    for alert in found["alerts"]:
        print(f"ALERT {alert['name']}: {alert['message']}")
