"""The shadow challenger: the registry's `challenger` version scores every claim the champion decided,
off the answer's path, and its decisions are kept in `shadow_decisions` beside the champion's.

A shadow decision is never answered, never opens a case and never enters the ledger: it is evidence
for `claimtriage compare` before promotion. The champion's answer does not wait for it: committed
claims go to a bounded queue that one worker thread scores in batches; when the queue is full the
claims are skipped and counted (a metric, and a log line at most once a minute), never waited for.

History: the challenger's history features are counted in the champion's own scoring transaction
(`Scorer.add_shadow`), from the same store and history index at the same moment, so both models
see the same history, point in time by report date. What can still differ from an offline
re-scoring: a claim reported earlier but arriving later is in neither model's live history, though
a later offline pass over the store would count it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa

from models.bundle import TriageBundle
from models.policy import record_rule_hits
from serving.clock import utc_now
from serving.scoring import RECORD_ROWS_BELOW, feature_matrix, history_feature_names

SHADOW_TABLE = "shadow_decisions"
SKIP_LOG_SECONDS = 60.0  # a full queue is said in the log at most this often (the metric counts every claim)
log = logging.getLogger("claimtriage.shadow")


def shadow_table(metadata: sa.MetaData) -> sa.Table:
    """`shadow_decisions`: one row per claim the challenger scored, pointing at the champion's decision."""
    if SHADOW_TABLE in metadata.tables:
        return metadata.tables[SHADOW_TABLE]
    return sa.Table(
        SHADOW_TABLE, metadata,
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("claim_id", sa.String(128), nullable=False, index=True),
        sa.Column("decision_id", sa.Integer(), nullable=False),  # the champion's row in `decisions`
        sa.Column("model_version", sa.String(32), nullable=False),  # the challenger's version
        sa.Column("decision", sa.String(32), nullable=False),
        sa.Column("fraud_probability", sa.Float(), nullable=False),
        sa.Column("approval_probability", sa.Float(), nullable=True),
        sa.Column("anomaly_score", sa.Float(), nullable=False),
        sa.Column("scored_at", sa.DateTime(), nullable=False, index=True),
    )


@dataclass
class Waiting:
    """Committed claims waiting for the challenger, with what it needs beside them."""

    claims: list[dict]
    history: dict[str, np.ndarray]  # the challenger's history features, counted with the champion's
    decision_ids: list[int]
    champion_decisions: list[str]

    def split(self, n: int) -> tuple[Waiting, Waiting]:
        """The first `n` claims, and the others."""
        def part(cut: slice) -> Waiting:
            return Waiting(self.claims[cut], {name: values[cut] for name, values in self.history.items()},
                           self.decision_ids[cut], self.champion_decisions[cut])
        return part(slice(None, n)), part(slice(n, None))


class Challenger:
    """A challenger version's bundle: scores and decisions for validated claims with their history
    counted, as the champion would decide them, without reasons (nobody reads them)."""

    def __init__(self, bundle: TriageBundle, version: str):
        self.bundle = bundle
        self.version = str(version)
        self.history_features = history_feature_names(bundle)

    def rows(self, work: Waiting, scored_at) -> list[dict]:
        """One `shadow_decisions` row per claim of `work`."""
        history = {name: work.history[name] for name in self.history_features}
        matrix = feature_matrix(self.bundle.builder, work.claims, history, RECORD_ROWS_BELOW)
        rules = [record_rule_hits(claim, self.bundle.targets.auto_approve_amount_cap) for claim in work.claims]
        scores = self.bundle.scores_with_rules(matrix, rules)
        decisions = self.bundle.policy.decide(scores.fraud, scores.anomaly, scores.approval, scores.blocked)
        return [{"claim_id": claim["claim_id"], "decision_id": decision_id, "model_version": self.version,
                 "decision": str(decisions[i]), "fraud_probability": float(scores.fraud[i]),
                 "approval_probability": None if scores.approval is None else float(scores.approval[i]),
                 "anomaly_score": float(scores.anomaly[i]), "scored_at": scored_at}
                for i, (claim, decision_id) in enumerate(zip(work.claims, work.decision_ids))]


