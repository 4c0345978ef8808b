"""History features from an index of the claim store held in memory (the store on SQLite).

A claim's history features count the earlier claims of its claimant, policy and provider, and the
other claimants of its payee account, phone and address. Counted in the database, they need six
entity indexes on the claims table, and keeping those up to date cost about 40 % of a scored
batch: each claim touches six random pages, which the commit then writes out (issue #3's
measurements). Here the same counts come from sorted lists in memory, by bisection, and the
claims table keeps only its primary key and `seq`, the order in which claims were written.

The store stays the truth. The index is built from it on first use, and every scoring
transaction first takes the database's write lock, then applies the claims other processes have
written since (their `seq` is higher than any this index has seen), then its own. Its own
changes are journaled and undone if the transaction rolls back, so the index never holds a claim
the database does not. The answers equal `features.history.history_features` over the same
claims and history (tests hold the three side by side: this, the SQL statement, the offline code).
"""

from __future__ import annotations

import threading
from sys import intern
from bisect import bisect_left, insort
from datetime import datetime
from typing import Iterable

import numpy as np

from features.history import COUNTED_ENTITIES, PERSON_FIELDS, SECONDS_PER_DAY, SHARED_ENTITIES, TIME_FIELDS, WINDOWS_DAYS
from serving.clock import as_datetime

_MICROS = 1_000_000
_WINDOWS = tuple((days, days * SECONDS_PER_DAY * _MICROS) for days in WINDOWS_DAYS)
COUNTED = tuple(COUNTED_ENTITIES)  # claimant_id first: its times also give the days since the last claim
SHARED = tuple(SHARED_ENTITIES)
# What the index keeps of a claim, in this order after its report time.
INDEXED_FIELDS = (*COUNTED, *SHARED)
assert COUNTED[:2] == PERSON_FIELDS  # an entry's person is its claimant, else its policy
# The entities a ring of claims shares: a case shows the other claims with any of them.
RING_FIELDS = (*SHARED, "provider_id")
# Each value's claims are kept for every indexed entity: the ring view reads the RING_FIELDS ones,
# the claim graph (serving/graph_history.py) all of them; so are each value's report times.
MEMBER_FIELDS = (*RING_FIELDS, *COUNTED[:2])
_MEMBER_POSITIONS = tuple(1 + INDEXED_FIELDS.index(field) for field in MEMBER_FIELDS)
POSITIONS = {field: 1 + i for i, field in enumerate(INDEXED_FIELDS)}

# (report time in microseconds, claimant, policy, provider, payee account, phone, address)
Entry = tuple


def micros(moment: datetime) -> int:
    """A naive moment as whole microseconds since year 1: ordered, and differences are exact."""
    seconds = moment.toordinal() * SECONDS_PER_DAY + moment.hour * 3_600 + moment.minute * 60 + moment.second
    return seconds * _MICROS + moment.microsecond


