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
next start lays everything out again.
"""

from __future__ import annotations

import ctypes
import threading
from array import array
from bisect import bisect_left, bisect_right, insort
from collections.abc import Mapping
from datetime import datetime
from itertools import islice
from types import MappingProxyType
from typing import Iterable, Iterator, Sequence

import numpy as np

from features.history import COUNTED_ENTITIES, PERSON_FIELDS, SECONDS_PER_DAY, SHARED_ENTITIES, TIME_FIELDS, WINDOWS_DAYS
from serving.clock import as_datetime

MICROS = 1_000_000
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

_UNTIMED = 2 ** 63 - 1  # a claim without report or loss date: last among its values' claims, in no count
_ABSENT = -1  # a claim number whose claim is not stored (replaced by nothing, or rolled back)
_NONE = -1  # no value
_EMPTY = array("i")
_ROWS_AT_ONCE = 65_536  # rows of the store taken at a time while building
_GATHERED = 16  # a value's claims from this many on get their times by numpy (faster from about 16)
_RECENT_STRINGS = 65_536  # at most this many found strings remembered (a few MB)


def micros(moment: datetime) -> int:
    """A naive moment as whole microseconds since year 1: ordered, and differences are exact."""
    seconds = moment.toordinal() * SECONDS_PER_DAY + moment.hour * 3_600 + moment.minute * 60 + moment.second
    return seconds * MICROS + moment.microsecond


_EPOCH_MICROS = micros(datetime(1970, 1, 1))  # numpy's datetime64 counts from here
_STORED_TEXT = len("2024-01-31 23:59:59.000000")


def moment_of(claim: dict):
    """A claim's moment in history: its report, else its loss (features.history.TIME_FIELDS)."""
    moment = claim.get(TIME_FIELDS[0])
    return claim.get(TIME_FIELDS[1]) if moment is None else moment


def person_of(claimant, policy):
    """Who made a claim: its claimant, else its policy (features.history.PERSON_FIELDS)."""
    return policy if claimant is None else claimant


class _Interned:
    """Strings numbered 0, 1, ... as first met: those of the build in one numpy string array (16
    bytes each up to 15 characters), found through an open-addressing table of their numbers (at
    most half full, 8 to 16 bytes a string: a bisection of sorted hashes instead met some twenty
    cache misses a lookup at 1M claims); later ones in a dict."""

    def __init__(self, texts: np.ndarray, table: array) -> None:
        self.texts, self.table, self.mask, self.base = texts, table, len(table) - 1, len(texts)
        self.added: dict[str, int] = {}
        self.added_texts: list[str] = []
        # Strings of the build found lately: a claim's values are looked up when it is put, counted
        # and walked.
        self.recent: dict[str, int] = {}

    @classmethod
    def build(cls, strings: Sequence[str]) -> _Interned:
        """The strings (distinct), numbered by their position."""
        texts = np.array(strings, dtype=object).astype(np.dtypes.StringDType())
        return cls(texts, _column("i", _probing_table(np.fromiter(map(hash, strings), np.int64, len(strings)))))

    def __len__(self) -> int:
        return self.base + len(self.added_texts)

    def number(self, text: str) -> int | None:
        found = self.added.get(text)
        if found is None:
            found = self.recent.get(text)
        return self._search(text) if found is None else found

    def _search(self, text: str) -> int | None:
        table, mask = self.table, self.mask
        i = hash(text) & mask
        while (found := table[i]) != _NONE:  # the slots from the string's own on, up to a free one
            if self.texts[found] == text:
                if len(self.recent) >= _RECENT_STRINGS:
                    self.recent.clear()
                self.recent[text] = found
                return found
            i = (i + 1) & mask
        return None

    def add(self, text: str) -> int:
        found = self.number(text)
        if found is None:
            found = self.added[text] = len(self)
            self.added_texts.append(text)
        return found

    def text(self, number: int) -> str:
        return self.texts[number] if number < self.base else self.added_texts[number - self.base]


