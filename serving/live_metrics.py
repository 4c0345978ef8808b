"""Live Prometheus metrics on /metrics: decisions, score distributions, overdue cases, the shadow challenger.

Made with prometheus_client in BentoML's multiprocess mode: each worker writes its values to files in
this server's own directory (serving/bentoml_adaptations.py), and BentoML's /metrics adds them up.
So the metrics are made only once that directory is chosen (`LiveMetrics()` in serving/service.py),
never at import.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime

import sqlalchemy as sa
from prometheus_client import Counter, Gauge, Histogram

from monitoring.alerts import ALERT_NAMES
from serving.clock import utc_now
from serving.monitor_runs import latest_alerts
from serving.review import OPEN, RESOLVED

# Fraud probabilities crowd near zero (a few percent of claims are fraud): fine buckets there, with
# the SIU thresholds' usual range (0.2-0.7) still told apart.
FRAUD_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0)
# The anomaly score is a percentile of the training claims: what matters is the top tail (alerts at ~1%).
ANOMALY_BUCKETS = (0.5, 0.75, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 1.0)
log = logging.getLogger("claimtriage.serving")


class LiveMetrics:
    """The service's own metrics, and the thread that keeps the overdue-cases gauge current."""

    def __init__(self) -> None:
        self.decisions = Counter("claimtriage_decisions", "Decisions given, by decision and model version",
                                 ["decision", "model_version"])
        self.fraud = Histogram("claimtriage_fraud_probability", "Calibrated fraud probability of decided claims",
                               ["model_version"], buckets=FRAUD_BUCKETS)
        self.anomaly = Histogram("claimtriage_anomaly_score", "Anomaly score (training percentile) of decided claims",
                                 ["model_version"], buckets=ANOMALY_BUCKETS)
        # Every worker counts the same store: the largest (most recent) count is the one to show.
        self.overdue = Gauge("claimtriage_overdue_cases", "Cases past a deadline now: deadline=respond, open "
                             "past respond_by; deadline=resolve, unresolved past resolve_by", ["deadline"],
                             multiprocess_mode="livemax")
        self.shadow = Counter("claimtriage_shadow_decisions", "Claims the shadow challenger decided, by its version "
                              "and whether its decision agrees with the champion's", ["challenger_version", "agrees"])
        self.monitor_alerts = Gauge("claimtriage_monitor_alerts", "Alerts the newest `claimtriage monitor` run raised, "
                                    "by alert (drift, approval_precision, overdue_cases)", ["alert"],
                                    multiprocess_mode="livemax")
        self.shadow_skipped = Counter("claimtriage_shadow_skipped_claims",
                                      "Claims the shadow challenger skipped: its queue was full")

    def decided(self, responses: list[dict]) -> None:
        """Count committed answers (Scorer.on_decided)."""
        for response in responses:
            version, scores = response["model_version"], response["scores"]
            self.decisions.labels(response["decision"], version).inc()
            self.fraud.labels(version).observe(scores["fraud_probability"])
            self.anomaly.labels(version).observe(scores["anomaly_score"])

    def shadow_scored(self, version: str, champion: list[str], challenger: list[str]) -> None:
        agreeing = sum(a == b for a, b in zip(champion, challenger))
        if agreeing:
            self.shadow.labels(version, "true").inc(agreeing)
        if len(challenger) - agreeing:
            self.shadow.labels(version, "false").inc(len(challenger) - agreeing)

    def watch_overdue(self, engine: sa.Engine, cases: sa.Table, every_seconds: float) -> threading.Thread:
        """Count overdue cases from the store now, then every `every_seconds` on a thread of its own:
        never per request, whatever the traffic (the count reads the cases table); the newest monitor
        run's alerts (serving/monitor_runs.py) are read with them."""
        def refresh_forever() -> None:
            while True:
                try:
                    self.set_overdue(overdue_counts(engine, cases, utc_now()))
                    self.set_monitor_alerts(latest_alerts(engine, sa.MetaData()))
                except Exception:  # noqa: BLE001 - a gauge not refreshed is said, and tried again
                    log.exception("the overdue-cases and monitor-alerts gauges could not be read from the store")
                time.sleep(every_seconds)

        watcher = threading.Thread(target=refresh_forever, name="overdue-cases", daemon=True)
        watcher.start()
        return watcher

    def set_monitor_alerts(self, counts: dict[str, int] | None) -> None:
        """Every kind of alert the monitor raises gets a value (0 when the newest run raised none of it);
        nothing before the first run."""
        if counts is None:
            return
        for name in sorted(set(ALERT_NAMES) | set(counts)):
            self.monitor_alerts.labels(name).set(counts.get(name, 0))

    def set_overdue(self, counts: dict[str, int]) -> None:
        for deadline, n in counts.items():
            self.overdue.labels(deadline).set(n)


def overdue_counts(engine: sa.Engine, cases: sa.Table, now: datetime) -> dict[str, int]:
    """Cases past their deadline at `now`: open ones past respond_by, unresolved ones past resolve_by."""
    c = cases.c
    query = sa.select(
        sa.func.count().filter(c.status == OPEN, c.respond_by < now),
        sa.func.count().filter(c.status != RESOLVED, c.resolve_by < now))
    with engine.connect() as conn:
        respond, resolve = conn.execute(query).one()
    return {"respond": int(respond), "resolve": int(resolve)}