class HistoryIndex:
    """Per entity value, the report times of its claims, sorted, and its claims; per shared entity
    value, the first use by each claimant, sorted. `seen` is the highest `seq` of the store applied.
    `confirmed`: when each claim's fraud was first confirmed (microseconds), by a recorded outcome or
    its training history, up to the row ids `confirmed_seen` of each."""

    def __init__(self) -> None:
        self.times: dict[str, dict[str, list[int]]] = {field: {} for field in INDEXED_FIELDS}
        self.uses: dict[str, dict[tuple[str, str], list[int]]] = {field: {} for field in SHARED}
        self.first: dict[str, dict[str, list[int]]] = {field: {} for field in SHARED}
        # value -> its claim_id, or a list of them once there are several (most values have one)
        self.members: dict[str, dict[str, str | list[str]]] = {field: {} for field in MEMBER_FIELDS}
        self.claims: dict[str, Entry] = {}
        self.seen = 0
        self.confirmed: dict[str, int] = {}
        self.confirmed_seen = {"outcomes": 0, "history": 0}
        self.lock = threading.Lock()  # held by one transaction from its first claim to its end
        self._journal: list[tuple[str, Entry | None]] | None = None

    @classmethod
    def from_rows(cls, rows: Iterable[tuple]) -> HistoryIndex:
        """Built in one pass from (claim_id, seq, report_date, *INDEXED_FIELDS) rows of one snapshot."""
        index = cls()
        for claim_id, seq, report_date, *values in rows:
            index.claims[claim_id] = _stored_entry(report_date, values)
            if seq is not None and seq > index.seen:
                index.seen = seq
        for claim_id, entry in index.claims.items():  # appended unsorted, sorted once below
            t = entry[0]
            for field, position in zip(MEMBER_FIELDS, _MEMBER_POSITIONS):
                if entry[position] is not None:
                    _add_member(index.members[field], entry[position], claim_id)
            if t is None:  # no report time (an extract without report dates): in the ring, in no count
                continue
            for field, value in zip(INDEXED_FIELDS, entry[1:]):
                if value is not None:
                    index.times[field].setdefault(value, []).append(t)
            who = _person(entry[1], entry[2])
            if who is not None:
                for field, value in zip(SHARED, entry[1 + len(COUNTED):]):
                    if value is not None:
                        index.uses[field].setdefault((value, who), []).append(t)
        for lists in (*index.times.values(), *index.uses.values()):
            for times in lists.values():
                times.sort()
        for field, uses in index.uses.items():
            first = index.first[field]
            for (value, _), times in uses.items():
                first.setdefault(value, []).append(times[0])
            for times in first.values():
                times.sort()
        return index

    # --- changes ---------------------------------------------------------------------------------

    def catch_up(self, rows: Iterable[tuple]) -> None:
        """Apply (claim_id, seq, report_date, *INDEXED_FIELDS) rows committed by others, in seq order."""
        for claim_id, seq, report_date, *values in rows:
            self._replace(claim_id, _stored_entry(report_date, values))
            self.seen = max(self.seen, seq)

    def confirm(self, source: str, rows: Iterable[tuple]) -> None:
        """Apply (row id, claim_id, moment) rows of fraud confirmations from `source` ("outcomes" or
        "history"), in id order: a claim's fraud is known from its first confirmation on."""
        for row_id, claim_id, moment in rows:
            t = micros(as_datetime(moment))
            self.confirmed[claim_id] = min(t, self.confirmed.get(claim_id, t))
            self.confirmed_seen[source] = max(self.confirmed_seen[source], row_id)

    def begin(self) -> None:
        """Start journaling this transaction's own claims (the caller holds `lock`)."""
        self._journal = []

    def put(self, claim: dict) -> None:
        """A validated claim of the current transaction, replacing any earlier version of its claim_id."""
        moment = _moment(claim)
        entry = (None if moment is None else micros(moment), *[claim.get(field) for field in INDEXED_FIELDS])
        self._journal.append((claim["claim_id"], self._replace(claim["claim_id"], entry)))

    def end(self, kept: bool, seen: int | None = None) -> None:
        """The transaction committed (`seen`: its highest seq) or rolled back (its claims undone)."""
        journal, self._journal = self._journal or [], None
        if kept:
            if seen is not None:
                self.seen = max(self.seen, seen)
            return
        for claim_id, earlier in reversed(journal):
            self._remove(claim_id)
            if earlier is not None:
                self._insert(claim_id, earlier)

    def _replace(self, claim_id: str, entry: Entry) -> Entry | None:
        earlier = self._remove(claim_id) if claim_id in self.claims else None
        self._insert(claim_id, entry)
        return earlier

    def _insert(self, claim_id: str, entry: Entry) -> None:
        self.claims[claim_id] = entry
        t, who = entry[0], _person(entry[1], entry[2])
        for field, position in zip(MEMBER_FIELDS, _MEMBER_POSITIONS):
            if entry[position] is not None:
                _add_member(self.members[field], entry[position], claim_id)
        if t is None:
            return
        for field, value in zip(INDEXED_FIELDS, entry[1:]):
            if value is not None:
                insort(self.times[field].setdefault(value, []), t)
        if who is None:
            return
        for field, value in zip(SHARED, entry[1 + len(COUNTED):]):
            if value is None:
                continue
            mine = self.uses[field].setdefault((value, who), [])
            earliest = mine[0] if mine else None
            insort(mine, t)
            if earliest is None or t < earliest:
                first = self.first[field].setdefault(value, [])
                if earliest is not None:
                    _pop(first, earliest)
                insort(first, t)

    def _remove(self, claim_id: str) -> Entry:
        entry = self.claims.pop(claim_id)
        t, who = entry[0], _person(entry[1], entry[2])
        for field, position in zip(MEMBER_FIELDS, _MEMBER_POSITIONS):
            if entry[position] is not None:
                _drop_member(self.members[field], entry[position], claim_id)
        if t is None:
            return entry
        for field, value in zip(INDEXED_FIELDS, entry[1:]):
            if value is not None:
                _pop_from(self.times[field], value, t)
        if who is None:
            return entry
        for field, value in zip(SHARED, entry[1 + len(COUNTED):]):
            if value is None:
                continue
            mine = self.uses[field][(value, who)]
            earliest = mine[0]
            _pop_from(self.uses[field], (value, who), t)
            if not mine or mine[0] != earliest:  # the claimant's first use of the value moved
                _pop_from(self.first[field], value, earliest)
                if mine:
                    insort(self.first[field].setdefault(value, []), mine[0])
        return entry

    # --- counting --------------------------------------------------------------------------------

    def history(self, claims: list[dict], wanted: Iterable[str]) -> dict[str, np.ndarray]:
        """History features of claims already `put`, as `Intake.history` gives them: float64
        arrays in the claims' order, missing where the claim lacks the entity (or, for the
        shared ones, its claimant)."""
        wanted = set(wanted)
        out = {name: np.full(len(claims), np.nan) for name in wanted}
        counted = [(field, [(span, out[f"{prefix}_claims_{days}d"]) for days, span in _WINDOWS
                            if f"{prefix}_claims_{days}d" in wanted])
                   for field, prefix in COUNTED_ENTITIES.items()]
        last = out.get("days_since_claimant_last_claim")
        shared = [(field, out[f"{prefix}_other_claimants"]) for field, prefix in SHARED_ENTITIES.items()
                  if f"{prefix}_other_claimants" in wanted]
        empty: list[int] = []
        for i, claim in enumerate(claims):
            moment = _moment(claim)
            if moment is None:  # no claim dates: no history
                continue
            t = micros(moment)
            for field, windows in counted:
                value = claim.get(field)
                if value is None:
                    continue
                times = self.times[field].get(value, empty)
                before = bisect_left(times, t)  # claims reported strictly before this one
                for span, column in windows:
                    column[i] = before - bisect_left(times, t - span)
                if field == "claimant_id" and last is not None and before:
                    # Whole seconds between the reports, as the offline code has them.
                    last[i] = (t - times[before - 1]) // _MICROS / SECONDS_PER_DAY
            who = _person(claim.get("claimant_id"), claim.get("policy_id"))
            if who is None:
                continue
            for field, column in shared:
                value = claim.get(field)
                if value is None:
                    continue
                users = bisect_left(self.first[field].get(value, empty), t)
                mine = self.uses[field].get((value, who))
                column[i] = users - (1 if mine and mine[0] < t else 0)  # the others, not this claimant
        return out


    def ring(self, claim_id: str, limit: int, fields: tuple[str, ...] = RING_FIELDS) -> list[tuple[str, list[str]]]:
        """The newest `limit` other claims sharing one of `fields` (MEMBER_FIELDS) with this one, each
        with the fields it shares (in `fields` order); newest first, then by claim_id."""
        entry = self.claims.get(claim_id)
        if entry is None:
            return []
        shares: dict[str, list[str]] = {}
        for field in fields:
            position = POSITIONS[field]
            if entry[position] is not None:
                for other in _members(self.members[field], entry[position]):
                    if other != claim_id:
                        shares.setdefault(other, []).append(field)
        newest = sorted(shares, key=lambda other: (-(self.claims[other][0] or 0), other))[:limit]
        return [(other, shares[other]) for other in newest]


