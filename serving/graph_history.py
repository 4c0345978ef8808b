"""The claim graph's features for claims being scored, from the claim store (features/graph.py online).

Offline, `features.graph.graph_features` walks the whole book in report order with a union-find.
Online a claim needs only its own component as of its report time: the claims reachable from its
identities through claims reported strictly before it, each link made while its identity value had
fewer than the cap of earlier claims. They are found by a breadth-first walk over the store's
per-value claims (`GraphLookup`): from the in-memory history index on SQLite
(serving/history_index.py), by indexed queries on PostgreSQL. The walk costs what the component
holds (a few claims for most, a ring's dozens), and each value's claims are kept up to date as
claims are stored (`HistoryIndex.put`), so nothing is recomputed over the book. Everything is
counted in whole seconds, as offline. Tests hold both stores against the offline code.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Iterable, Protocol

import numpy as np
import sqlalchemy as sa

from features.graph import GRAPH_FEATURES, RECENT_DAYS, GraphSettings
from features.history import SECONDS_PER_DAY
from serving.history_index import INDEXED_FIELDS, MICROS, POSITIONS, HistoryIndex, micros, moment_of, person_of

_RECENT = RECENT_DAYS * SECONDS_PER_DAY * MICROS
Entry = tuple  # (report time in microseconds or None, *INDEXED_FIELDS), as the history index keeps it


class GraphLookup(Protocol):
    def members(self, field: str, value: str) -> Iterable[tuple[str, Entry]]:
        """The stored claims with this value, as (claim_id, entry)."""

    def times(self, field: str, value: str) -> list[int]:
        """The report times (microseconds) of the stored claims with this value, sorted."""

    def confirmed(self, claim_ids: Iterable[str]) -> dict[str, int]:
        """When each of these claims' fraud was confirmed (microseconds), for those confirmed."""


class IndexLookup:
    """The lookups from the in-memory history index (the caller holds its lock), for one walk: it
    keeps the claims it has read, which do not change while the lock is held."""

    def __init__(self, index: HistoryIndex):
        self.index = index
        self._decoded: dict = {}
        self._times: dict[tuple[str, str], list[int]] = {}

    def members(self, field, value):
        return self.index.members_of(field, value, self._decoded)

    def times(self, field, value):
        key = (field, value)
        if key not in self._times:
            self._times[key] = self.index.times_of(field, value)
        return self._times[key]

    def confirmed(self, claim_ids):
        known = self.index.confirmed
        return {claim_id: known[claim_id] for claim_id in claim_ids if claim_id in known}


def _second(t: int) -> int:
    return t - t % MICROS


def graph_history(lookup: GraphLookup, claims: list[dict], wanted: Iterable[str],
                  settings: GraphSettings) -> dict[str, np.ndarray]:
    """The graph features of claims already stored in this transaction, as `features.graph.graph_features`
    gives them over the same claims and history: float64 arrays in the claims' order."""
    wanted = [name for name in wanted if name in GRAPH_FEATURES]
    out = {name: np.full(len(claims), np.nan) for name in wanted}
    if not wanted:
        return out
    walk = _Walk(lookup, settings)
    for i, claim in enumerate(claims):
        moment = moment_of(claim)
        if moment is None:  # no claim dates: in no graph
            continue
        found = walk.describe(claim, _second(micros(moment)))
        for name in wanted:
            out[name][i] = found[name]
    return out