class Shadow:
    """A bounded queue of committed claims and the one worker thread that scores them with the challenger."""

    def __init__(self, challenger: Challenger, engine: sa.Engine, table: sa.Table, max_queue: int, max_batch: int,
                 on_scored: Callable[[str, list[str], list[str]], None] | None = None,
                 on_skipped: Callable[[int], None] | None = None):
        """`on_scored(version, champion decisions, challenger decisions)` and `on_skipped(n claims)`
        tell the live metrics."""
        if max_queue < 1 or max_batch < 1:
            raise ValueError(f"the shadow queue and batch hold at least 1 claim, not {max_queue} and {max_batch}")
        self.challenger = challenger
        self.engine = engine
        self.table = table
        self.max_queue = max_queue
        self.max_batch = max_batch
        self._on_scored = on_scored
        self._on_skipped = on_skipped
        self._waiting: list[Waiting] = []
        self._queued = 0  # claims in `_waiting`
        self._ready = threading.Condition()
        self._skipped_since_said = 0
        self._said_at = float("-inf")
        threading.Thread(target=self._work_forever, name="shadow-challenger", daemon=True).start()

    @property
    def history_features(self) -> list[str]:
        return self.challenger.history_features

    def describe(self) -> dict:
        return {"version": self.challenger.version, "queue_claims": self.max_queue, "batch_claims": self.max_batch}

    def submit(self, claims: list[dict], history: dict[str, np.ndarray], decision_ids: list[int],
               champion_decisions: list[str]) -> None:
        """Queue committed claims for the challenger, as many as the queue has room for; the rest are
        skipped and counted. Never waits."""
        wanted = {name: history[name] for name in self.history_features}
        with self._ready:
            room = max(0, min(len(claims), self.max_queue - self._queued))
            if room:
                queued, _ = Waiting(claims, wanted, decision_ids, champion_decisions).split(room)
                self._waiting.append(queued)
                self._queued += room
                self._ready.notify()
            if room < len(claims):
                self._skipped(len(claims) - room)

    def _skipped(self, n: int) -> None:
        """Count `n` claims skipped (the caller holds the queue's lock), and say so at most once a minute."""
        if self._on_skipped is not None:
            self._on_skipped(n)
        self._skipped_since_said += n
        now = time.monotonic()
        if now - self._said_at >= SKIP_LOG_SECONDS:
            log.warning("shadow challenger version %s: queue full (%d claims), %d claims skipped since last said",
                        self.challenger.version, self.max_queue, self._skipped_since_said)
            self._said_at, self._skipped_since_said = now, 0

    def _next_batch(self) -> Waiting:
        """Up to `max_batch` waiting claims, in the order they were committed (waits for some)."""
        with self._ready:
            while not self._waiting:
                self._ready.wait()
            # A large batch goes in parts: the worker never holds the interpreter long while answers wait.
            if len(self._waiting[0].claims) > self.max_batch:
                batch, self._waiting[0] = self._waiting[0].split(self.max_batch)
            else:
                batch = self._waiting.pop(0)
            self._queued -= len(batch.claims)
            return batch

    def _work_forever(self) -> None:
        while True:
            batch = self._next_batch()
            try:
                self._score(batch)
            except Exception:  # noqa: BLE001 - the champion goes on; the lost shadow rows are said
                log.exception("shadow challenger version %s failed on %d claims (first %s); they have no shadow row",
                              self.challenger.version, len(batch.claims), batch.claims[0]["claim_id"])

    def _score(self, batch: Waiting) -> None:
        rows = self.challenger.rows(batch, utc_now())
        with self.engine.begin() as conn:
            conn.execute(self.table.insert(), rows)
        if self._on_scored is not None:
            self._on_scored(self.challenger.version, batch.champion_decisions, [row["decision"] for row in rows])