class _ClaimsByValue:
    """One field's claims per value, in report order (untimed last): the build's as slices of one
    array (`values` sorted, value i's claims at members[starts[i]:starts[i + 1]]), ordered by the
    time column read as the key. A value changed since has its own array in `changed`, its claims'
    times then the claims (one object: a claim stored online with new values cost 2.5 KB with two
    arrays and a tuple a value), replacing its slice; its times are bisected directly, not through
    the key (a claim put and counted on its own took 45 us instead of 51)."""

    def __init__(self, values: array, starts: array, members: array, time: array) -> None:
        self.values, self.starts, self.members, self.time = values, starts, members, time
        self.changed: dict[int, array] = {}

    def claims(self, value: int | None) -> tuple[array, int, int]:
        """The value's claims, as (array, lo, hi)."""
        found = self.changed.get(value)
        if found is not None:
            return found, len(found) // 2, len(found)
        i = self._slot(value)
        return (_EMPTY, 0, 0) if i is None else (self.members, self.starts[i], self.starts[i + 1])

    def ordered(self, value: int | None) -> tuple[array, int, int, object]:
        """The value's claims to bisect by report time, as (array, lo, hi, key): key(item) is its time."""
        found = self.changed.get(value)
        if found is not None:
            return found, 0, len(found) // 2, None
        return (*self.claims(value), self.time.__getitem__)

    def _slot(self, value: int | None) -> int | None:
        i = bisect_left(self.values, -1 if value is None else value)
        return i if i < len(self.values) and self.values[i] == value else None

    def add(self, value: int, claim: int) -> None:
        own = self.changed.get(value)
        if own is None:
            own = self._own(value)
        n, t = len(own) // 2, self.time[claim]
        i = bisect_right(own, t, 0, n)
        own.insert(n + i, claim)
        own.insert(i, t)

    def drop(self, value: int, claim: int) -> None:
        own = self.changed.get(value)
        if own is None:
            own = self._own(value)
        n = len(own) // 2
        i = bisect_left(own, self.time[claim], 0, n)
        while own[n + i] != claim:  # claims of the same moment: any order
            i += 1
        del own[n + i], own[i]
        if not own and self._slot(value) is None:
            del self.changed[value]  # kept empty otherwise: it hides the build's slice

    def _own(self, value: int) -> array:
        members, lo, hi = self.claims(value)
        members = members[lo:hi]
        if len(members) < _GATHERED:
            own = array("q", map(self.time.__getitem__, members))
            own.extend(iter(members))
        else:  # by numpy: a thousand claims in 12 us instead of 220
            claims = np.frombuffer(members, np.int32)
            own = _column("q", np.concatenate([np.frombuffer(self.time, np.int64)[claims], claims]))
        self.changed[value] = own
        return own

    def items(self) -> Iterator[tuple[int, array]]:
        """Every value with claims, and its claims."""
        for i, value in enumerate(self.values):
            if value not in self.changed:
                yield value, self.members[self.starts[i]:self.starts[i + 1]]
        yield from ((value, own[len(own) // 2:]) for value, own in self.changed.items() if own)


class _FirstUses:
    """One shared field's first use of each value by each person, sorted per value (how many other
    claimants used it before a moment). The build's as slices; a value changed since gets its own
    array, and each person's uses of it (`uses`), made from its claims when it first changes."""

    def __init__(self, claims: _ClaimsByValue, person, values: array, starts: array, firsts: array) -> None:
        self.by_value, self.person = claims, person
        self.values, self.starts, self.firsts = values, starts, firsts
        self.changed: dict[int, array] = {}
        self.uses: dict[int, array] = {}  # by value << 32 | person: an int key takes less than a tuple

    def others_before(self, value: int | None, person: int | None, t: int) -> int:
        """The other persons who used the value before `t`."""
        found = self.changed.get(value)
        if found is not None:
            users = bisect_left(found, t)
        else:
            i = bisect_left(self.values, -1 if value is None else value)
            users = bisect_left(self.firsts, t, self.starts[i], self.starts[i + 1]) - self.starts[i] \
                if i < len(self.values) and self.values[i] == value else 0
        mine = self._first_use(value, person)
        return users - (1 if mine is not None and mine < t else 0)

    def _first_use(self, value: int | None, person: int | None) -> int | None:
        if person is None:  # never seen: no use of anything
            return None
        if value in self.changed:
            mine = self.uses.get(value << 32 | person)
            return mine[0] if mine else None
        members, lo, hi = self.by_value.claims(value)
        time = self.by_value.time
        for claim in members[lo:hi]:  # in report order: the first of this person's is the first use
            if time[claim] == _UNTIMED:
                return None
            if self.person(claim) == person:
                return time[claim]
        return None

    def add(self, value: int, person: int, t: int) -> None:
        first = self.changed.get(value)
        if first is None:
            first = self._own(value)
        mine = self.uses.get(value << 32 | person)
        if mine is None:
            mine = self.uses[value << 32 | person] = array("q")
        earliest = mine[0] if mine else None
        insort(mine, t)
        if earliest is None or t < earliest:
            if earliest is not None:
                del first[bisect_left(first, earliest)]
            insort(first, t)

    def drop(self, value: int, person: int, t: int) -> None:
        first = self.changed.get(value)
        if first is None:
            first = self._own(value)
        mine = self.uses[value << 32 | person]
        earliest = mine[0]
        del mine[bisect_left(mine, t)]
        if not mine:
            del self.uses[value << 32 | person]
        if not mine or mine[0] != earliest:  # the person's first use of the value moved
            del first[bisect_left(first, earliest)]
            if mine:
                insort(first, mine[0])

    def _own(self, value: int) -> array:
        """The value's first uses as its own array, and each person's uses, from its claims now."""
        found = self.changed.get(value)
        if found is None:
            members, lo, hi = self.by_value.claims(value)
            time, found = self.by_value.time, array("q")
            for claim in members[lo:hi]:  # in report order: a person's first claim is its first use
                person = self.person(claim)
                if time[claim] == _UNTIMED or person == _NONE:
                    continue
                mine = self.uses.get(value << 32 | person)
                if mine is None:
                    mine = self.uses[value << 32 | person] = array("q")
                    found.append(time[claim])
                mine.append(time[claim])
            self.changed[value] = found
        return found

    def person_uses(self) -> Iterator[tuple[tuple[int, int], array]]:
        """Each (value, person) and the times the person used the value: kept for values changed
        since the build, read from the value's claims for the others."""
        yield from (((pair >> 32, pair & 0xFFFFFFFF), times) for pair, times in self.uses.items())
        time = self.by_value.time
        for value, claims in self.by_value.items():
            if value in self.changed:
                continue
            mine: dict[int, array] = {}
            for claim in claims:
                if time[claim] != _UNTIMED and self.person(claim) != _NONE:
                    mine.setdefault(self.person(claim), array("q")).append(time[claim])
            yield from (((value, person), times) for person, times in mine.items())

    def items(self) -> Iterator[tuple[int, array]]:
        for i, value in enumerate(self.values):
            if value not in self.changed:
                yield value, self.firsts[self.starts[i]:self.starts[i + 1]]
        yield from ((value, own) for value, own in self.changed.items() if own)


class HistoryIndex:
    """Per entity value, its claims in report order; per shared entity value, the first use by each
    person, sorted. Claims are numbers (`_ids`), values too (`_values`, one numbering for every
    field, so a person is the same number as claimant or as policy). `seen` is the highest `seq` of
    the store applied. `confirmed`: when each claim's fraud was first confirmed (microseconds), by a
    recorded outcome or its training history, up to the row ids `confirmed_seen` of each."""

    def __init__(self) -> None:
        self._load(_Interned.build([]), _Interned.build([]), np.empty(0, np.int64),
                   {field: np.empty(0, np.int32) for field in INDEXED_FIELDS})
        self.seen = 0
        self.confirmed: dict[str, int] = {}
        self.confirmed_seen = {"outcomes": 0, "history": 0}
        self.lock = threading.Lock()  # held by one transaction from its first claim to its end
        self._journal: list[tuple[int, tuple | None]] | None = None

    def _load(self, ids: _Interned, values: _Interned, time: np.ndarray, codes: dict[str, np.ndarray]) -> None:
        """Take the claims' columns (by claim number) and lay out each value's claims and first uses."""
        self._ids, self._values = ids, values
        self._time = _column("q", time)
        self._codes = {field: _column("i", column) for field, column in codes.items()}
        self._columns = tuple(self._codes.values())
        self._claimant, self._policy = self._codes[PERSON_FIELDS[0]], self._codes[PERSON_FIELDS[1]]
        self._live = int(np.count_nonzero(time != _ABSENT))
        self._by_value = {field: _ClaimsByValue(*_slices(column, time), self._time)
                          for field, column in codes.items()}
        person = np.where(codes[PERSON_FIELDS[0]] != _NONE, codes[PERSON_FIELDS[0]], codes[PERSON_FIELDS[1]])
        self._first_uses = {field: _FirstUses(self._by_value[field], self._person,
                                              *_first_use_slices(codes[field], person, time)) for field in SHARED}
        # The same in INDEXED_FIELDS order, as a claim's values are: a put reads them without names.
        self._ordered = tuple(self._by_value[field] for field in INDEXED_FIELDS)
        self._ordered_uses = tuple(self._first_uses[field] for field in SHARED)

    @classmethod
    def from_rows(cls, rows: Iterable[tuple]) -> HistoryIndex:
        """Built from (claim_id, seq, report_date, *INDEXED_FIELDS) rows of one snapshot, read a chunk
        at a time, its strings numbered in order of appearance; a claim_id given twice keeps its last row."""
        ids: dict[str | None, int] = {None: _NONE}  # so that the numbers of strings start at 0
        values: dict[str | None, int] = {None: _NONE}
        numbers, times, codes, seen, rows = array("i"), array("q"), [array("i") for _ in INDEXED_FIELDS], 0, iter(rows)
        while part := list(islice(rows, _ROWS_AT_ONCE)):
            claim_ids, seqs, reported, *columns = zip(*part)
            _number_all(ids, claim_ids, numbers)
            times.frombytes(_report_micros(reported).data.cast("B"))
            seen = max(seen, max((seq for seq in seqs if seq is not None), default=0))
            for column, found in zip(columns, codes):
                _number_all(values, column, found)
        interned_ids, interned_values = _Interned.build(list(ids)[1:]), _Interned.build(list(values)[1:])
        del ids, values
        rows_of = np.frombuffer(numbers, np.int32)
        last = (len(rows_of) - 1 - np.unique(rows_of[::-1], return_index=True)[1]  # each claim's last row
                if len(rows_of) > len(interned_ids) else slice(None))
        claims = rows_of[last]
        time = np.full(len(interned_ids), _ABSENT, np.int64)
        time[claims] = np.frombuffer(times, np.int64)[last]
        columns = {}
        for field, column in zip(INDEXED_FIELDS, codes):
            columns[field] = np.full(len(interned_ids), _NONE, np.int32)
            columns[field][claims] = np.frombuffer(column, np.int32)[last]
        del numbers, times, codes, rows_of
        index = cls()
        index._load(interned_ids, interned_values, time, columns)
        index.seen = seen
        del last, claims, time, columns
        _return_scratch_memory()
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
            self._time.append(_ABSENT)
            for column in self._columns:
                column.append(_NONE)
        earlier = None if self._time[claim] == _ABSENT else self._remove(claim)
        t = _UNTIMED if entry[0] is None else entry[0]
        self._insert(claim, t, tuple(_NONE if value is None else self._values.add(value) for value in entry[1:]))
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
        self._time[claim] = _ABSENT
        for column in self._columns:
            column[claim] = _NONE
        self._live -= 1
        return t, codes

    def _file(self, claim: int, t: int, codes: tuple[int, ...], adding: bool) -> None:
        """Add the claim to (or drop it from) its values' claims and first uses."""
        person = self._person(claim)
        if t != _UNTIMED and person != _NONE:  # first uses before the claims: they are made from them
            for first_uses, code in zip(self._ordered_uses, codes[len(COUNTED):]):
                if code != _NONE:
                    (first_uses.add if adding else first_uses.drop)(code, person, t)
        for claims, code in zip(self._ordered, codes):
            if code != _NONE:
                (claims.add if adding else claims.drop)(code, claim)

    def _person(self, claim: int) -> int:
        """The claim's person (claimant, else policy) as a value number, or _NONE."""
        claimant = self._claimant[claim]
        return self._policy[claim] if claimant == _NONE else claimant

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
        if claim is None or self._time[claim] == _ABSENT:
            return []
        shares: dict[int, list[str]] = {}
        for field in fields:
            members, lo, hi = self._by_value[field].claims(self._codes[field][claim])
            for other in members[lo:hi]:
                if other != claim:
                    shares.setdefault(other, []).append(field)
        time, text = self._time, self._ids.text
        newest = sorted(shares, key=lambda other: (-(0 if time[other] == _UNTIMED else time[other]), text(other)))
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
        return _timed(list(ordered[lo:hi] if key is None else map(key, ordered[lo:hi])))

    def _entry(self, claim: int) -> Entry:
        t, values = self._time[claim], self._values
        texts, base, added = values.texts, values.base, values.added_texts  # as `text`, without its calls
        return (None if t == _UNTIMED else t,
                *[None if code == _NONE else texts[code] if code < base else added[code - base]
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
        return self._per_value(self._by_value, lambda claims: _timed([self._time[claim] for claim in claims]))

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
        return None if claim is None or self.index._time[claim] == _ABSENT else claim

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
        return (text(claim) for claim in range(len(time)) if time[claim] != _ABSENT)


def _probing_table(hashes: np.ndarray) -> np.ndarray:
    """Each string's number in the first free slot from its hash on (linear probing), in a table
    at most half full: filled a round at a time, the strings that found no slot moving on by one."""
    size = 1 << max(3, (2 * len(hashes)).bit_length())
    table = np.full(size, _NONE, np.int32)
    waiting, slot = np.arange(len(hashes), dtype=np.int32), hashes & (size - 1)
    while len(waiting):
        free = np.flatnonzero(table[slot] == _NONE)
        taking = free[np.unique(slot[free], return_index=True)[1]]  # the first one for each free slot
        table[slot[taking]] = waiting[taking]
        left = np.ones(len(waiting), bool)
        left[taking] = False
        waiting, slot = waiting[left], (slot[left] + 1) & (size - 1)
    return table


def _number_all(numbers: dict, strings: tuple, into: array) -> None:
    """Append each string's number to `into`, numbering new ones in order of appearance (`numbers`
    starts as {None: _NONE}: no value). Python loops only over the chunk's distinct strings."""
    for text in dict.fromkeys(strings):
        if text not in numbers:
            numbers[text] = len(numbers) - 1
    into.extend(map(numbers.__getitem__, strings))


def _report_micros(reported: tuple) -> np.ndarray:
    """Report times in microseconds (_UNTIMED for none): parsed by numpy when all are the store's
    text (SQLite's 'YYYY-MM-DD HH:MM:SS.ffffff', exact to the microsecond; 1.5 us a row one by one)."""
    if all(type(text) is str and len(text) == _STORED_TEXT and text[10] == " " for text in reported):
        return np.array(reported, dtype="datetime64[us]").astype(np.int64) + _EPOCH_MICROS
    return np.fromiter((_UNTIMED if moment is None else micros(moment) for moment in map(as_datetime, reported)),
                       np.int64, len(reported))


def _return_scratch_memory() -> None:
    """Give the build's freed scratch memory back to the system: glibc keeps it otherwise, and a
    process that built the index of 1M claims held 290 MB instead of 130."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: its allocator does as it does
        pass


def _timed(times: list[int]) -> list[int]:
    """Report times in order without the untimed claims' (last)."""
    return times[:bisect_left(times, _UNTIMED)]


def _column(typecode: str, values: np.ndarray) -> array:
    """A numpy column as a growable array (appended to online; items read as plain ints)."""
    column = array(typecode)
    column.frombytes(np.ascontiguousarray(values, dtype=np.int64 if typecode == "q" else np.int32).data.cast("B"))
    return column


def _slices(codes: np.ndarray, time: np.ndarray) -> tuple[array, array, array]:
    """Each value's claims in report order (ties by claim number): (values, starts, members)."""
    claims = np.flatnonzero(codes != _NONE)
    order = np.lexsort((time[claims], codes[claims]))
    members = claims[order]
    return (*_runs(codes[members]), _column("i", members))


def _first_use_slices(codes: np.ndarray, person: np.ndarray, time: np.ndarray) -> tuple[array, array, array]:
    """Each value's first use by each person (timed claims with a person), sorted: (values, starts, firsts)."""
    used = np.flatnonzero((codes != _NONE) & (person != _NONE) & (time != _UNTIMED) & (time != _ABSENT))
    pair = codes[used].astype(np.int64) << 32 | person[used].astype(np.int64)
    order = np.lexsort((time[used], pair))
    pair, used = pair[order], used[order]
    firsts = np.ones(len(pair), bool)
    firsts[1:] = pair[1:] != pair[:-1]  # the earliest claim of each (value, person)
    values, first = codes[used[firsts]], time[used[firsts]]
    order = np.lexsort((first, values))
    return (*_runs(values[order]), _column("q", first[order]))


def _runs(sorted_values: np.ndarray) -> tuple[array, array]:
    """The distinct values of a sorted column and where each one's run starts (and the end)."""
    starts = np.flatnonzero(np.diff(sorted_values, prepend=np.int64(-2))) if len(sorted_values) else np.empty(0, np.int64)
    bounds = np.append(starts, len(sorted_values))
    return _column("i", sorted_values[starts]), _column("i", bounds)