def _moment(claim: dict):
    """A claim's moment in history: its report, else its loss (features.history.TIME_FIELDS)."""
    moment = claim.get(TIME_FIELDS[0])
    return claim.get(TIME_FIELDS[1]) if moment is None else moment


def _person(claimant, policy):
    """Who made a claim: its claimant, else its policy (features.history.PERSON_FIELDS)."""
    return policy if claimant is None else claimant


def _stored_entry(report_date, values: list) -> Entry:
    """A claims row's entry. One string object per distinct value (a claimant has several claims,
    a provider hundreds): a fifth less memory than a copy per claim."""
    reported = as_datetime(report_date)
    return (None if reported is None else micros(reported),
            *[value if value is None else intern(value) for value in values])


def _pop(times: list[int], t: int) -> None:
    del times[bisect_left(times, t)]


def _pop_from(lists: dict, key, t: int) -> None:
    """Remove one `t` from the sorted list at `key`, and the list once it is empty."""
    times = lists[key]
    _pop(times, t)
    if not times:
        del lists[key]


def _add_member(members: dict, value: str, claim_id: str) -> None:
    found = members.get(value)
    if found is None:
        members[value] = claim_id
    elif type(found) is str:
        members[value] = [found, claim_id]
    else:
        found.append(claim_id)


def _drop_member(members: dict, value: str, claim_id: str) -> None:
    found = members[value]
    if type(found) is str:
        del members[value]
        return
    found.remove(claim_id)
    if len(found) == 1:
        members[value] = found[0]


def _members(members: dict, value: str) -> tuple[str, ...] | list[str]:
    found = members.get(value)
    return () if found is None else (found,) if type(found) is str else found
