"""What `claimtriage monitor` found, kept in the claim store: one row per run with its alerts, so the
service can show the newest run's alerts on /metrics (serving/live_metrics.py) beside its own live
figures, and a dashboard pages on them like any other metric."""

from __future__ import annotations

import json
from datetime import datetime

import sqlalchemy as sa

from serving.clock import utc_now

MONITOR_RUNS_TABLE = "monitor_runs"


def monitor_runs_table(metadata: sa.MetaData) -> sa.Table:
    """`monitor_runs`: when each monitor run ran, over which period, and the alerts it raised."""
    if MONITOR_RUNS_TABLE in metadata.tables:
        return metadata.tables[MONITOR_RUNS_TABLE]
    return sa.Table(
        MONITOR_RUNS_TABLE, metadata,
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("ran_at", sa.DateTime(), nullable=False, index=True),
        sa.Column("since", sa.DateTime(), nullable=False),
        sa.Column("until", sa.DateTime(), nullable=False),
        sa.Column("claims_decided", sa.Integer(), nullable=False),
        sa.Column("alerts", sa.Text(), nullable=False),  # JSON: [{"name": ..., "message": ...}, ...]
        sa.Column("mlflow_run_id", sa.String(64), nullable=True),
    )


def record_monitor_run(engine: sa.Engine, metadata: sa.MetaData, since: datetime, until: datetime,
                       claims_decided: int, alerts: list[dict], mlflow_run_id: str | None) -> None:
    table = monitor_runs_table(metadata)
    table.create(engine, checkfirst=True)
    with engine.begin() as conn:
        conn.execute(table.insert().values(ran_at=utc_now(), since=since, until=until, claims_decided=claims_decided,
                                           alerts=json.dumps(alerts), mlflow_run_id=mlflow_run_id))


def latest_alerts(engine: sa.Engine, metadata: sa.MetaData) -> dict[str, int] | None:
    """The newest monitor run's alerts counted by name ({} when it raised none), or None before any run."""
    table = monitor_runs_table(metadata)
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table(MONITOR_RUNS_TABLE):
            return None
        row = conn.execute(sa.select(table.c.alerts).order_by(table.c.id.desc()).limit(1)).first()
    if row is None:
        return None
    counts: dict[str, int] = {}
    for alert in json.loads(row.alerts):
        counts[alert["name"]] = counts.get(alert["name"], 0) + 1
    return counts
