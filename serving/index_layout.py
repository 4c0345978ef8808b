"""The compact layout of the in-memory history index (serving/history_index.py): strings numbered
once, each field's claims per value as slices of one array in report order, and each shared
value's first use by each person; the build's helpers. A claim is a number, a value is a number;
what changes after the build gets small arrays of its own."""

from __future__ import annotations

import ctypes
from array import array
from bisect import bisect_left, bisect_right, insort
from datetime import datetime
from typing import Iterator, Sequence

import numpy as np

from features.history import SECONDS_PER_DAY
from serving.clock import as_datetime

MICROS = 1_000_000

UNTIMED = 2 ** 63 - 1  # a claim without report or loss date: last among its values' claims, in no count
ABSENT = -1  # a claim number whose claim is not stored (replaced by nothing, or rolled back)
NONE = -1  # no value
_EMPTY = array("i")
_GATHERED = 16  # a value's claims from this many on get their times by numpy (faster from about 16)
_RECENT_STRINGS = 65_536  # at most this many found strings remembered (a few MB)


def micros(moment: datetime) -> int:
    """A naive moment as whole microseconds since year 1: ordered, and differences are exact."""
    seconds = moment.toordinal() * SECONDS_PER_DAY + moment.hour * 3_600 + moment.minute * 60 + moment.second
    return seconds * MICROS + moment.microsecond


_EPOCH_MICROS = micros(datetime(1970, 1, 1))  # numpy's datetime64 counts from here
_STORED_TEXT = len("2024-01-31 23:59:59.000000")


class Interned:
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
    def build(cls, strings: Sequence[str]) -> Interned:
        """The strings (distinct), numbered by their position."""
        texts = np.array(strings, dtype=object).astype(np.dtypes.StringDType())
        return cls(texts, as_array("i", probing_table(np.fromiter(map(hash, strings), np.int64, len(strings)))))

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
        while (found := table[i]) != NONE:  # the slots from the string's own on, up to a free one
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


class ClaimsByValue:
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
            own = as_array("q", np.concatenate([np.frombuffer(self.time, np.int64)[claims], claims]))
        self.changed[value] = own
        return own

    def items(self) -> Iterator[tuple[int, array]]:
        """Every value with claims, and its claims."""
        for i, value in enumerate(self.values):
            if value not in self.changed:
                yield value, self.members[self.starts[i]:self.starts[i + 1]]
        yield from ((value, own[len(own) // 2:]) for value, own in self.changed.items() if own)


class FirstUses:
    """One shared field's first use of each value by each person, sorted per value (how many other
    claimants used it before a moment). The build's as slices; a value changed since gets its own
    array, and each person's uses of it (`uses`), made from its claims when it first changes."""

    def __init__(self, claims: ClaimsByValue, person, values: array, starts: array, firsts: array) -> None:
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
            if time[claim] == UNTIMED:
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
                if time[claim] == UNTIMED or person == NONE:
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
                if time[claim] != UNTIMED and self.person(claim) != NONE:
                    mine.setdefault(self.person(claim), array("q")).append(time[claim])
            yield from (((value, person), times) for person, times in mine.items())

    def items(self) -> Iterator[tuple[int, array]]:
        for i, value in enumerate(self.values):
            if value not in self.changed:
                yield value, self.firsts[self.starts[i]:self.starts[i + 1]]
        yield from ((value, own) for value, own in self.changed.items() if own)


def probing_table(hashes: np.ndarray) -> np.ndarray:
    """Each string's number in the first free slot from its hash on (linear probing), in a table
    at most half full: filled a round at a time, the strings that found no slot moving on by one."""
    size = 1 << max(3, (2 * len(hashes)).bit_length())
    table = np.full(size, NONE, np.int32)
    waiting, slot = np.arange(len(hashes), dtype=np.int32), hashes & (size - 1)
    while len(waiting):
        free = np.flatnonzero(table[slot] == NONE)
        taking = free[np.unique(slot[free], return_index=True)[1]]  # the first one for each free slot
        table[slot[taking]] = waiting[taking]
        left = np.ones(len(waiting), bool)
        left[taking] = False
        waiting, slot = waiting[left], (slot[left] + 1) & (size - 1)
    return table


def number_all(numbers: dict, strings: tuple, into: array) -> None:
    """Append each string's number to `into`, numbering new ones in order of appearance (`numbers`
    starts as {None: NONE}: no value). Python loops only over the chunk's distinct strings."""
    for text in dict.fromkeys(strings):
        if text not in numbers:
            numbers[text] = len(numbers) - 1
    into.extend(map(numbers.__getitem__, strings))


def report_micros(reported: tuple) -> np.ndarray:
    """Report times in microseconds (UNTIMED for none): parsed by numpy when all are the store's
    text (SQLite's 'YYYY-MM-DD HH:MM:SS.ffffff', exact to the microsecond; 1.5 us a row one by one)."""
    if all(type(text) is str and len(text) == _STORED_TEXT and text[10] == " " for text in reported):
        return np.array(reported, dtype="datetime64[us]").astype(np.int64) + _EPOCH_MICROS
    return np.fromiter((UNTIMED if moment is None else micros(moment) for moment in map(as_datetime, reported)),
                       np.int64, len(reported))


def return_scratch_memory() -> None:
    """Give the build's freed scratch memory back to the system: glibc keeps it otherwise, and a
    process that built the index of 1M claims held 290 MB instead of 130."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: its allocator does as it does
        pass


def timed(times: list[int]) -> list[int]:
    """Report times in order without the untimed claims' (last)."""
    return times[:bisect_left(times, UNTIMED)]


def as_array(typecode: str, values: np.ndarray) -> array:
    """A numpy column as a growable array (appended to online; items read as plain ints)."""
    column = array(typecode)
    column.frombytes(np.ascontiguousarray(values, dtype=np.int64 if typecode == "q" else np.int32).data.cast("B"))
    return column


def slices(codes: np.ndarray, time: np.ndarray) -> tuple[array, array, array]:
    """Each value's claims in report order (ties by claim number): (values, starts, members)."""
    claims = np.flatnonzero(codes != NONE)
    order = np.lexsort((time[claims], codes[claims]))
    members = claims[order]
    return (*runs(codes[members]), as_array("i", members))


def first_use_slices(codes: np.ndarray, person: np.ndarray, time: np.ndarray) -> tuple[array, array, array]:
    """Each value's first use by each person (timed claims with a person), sorted: (values, starts, firsts)."""
    used = np.flatnonzero((codes != NONE) & (person != NONE) & (time != UNTIMED) & (time != ABSENT))
    pair = codes[used].astype(np.int64) << 32 | person[used].astype(np.int64)
    order = np.lexsort((time[used], pair))
    pair, used = pair[order], used[order]
    firsts = np.ones(len(pair), bool)
    firsts[1:] = pair[1:] != pair[:-1]  # the earliest claim of each (value, person)
    values, first = codes[used[firsts]], time[used[firsts]]
    order = np.lexsort((first, values))
    return (*runs(values[order]), as_array("q", first[order]))


def runs(sorted_values: np.ndarray) -> tuple[array, array]:
    """The distinct values of a sorted column and where each one's run starts (and the end)."""
    starts = np.flatnonzero(np.diff(sorted_values, prepend=np.int64(-2))) if len(sorted_values) else np.empty(0, np.int64)
    bounds = np.append(starts, len(sorted_values))
    return as_array("i", sorted_values[starts]), as_array("i", bounds)