class _Walk:
    """Breadth-first walks over one transaction's lookups, each value's claims read once."""

    def __init__(self, lookup: GraphLookup, settings: GraphSettings):
        self.lookup = lookup
        self.settings = settings
        self.cap = settings.max_claims_per_identity
        self._prefixes: dict[tuple[str, str], tuple[list[int], list[tuple[str, Entry]]]] = {}

    def _values(self, get) -> list[tuple[str, str]]:
        """A claim's identity values that can link (no placeholders), as (field, value)."""
        is_identity = self.settings.is_identity
        return [(field, value) for field in self.settings.link_fields
                if (value := get(field)) is not None and is_identity(value)]

    def _rank(self, key: tuple[str, str], second: int) -> int:
        """Claims with this value reported before the second starting at `second`."""
        return bisect_left(self.lookup.times(*key), second)

    def _linked(self, key: tuple[str, str], before: int) -> list[tuple[str, Entry]]:
        """The claims that linked through this value (their rank below the cap), reported before `before`."""
        seconds, linked = self._prefix(key)
        return linked[:bisect_left(seconds, before)]

    def _prefix(self, key: tuple[str, str]) -> tuple[list[int], list[tuple[str, Entry]]]:
        """The value's linked claims in report order (with their seconds), read once per walk: a busy
        value's later claims, which link nothing, are passed over once, not at every visit."""
        found = self._prefixes.get(key)
        if found is None:
            times = self.lookup.times(*key)
            # A claim links through the value when fewer than `cap` claims had it before its second.
            last = _second(times[self.cap - 1]) if len(times) >= self.cap else None
            linked = sorted(((_second(entry[0]), claim_id, entry) for claim_id, entry in self.lookup.members(*key)
                             if entry[0] is not None and (last is None or _second(entry[0]) <= last)),
                            key=lambda item: item[0])
            linked = [item for item in linked if bisect_left(times, item[0]) < self.cap]
            found = self._prefixes[key] = ([item[0] for item in linked], [item[1:] for item in linked])
        return found

    def _entry_values(self, entry: Entry) -> list[tuple[str, str]]:
        return self._values(lambda field: entry[POSITIONS[field]])

    def describe(self, claim: dict, t: int) -> dict[str, float]:
        """Walk the claim's ring a value at a time: each value's linked claims are read once, each
        claim's values followed once (a fleet's account and its 50 claims cost 50 steps, not 50 x 50)."""
        through = [key for key in self._values(claim.get) if self._rank(key, t) < self.cap]
        seen_values = set(through)
        component: dict[str, Entry] = {}
        for key in through:
            component.update(self._linked(key, t))
        component.pop(claim["claim_id"], None)  # never itself (an earlier version of it is replaced when stored)
        two_hops = set(component)
        frontier, first_level = list(component.items()), True
        while frontier:
            following = []
            for claim_id, entry in frontier:
                second = _second(entry[0])
                for key in self._entry_values(entry):
                    if key in seen_values or self._rank(key, second) >= self.cap:
                        continue  # followed already, or this claim did not link through the value
                    seen_values.add(key)
                    for other, other_entry in self._linked(key, t):
                        if first_level:
                            two_hops.add(other)
                        if other not in component:
                            component[other] = other_entry
                            following.append((other, other_entry))
            frontier, first_level = following, False
        component.pop(claim["claim_id"], None)
        two_hops.discard(claim["claim_id"])
        if not component:
            return {"ring_claims": 0.0, "ring_claimants": 0.0, "ring_claims_90d": 0.0, "ring_claims_2hop": 0.0,
                    "ring_fraud_share": np.nan}
        person = person_of(claim.get("claimant_id"), claim.get("policy_id"))
        people = {person_of(entry[1], entry[2]) for entry in component.values()} - {None}
        recent = sum(1 for entry in component.values() if _second(entry[0]) >= t - _RECENT)
        confirmed = self.lookup.confirmed(component)
        frauds = sum(1 for moment in confirmed.values() if _second(moment) < t)
        return {"ring_claims": float(len(component)), "ring_claimants": float(len(people - {person})),
                "ring_claims_90d": float(recent), "ring_claims_2hop": float(len(two_hops)),
                "ring_fraud_share": frauds / len(component)}


class SqlLookup:
    """The lookups by indexed queries on the claims and outcomes tables (PostgreSQL stores)."""

    def __init__(self, conn: sa.Connection, claims: sa.Table, outcomes: sa.Table, confirmations: sa.Table,
                 fraud_outcomes: tuple[str, ...]):
        self.conn, self.claims, self.outcomes, self.confirmations = conn, claims, outcomes, confirmations
        self.fraud_outcomes = fraud_outcomes
        self._rows: dict[tuple[str, str], list[tuple[str, Entry]]] = {}
        self._times: dict[tuple[str, str], list[int]] = {}

    def members(self, field, value):
        key = (field, value)
        if key not in self._rows:
            c = self.claims.c
            query = sa.select(c.claim_id, c.report_date, c.loss_date, *[c[f] for f in INDEXED_FIELDS]).where(c[field] == value)
            self._rows[key] = [(row[0], (_row_micros(row[1], row[2]), *row[3:])) for row in self.conn.execute(query)]
        return self._rows[key]

    def times(self, field, value):
        key = (field, value)
        if key not in self._times:
            self._times[key] = sorted(entry[0] for _, entry in self.members(field, value) if entry[0] is not None)
        return self._times[key]

    def confirmed(self, claim_ids):
        o, k = self.outcomes.c, self.confirmations.c
        ids = list(claim_ids)
        found: dict[str, int] = {}
        for start in range(0, len(ids), 500):
            part = ids[start:start + 500]
            rows = [*self.conn.execute(sa.select(o.claim_id, o.recorded_at).where(
                        o.claim_id.in_(part), o.outcome.in_(self.fraud_outcomes))),
                    *self.conn.execute(sa.select(k.claim_id, k.confirmed_at).where(k.claim_id.in_(part)))]
            for claim_id, moment in rows:
                t = micros(moment)
                found[claim_id] = min(t, found.get(claim_id, t))
        return found


def _row_micros(report_date, loss_date) -> int | None:
    moment = report_date if report_date is not None else loss_date
    return None if moment is None else micros(moment)
