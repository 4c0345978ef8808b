"""History features from an index of the claim store held in memory (the store on SQLite).

A claim's history features count the earlier claims of its claimant, policy and provider, and the
other claimants of its payee account, phone and address. Counted in the database, they need six
entity indexes on the claims table, and keeping those up to date cost about 40 % of a scored
batch: each claim touches six random pages, which the commit then writes out (issue #3's
measurements). Here the same counts come from each value's claims in memory, in report order, by
bisection, and the claims table keeps only its primary key and `seq`, the order claims were written.

The store stays the truth. The index is built from it on first use, and every scoring
transaction first takes the database's write lock, then applies the claims other processes have
written since (their `seq` is higher than any this index has seen), then its own. Its own
changes are journaled and undone if the transaction rolls back, so the index never holds a claim
the database does not. The answers equal `features.history.history_features` over the same
claims and history (tests hold the three side by side: this, the SQL statement, the offline code).

Layout (issue #16: a book of millions in a service's memory). Python lists and tuples per value
and claim took 940 bytes a claim; here a claim is a number, its report time and values are columns
of machine integers, each string is kept once in a numpy string array, and each value's claims are
one slice of an int32 array sorted by report time (compressed rows): 144 bytes a claim at 1M and
10M claims (benchmarks/bench_index.py). Values changed since the build get small arrays of their
own, which replace their slice: a claim stored online with new identities costs 1.8 KB until the
next start lays everything out again. The layout itself is serving/index_layout.py.
"""

from __future__ import annotations

import threading
from array import array
from bisect import bisect_left
from collections.abc import Mapping
from itertools import islice
from types import MappingProxyType
from typing import Iterable, Iterator

import numpy as np

from features.history import COUNTED_ENTITIES, PERSON_FIELDS, SECONDS_PER_DAY, SHARED_ENTITIES, TIME_FIELDS, WINDOWS_DAYS
from serving.clock import as_datetime
from serving.index_layout import (ABSENT, MICROS, NONE, UNTIMED, ClaimsByValue, FirstUses,
                                  Interned, as_array, first_use_slices, micros, number_all, report_micros,
                                  return_scratch_memory, slices, timed)

_WINDOWS = tuple((days, days * SECONDS_PER_DAY * MICROS) for days in WINDOWS_DAYS)
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
POSITIONS = {field: 1 + i for i, field in enumerate(INDEXED_FIELDS)}

# (report time in microseconds, claimant, policy, provider, payee account, phone, address)
Entry = tuple
_ROWS_AT_ONCE = 65_536  # rows of the store taken at a time while building

def moment_of(claim: dict):
    """A claim's moment in history: its report, else its loss (features.history.TIME_FIELDS)."""
    moment = claim.get(TIME_FIELDS[0])
    return claim.get(TIME_FIELDS[1]) if moment is None else moment


def person_of(claimant, policy):
    """Who made a claim: its claimant, else its policy (features.history.PERSON_FIELDS)."""
    return policy if claimant is None else claimant



class HistoryIndex:
    """Per entity value, its claims in report order; per shared entity value, the first use by each
    person, sorted. Claims are numbers (`_ids`), values too (`_values`, one numbering for every
    field, so a person is the same number as claimant or as policy). `seen` is the highest `seq` of
    the store applied. `confirmed`: when each claim's fraud was first confirmed (microseconds), by a
    recorded outcome or its training history, up to the row ids `confirmed_seen` of each."""

    def __init__(self) -> None:
        self._load(Interned.build([]), Interned.build([]), np.empty(0, np.int64),
                   {field: np.empty(0, np.int32) for field in INDEXED_FIELDS})
        self.seen = 0
        self.confirmed: dict[str, int] = {}
        self.confirmed_seen = {"outcomes": 0, "history": 0}
        self.lock = threading.Lock()  # held by one transaction from its first claim to its end
        self._journal: list[tuple[int, tuple | None]] | None = None

    def _load(self, ids: Interned, values: Interned, time: np.ndarray, codes: dict[str, np.ndarray]) -> None:
        """Take the claims' columns (by claim number) and lay out each value's claims and first uses."""
        self._ids, self._values = ids, values
        self._time = as_array("q", time)
        self._codes = {field: as_array("i", column) for field, column in codes.items()}
        self._columns = tuple(self._codes.values())
        self._claimant, self._policy = self._codes[PERSON_FIELDS[0]], self._codes[PERSON_FIELDS[1]]
        self._live = int(np.count_nonzero(time != ABSENT))
        self._by_value = {field: ClaimsByValue(*slices(column, time), self._time)
                          for field, column in codes.items()}
        person = np.where(codes[PERSON_FIELDS[0]] != NONE, codes[PERSON_FIELDS[0]], codes[PERSON_FIELDS[1]])
        self._first_uses = {field: FirstUses(self._by_value[field], self._person,
                                              *first_use_slices(codes[field], person, time)) for field in SHARED}
        # The same in INDEXED_FIELDS order, as a claim's values are: a put reads them without names.
        self._ordered = tuple(self._by_value[field] for field in INDEXED_FIELDS)
        self._ordered_uses = tuple(self._first_uses[field] for field in SHARED)

    @classmethod
    def from_rows(cls, rows: Iterable[tuple]) -> HistoryIndex:
        """Built from (claim_id, seq, report_date, *INDEXED_FIELDS) rows of one snapshot, read a chunk
        at a time, its strings numbered in order of appearance; a claim_id given twice keeps its last row."""
        ids: dict[str | None, int] = {None: NONE}  # so that the numbers of strings start at 0
        values: dict[str | None, int] = {None: NONE}
        numbers, times, codes, seen, rows = array("i"), array("q"), [array("i") for _ in INDEXED_FIELDS], 0, iter(rows)
        while part := list(islice(rows, _ROWS_AT_ONCE)):
            claim_ids, seqs, reported, *columns = zip(*part)
            number_all(ids, claim_ids, numbers)
            times.frombytes(report_micros(reported).data.cast("B"))
            seen = max(seen, max((seq for seq in seqs if seq is not None), default=0))
            for column, found in zip(columns, codes):
                number_all(values, column, found)
        interned_ids, interned_values = Interned.build(list(ids)[1:]), Interned.build(list(values)[1:])
        del ids, values
        rows_of = np.frombuffer(numbers, np.int32)
        last = (len(rows_of) - 1 - np.unique(rows_of[::-1], return_index=True)[1]  # each claim's last row
                if len(rows_of) > len(interned_ids) else slice(None))
        claims = rows_of[last]
        time = np.full(len(interned_ids), ABSENT, np.int64)
        time[claims] = np.frombuffer(times, np.int64)[last]
        columns = {}
        for field, column in zip(INDEXED_FIELDS, codes):
            columns[field] = np.full(len(interned_ids), NONE, np.int32)
            columns[field][claims] = np.frombuffer(column, np.int32)[last]
        del numbers, times, codes, rows_of
        index = cls()
        index._load(interned_ids, interned_values, time, columns)
        index.seen = seen
        del last, claims, time, columns
        return_scratch_memory()
        return index

    # --- changes ---------------------------------------------------------------------------------

    def catch_up(self, rows: Iterable[tuple]) -> None:
        """Apply (claim_id, seq, report_date, *INDEXED_FIELDS) rows committed by others, in seq order."""
        for claim_id, seq, report_date, *values in rows:
            reported = as_datetime(report_date)
            self._replace(claim_id, (None if reported is None else micros(reported), *values))
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
        moment = moment_of(claim)
        entry = (None if moment is None else micros(moment), *[claim.get(field) for field in INDEXED_FIELDS])
        self._journal.append(self._replace(claim["claim_id"], entry))

    def end(self, kept: bool, seen: int | None = None) -> None:
        """The transaction committed (`seen`: its highest seq) or rolled back (its claims undone)."""
        journal, self._journal = self._journal or [], None
        if kept:
            if seen is not None:
                self.seen = max(self.seen, seen)
            return
        for claim, earlier in reversed(journal):
            self._remove(claim)
            if earlier is not None:
                self._insert(claim, *earlier)

    def _replace(self, claim_id: str, entry: Entry) -> tuple[int, tuple | None]:
        """Store the entry under its claim_id: the claim's number and what it replaced, if anything."""
        claim = self._ids.add(claim_id)
        if claim == len(self._time):
            self._time.append(ABSENT)
            for column in self._columns:
                column.append(NONE)
        earlier = None if self._time[claim] == ABSENT else self._remove(claim)
        t = UNTIMED if entry[0] is None else entry[0]
        self._insert(claim, t, tuple(NONE if value is None else self._values.add(value) for value in entry[1:]))
        return claim, earlier

    def _insert(self, claim: int, t: int, codes: tuple[int, ...]) -> None:
        self._time[claim] = t
        for column, code in zip(self._columns, codes):
            column[claim] = code
        self._live += 1
        self._file(claim, t, codes, adding=True)

    def _remove(self, claim: int) -> tuple[int, tuple[int, ...]]:
        """Take the claim out; returns its time and values, as `_insert` takes them."""
        t, codes = self._time[claim], tuple(column[claim] for column in self._columns)
        self._file(claim, t, codes, adding=False)
        self._time[claim] = ABSENT
        for column in self._columns:
            column[claim] = NONE
        self._live -= 1
        return t, codes

    def _file(self, claim: int, t: int, codes: tuple[int, ...], adding: bool) -> None:
        """Add the claim to (or drop it from) its values' claims and first uses."""
        person = self._person(claim)
        if t != UNTIMED and person != NONE:  # first uses before the claims: they are made from them
            for first_uses, code in zip(self._ordered_uses, codes[len(COUNTED):]):
                if code != NONE:
                    (first_uses.add if adding else first_uses.drop)(code, person, t)
        for claims, code in zip(self._ordered, codes):
            if code != NONE:
                (claims.add if adding else claims.drop)(code, claim)

    def _person(self, claim: int) -> int:
        """The claim's person (claimant, else policy) as a value number, or NONE."""
        claimant = self._claimant[claim]
        return self._policy[claim] if claimant == NONE else claimant

    # --- counting --------------------------------------------------------------------------------

    def history(self, claims: list[dict], wanted: Iterable[str]) -> dict[str, np.ndarray]:
        """History features of claims already `put`, as `Intake.history` gives them: float64
        arrays in the claims' order, missing where the claim lacks the entity (or, for the
        shared ones, its claimant)."""
        wanted = set(wanted)
        out = {name: np.full(len(claims), np.nan) for name in wanted}
        counted = [(field, self._by_value[field], [(span, out[f"{prefix}_claims_{days}d"]) for days, span in _WINDOWS
                                                   if f"{prefix}_claims_{days}d" in wanted])
                   for field, prefix in COUNTED_ENTITIES.items()]
        last = out.get("days_since_claimant_last_claim")
        shared = [(field, self._first_uses[field], out[f"{prefix}_other_claimants"])
                  for field, prefix in SHARED_ENTITIES.items() if f"{prefix}_other_claimants" in wanted]
        number = self._values.number
        for i, claim in enumerate(claims):
            moment = moment_of(claim)
            if moment is None:  # no claim dates: no history
                continue
            t = micros(moment)
            for field, by_value, windows in counted:
                value = claim.get(field)
                if value is None:
                    continue
                ordered, lo, hi, key = by_value.ordered(number(value))
                before = bisect_left(ordered, t, lo, hi, key=key)  # claims reported strictly before this one
                for span, column in windows:
                    column[i] = before - bisect_left(ordered, t - span, lo, hi, key=key)
                if field == "claimant_id" and last is not None and before > lo:
                    previous = ordered[before - 1] if key is None else key(ordered[before - 1])
                    # Whole seconds between the reports, as the offline code has them.
                    last[i] = (t - previous) // MICROS / SECONDS_PER_DAY
            who = person_of(claim.get("claimant_id"), claim.get("policy_id"))
            if who is None:
                continue
            person = number(who)
            for field, first_uses, column in shared:
                value = claim.get(field)
                if value is not None:
                    column[i] = first_uses.others_before(number(value), person, t)
        return out

    def ring(self, claim_id: str, limit: int, fields: tuple[str, ...] = RING_FIELDS) -> list[tuple[str, list[str]]]:
        """The newest `limit` other claims sharing one of `fields` (MEMBER_FIELDS) with this one, each
        with the fields it shares (in `fields` order); newest first, then by claim_id."""
        claim = self._ids.number(claim_id)
        if claim is None or self._time[claim] == ABSENT:
            return []
        shares: dict[int, list[str]] = {}
        for field in fields:
            members, lo, hi = self._by_value[field].claims(self._codes[field][claim])
            for other in members[lo:hi]:
                if other != claim:
                    shares.setdefault(other, []).append(field)
        time, text = self._time, self._ids.text
        newest = sorted(shares, key=lambda other: (-(0 if time[other] == UNTIMED else time[other]), text(other)))
        return [(text(other), shares[other]) for other in newest[:limit]]

    def members_of(self, field: str, value: str, decoded: dict[int, tuple[str, Entry]] | None = None
                   ) -> list[tuple[str, Entry]]:
        """The stored claims with this value, as (claim_id, entry), in report order (the claim graph's
        walk, which meets a claim through each of its values: `decoded` keeps those made already)."""
        members, lo, hi = self._by_value[field].claims(self._values.number(value))
        decoded = {} if decoded is None else decoded
        found = []
        for claim in members[lo:hi]:
            pair = decoded.get(claim)
            if pair is None:
                pair = decoded[claim] = (self._ids.text(claim), self._entry(claim))
            found.append(pair)
        return found

    def times_of(self, field: str, value: str) -> list[int]:
        """The report times (microseconds) of the stored claims with this value, sorted."""
        ordered, lo, hi, key = self._by_value[field].ordered(self._values.number(value))
        return timed(list(ordered[lo:hi] if key is None else map(key, ordered[lo:hi])))

    def _entry(self, claim: int) -> Entry:
        t, values = self._time[claim], self._values
        texts, base, added = values.texts, values.base, values.added_texts  # as `text`, without its calls
        return (None if t == UNTIMED else t,
                *[None if code == NONE else texts[code] if code < base else added[code - base]
                  for code in [column[claim] for column in self._columns]])

    # --- what the index holds, as plain mappings (tests compare an index kept up to date with one
    # rebuilt from the store; each walks the whole index) -------------------------------------------

    @property
    def claims(self) -> Mapping[str, Entry]:
        """Every stored claim's entry by claim_id (a view: lookups and its length are cheap)."""
        return _Claims(self)

    @property
    def times(self) -> Mapping[str, Mapping[str, list[int]]]:
        """Per field and value, the report times of its claims, sorted."""
        return self._per_value(self._by_value, lambda claims: timed([self._time[claim] for claim in claims]))

    @property
    def members(self) -> Mapping[str, Mapping[str, list[str]]]:
        """Per field and value, its claims' ids."""
        return self._per_value(self._by_value, lambda claims: [self._ids.text(claim) for claim in claims])

    @property
    def first(self) -> Mapping[str, Mapping[str, list[int]]]:
        """Per shared field and value, each person's first use of it, sorted."""
        return self._per_value(self._first_uses, list)

    @property
    def uses(self) -> Mapping[str, Mapping[tuple[str, str], list[int]]]:
        """Per shared field, (value, person): the times the person used the value, sorted."""
        text = self._values.text
        return MappingProxyType({field: MappingProxyType({(text(value), text(person)): list(times) for (value, person), times
                                                          in self._first_uses[field].person_uses()})
                                 for field in SHARED})

    def _per_value(self, structures: dict, shown) -> Mapping:
        text = self._values.text
        return MappingProxyType({field: MappingProxyType({text(value): kept for value, held in structure.items()
                                                          if (kept := shown(held))})
                                 for field, structure in structures.items()})


class _Claims(Mapping):
    """The stored claims by claim_id, read from the index's columns."""

    def __init__(self, index: HistoryIndex) -> None:
        self.index = index

    def _number(self, claim_id) -> int | None:
        claim = self.index._ids.number(claim_id) if isinstance(claim_id, str) else None
        return None if claim is None or self.index._time[claim] == ABSENT else claim

    def __getitem__(self, claim_id: str) -> Entry:
        claim = self._number(claim_id)
        if claim is None:
            raise KeyError(claim_id)
        return self.index._entry(claim)

    def __contains__(self, claim_id) -> bool:
        return self._number(claim_id) is not None

    def __len__(self) -> int:
        return self.index._live

    def __iter__(self) -> Iterator[str]:
        time, text = self.index._time, self.index._ids.text
        return (text(claim) for claim in range(len(time)) if time[claim] != ABSENT)
