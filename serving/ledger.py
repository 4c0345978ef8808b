"""A tamper-evident ledger: every decision, every recorded outcome and every change of a review case,
chained by hashes.

Each entry is appended to the table "ledger" in the same database and in the same transaction as
the row it covers. An entry holds the SHA-256 of the covered row's canonical JSON
(`content_digest`) and the hash of the entry before it (`prev_hash`); its own `hash` is the
SHA-256 of the canonical JSON of {seq, kind, ref, claim_id, content_digest, recorded_at,
prev_hash}. The first entry's prev_hash is 64 zeros.

`Ledger.verify` walks the chain in order and cross-checks the covered rows, naming the first
entry altered, inserted or removed, and every covered row that no longer matches its entry, is
gone, or was never entered. A row written once (a decision, an outcome) has one entry; a row that
changes (a case: opened, taken, resolved) gets an entry per change, and only the newest must
match the row: the older ones are its history (`Covered(..., versioned=True)`).

What a chain kept in the same database can and cannot show: anyone who can write to the
database and has read this module can rewrite the whole chain from the point of a change on,
or cut its tail together with the covered rows. Such rewrites are caught only against a head
kept elsewhere: export `Ledger.head(conn)` (seq, hash) now and then to storage the database's
writers cannot change, and pass those pairs to `verify(..., anchors=...)`.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timezone
from decimal import Decimal
from typing import Any

import numpy as np
import sqlalchemy as sa

from serving.bulk import insert_with_sqlalchemy
from serving.clock import utc_now

GENESIS = "0" * 64
KINDS = ("decision", "outcome", "case")
CHUNK = 10_000            # ledger rows read per query while walking the chain
LOOKUP_CHUNK = 2_000      # covered rows looked up in the ledger per query
MAX_PROBLEMS = 100        # problems kept (in order) in a report; all are counted

# What verify reads of each kind: every covered row as (ref as text, content as stored).
CoveredRows = Callable[[sa.Connection], Iterable[tuple[str, Mapping[str, Any]]]]
# Of the refs of rows without any entry, those written before their kind was entered (not problems).
Predating = Callable[[sa.Connection, list[str]], set[str]]


@dataclass(frozen=True)
class Covered:
    """How verify checks one kind: its rows; whether a row has one entry ("once", e.g. a decision)
    or one per change, the newest matching the row ("versioned", e.g. a case); and, for a kind
    entered only since some release, which rows without an entry predate that (counted, not
    reported as problems)."""

    rows: CoveredRows
    versioned: bool = False
    predating: Predating | None = None


# --- canonical JSON ---------------------------------------------------------------------------

def canonical_json(obj: Any) -> str:
    """One text for equal content, however it came back from SQLite or PostgreSQL.

    Keys sorted, no whitespace, non-ASCII kept as is (hash its UTF-8). Floats in their shortest
    round-trip form (repr), except that a whole float is written as the integer (1.0 -> 1, so an
    integer bound to a Float column and the float read back agree); NaN is null (SQLite stores NaN
    as NULL) and infinities are the strings "Infinity"/"-Infinity". Date-times to ISO 8601 with
    microseconds and no offset: an aware one is converted to UTC first, a naive one is taken to be
    UTC already (the store keeps naive UTC). Decimals equal to a float's shortest form are written
    as that float, others as their plain decimal text. numpy scalars as their Python values;
    UUIDs as text. Any other type is a TypeError, never a silent str().
    """
    return _ENCODER.encode(_plain(obj))


def digest(obj: Any) -> str:
    """SHA-256 (hex) of the canonical JSON of `obj`, as UTF-8."""
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()


_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_WHOLE_FLOAT_LIMIT = 2.0 ** 63


def _float(v: float):
    if v - v != 0.0:  # NaN or an infinity
        return None if v != v else ("Infinity" if v > 0 else "-Infinity")
    if v.is_integer() and -_WHOLE_FLOAT_LIMIT < v < _WHOLE_FLOAT_LIMIT:
        return int(v)
    return v


def _datetime(v: datetime) -> str:
    if v.tzinfo is not None and v.utcoffset() is not None:
        v = v.astimezone(timezone.utc).replace(tzinfo=None)
    return datetime.isoformat(v, timespec="microseconds")


def _plain(v: Any):
    t = type(v)
    if v is None or t is str or t is int or t is bool:
        return v
    if t is float:
        return _float(v)
    if t is dict:
        return _plain_dict(v)
    if t is list or t is tuple:
        return [_plain(x) for x in v]
    if isinstance(v, datetime):  # before date: a datetime is a date
        return _datetime(v)
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, time):
        return v.isoformat(timespec="microseconds")
    if isinstance(v, np.generic):
        return _plain(v.item())
    if isinstance(v, bool):
        return bool(v)
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        return _float(float(v))
    if isinstance(v, str):
        return str.__str__(v)
    if isinstance(v, Decimal):
        return _decimal(v)
    if isinstance(v, Mapping):
        return _plain_dict(v)
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, uuid.UUID):
        return str(v)
    raise TypeError(f"canonical_json cannot represent {t.__name__} values ({v!r})")


def _plain_dict(d: Mapping) -> dict:
    out = {}
    for k, v in d.items():  # the common scalars inline: this runs for every row verified
        if type(k) is not str:
            k = _key(k)
        t = type(v)
        if t is str or v is None or t is int:
            out[k] = v
        elif t is float:
            out[k] = _float(v)
        elif t is datetime and v.tzinfo is None:
            out[k] = v.isoformat(timespec="microseconds")
        else:
            out[k] = _plain(v)
    return out


def _decimal(v: Decimal):
    if not v.is_finite():
        return _float(float(v))
    if v == v.to_integral_value():
        return int(v)
    as_float = float(v)
    if Decimal(repr(as_float)) == v:
        return _float(as_float)
    return format(v.normalize(), "f")


def _key(k) -> str:
    if type(k) is str:
        return k
    if isinstance(k, str):
        return str.__str__(k)
    raise TypeError(f"canonical_json keys must be text, not {type(k).__name__} ({k!r})")


# --- entries and reports ----------------------------------------------------------------------

@dataclass(frozen=True)
class LedgerEntry:
    """One covered row: its kind ("decision" | "outcome" | "case"), its id as text, its claim and its
    content as stored (best taken from INSERT ... RETURNING, so what is hashed is what was kept)."""

    kind: str
    ref: str
    claim_id: str
    content: Mapping[str, Any]

    @classmethod
    def of(cls, kind: str, row: Mapping[str, Any], ref: str = "id") -> "LedgerEntry":
        """The entry for a row given as a mapping of all its columns (e.g. `row._mapping`)."""
        row = dict(row)
        return cls(kind, str(row[ref]), str(row["claim_id"]), row)


@dataclass
class LedgerReport:
    ok: bool
    n_entries: int
    problems: list[str]               # the first MAX_PROBLEMS, first (lowest seq) first
    n_problems: int = 0               # all problems found
    rows_checked: dict[str, int] = field(default_factory=dict)   # covered rows read, per kind
    unchecked: dict[str, int] = field(default_factory=dict)      # entries of kinds not cross-checked
    head: tuple[int, str] | None = None                           # (seq, hash) of the last entry
    # Rows, per kind, written before their kind was entered in the ledger: not covered, not problems.
    predating: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)                # one line each, after the counts

    def add_problems(self, problems: Iterable[str], n_problems: int | None = None) -> None:
        """Problems a caller found beside the chain (e.g. rows the ledger covers only indirectly)."""
        problems = list(problems)
        n = len(problems) if n_problems is None else n_problems
        self.problems += problems[: max(MAX_PROBLEMS - len(self.problems), 0)]
        self.n_problems += n
        self.ok = self.ok and n == 0

    def summary(self) -> str:
        rows = ", ".join(f"{n} {kind}s" for kind, n in sorted(self.rows_checked.items())) or "no covered rows"
        lines = [f"ledger: {self.n_entries} entries, {rows} checked: "
                 + ("intact" if self.ok else f"{self.n_problems} problem(s)")]
        if self.unchecked:
            lines.append("not cross-checked (no rows given): "
                         + ", ".join(f"{n} {kind} entries" for kind, n in sorted(self.unchecked.items())))
        if any(self.predating.values()):
            lines.append("not covered (written before the ledger entered their kind): "
                         + ", ".join(f"{n} {kind}s" for kind, n in sorted(self.predating.items()) if n))
        lines += self.notes
        lines += [f"  - {p}" for p in self.problems]
        if self.n_problems > len(self.problems):
            lines.append(f"  ... and {self.n_problems - len(self.problems)} more")
        return "\n".join(lines)


def table_rows(source: sa.Table | sa.Select, ref: str = "id", chunk: int = 5_000,
               added: Iterable[str] = ()) -> CoveredRows:
    """What verify needs of one kind: every row of a table (or a select) as (ref as text, all columns),
    streamed `chunk` rows at a time. Its columns must be those the entries' content was taken from.

    `added`: columns added to the table after rows were entered, left out of a row's content where
    NULL, as the rows entered before they existed were hashed without them (rows written since
    always fill them, so emptying one is still seen as an alteration)."""
    query = source if isinstance(source, sa.Select) else sa.select(source)
    added = tuple(added)

    def rows(conn: sa.Connection):
        result = conn.execute(query.execution_options(yield_per=chunk))
        keys = [str.__str__(k) for k in result.keys()]  # plain text, not SQLAlchemy's quoted names
        at = keys.index(ref)
        for row in result:
            content = dict(zip(keys, row))
            for name in added:
                if content.get(name, 0) is None:
                    del content[name]
            yield str(row[at]), content

    return rows


class _Problems:
    """The first `limit` problems by position, found out of order; all counted."""

    def __init__(self, limit: int):
        self.limit, self.count, self.kept = limit, 0, []

    def add(self, key: tuple, message: str) -> None:
        self.count += 1
        self.kept.append((key, message))
        if len(self.kept) > 4 * self.limit:
            self.kept = sorted(self.kept)[: self.limit]

    def first(self) -> list[str]:
        return [m for _, m in sorted(self.kept)[: self.limit]]


_END = math.inf  # the position of problems with no ledger entry (rows never entered)


# --- the ledger -------------------------------------------------------------------------------

class Ledger:
    def __init__(self, metadata: sa.MetaData, name: str = "ledger",
                 insert: Callable[[sa.Connection, sa.Table, list[dict]], None] = insert_with_sqlalchemy):
        """Defines the ledger table on `metadata` (create it with metadata.create_all)."""
        self.table = sa.Table(
            name, metadata,
            sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
                      autoincrement=False),
            sa.Column("kind", sa.String(32), nullable=False),
            sa.Column("ref", sa.String(128), nullable=False),
            sa.Column("claim_id", sa.String(128), nullable=False),
            sa.Column("content_digest", sa.String(64), nullable=False),
            sa.Column("recorded_at", sa.DateTime(), nullable=False),
            sa.Column("prev_hash", sa.String(64), nullable=False),
            sa.Column("hash", sa.String(64), nullable=False),
            # Not unique: should a covered row be deleted and its id reused (SQLite reuses the highest
            # rowid), the new row is still entered and verify reports both entries.
            sa.Index(f"ix_{name}_kind_ref", "kind", "ref"),
        )
        self._insert = insert  # how rows reach the table (a `serving.bulk.BulkInsert` in the store)
        self._statements: dict[str, tuple[str, str]] = {}  # dialect -> (lock, head) driver SQL
        self._lock_key = int.from_bytes(hashlib.sha256(f"claimtriage.ledger:{name}".encode()).digest()[:8],
                                        "big", signed=True)

    # -- writing

    def append(self, conn: sa.Connection, entries: Sequence[LedgerEntry]) -> None:
        """Append `entries`, in order, inside the caller's open transaction (commit covers both).

        Concurrent appenders are serialised until their transactions end, so the chain never forks:
        PostgreSQL takes a transaction-scoped advisory lock, SQLite takes the database's write lock
        (a no-op UPDATE) before reading the chain's end. Call it last before the commit: the lock
        is held from here to the end of the transaction.
        """
        if not entries:
            return
        stamp = utc_now()
        pending = []
        for e in entries:
            if e.kind not in KINDS:
                raise ValueError(f"ledger entries are of kind {' or '.join(KINDS)}, not {e.kind!r}")
            if "claim_id" in e.content and str(e.content["claim_id"]) != e.claim_id:
                raise ValueError(f"{e.kind} {e.ref}: entry claim {e.claim_id!r} is not the row's "
                                 f"{e.content['claim_id']!r}")
            pending.append((e, digest(e.content)))  # before the lock: unrepresentable content fails early
        self.lock(conn)
        seq, prev = self.head(conn) or (0, GENESIS)
        rows = []
        for e, content_digest in pending:
            seq += 1
            row = {"seq": seq, "kind": e.kind, "ref": str(e.ref), "claim_id": str(e.claim_id),
                   "content_digest": content_digest, "recorded_at": stamp, "prev_hash": prev}
            row["hash"] = prev = _entry_hash(row)
            rows.append(row)
        self._insert(conn, self.table, rows)

    def head(self, conn: sa.Connection) -> tuple[int, str] | None:
        """(seq, hash) of the last entry, to keep outside the database as an anchor; None if empty."""
        # Driver SQL: this and `lock` run with every scored claim, and building the statement
        # through SQLAlchemy's expression language costs five times the query.
        last = conn.exec_driver_sql(self._sql(conn.dialect)[1]).first()
        return None if last is None else (last[0], last[1])

    def lock(self, conn: sa.Connection) -> None:
        """Serialise appenders until the transaction ends (on SQLite: the database's write lock)."""
        conn.exec_driver_sql(self._sql(conn.dialect)[0])

    def _sql(self, dialect: sa.Dialect) -> tuple[str, str]:
        """(lock, head) as driver SQL for this database, built once."""
        found = self._statements.get(dialect.name)
        if found is None:
            table = dialect.identifier_preparer.quote(self.table.name)
            if dialect.name == "postgresql":
                lock = f"SELECT pg_advisory_xact_lock({self._lock_key})"
            elif dialect.name == "sqlite":
                # A write that changes nothing still opens the write transaction: no other
                # connection can append between our reading the chain's end and our commit.
                lock = f"UPDATE {table} SET seq = seq WHERE 0"
            else:
                raise NotImplementedError(f"the ledger serialises appenders on SQLite and PostgreSQL, not {dialect.name}")
            found = self._statements[dialect.name] = (lock, f"SELECT seq, hash FROM {table} ORDER BY seq DESC LIMIT 1")
        return found

    # -- verifying

    def verify(self, conn: sa.Connection, covered: Mapping[str, CoveredRows | Covered],
               anchors: Iterable[tuple[int, str]] = (), max_problems: int = MAX_PROBLEMS) -> LedgerReport:
        """Walk the chain, then cross-check the covered rows of each kind in `covered`.

        `covered` maps a kind to a callable giving, on `conn`, every row of that kind as
        (ref as text, content as stored), e.g. {"decision": table_rows(decisions)}, each row with
        exactly one entry; or to a `Covered` saying more (rows with an entry per change). Entries
        of kinds left out are chained but not cross-checked (the report says so). `anchors` are
        (seq, hash) pairs taken earlier with `head` and kept outside the database.

        Streams: the chain in CHUNK-row pages, the rows as the callables yield them; memory is
        two bytes per entry. Entries appended while it runs, beyond the chain's end when the walk
        finished, are left for the next run.
        """
        covered = {kind: c if isinstance(c, Covered) else Covered(c) for kind, c in covered.items()}
        problems = _Problems(max_problems)
        kind_codes = {kind: i + 1 for i, kind in enumerate(sorted(set(covered) | set(KINDS)))}
        walk = self._walk(conn, problems, dict(anchors), kind_codes)
        rows_checked, predating = {}, {}
        seen = _SeqBytes(min(walk.last_seq + 1, 2 * walk.n_entries + CHUNK))
        for kind, how in covered.items():
            rows_checked[kind], predating[kind] = self._cross_check(conn, kind, how, walk, seen, problems)
        self._entries_without_rows(conn, set(covered), kind_codes, walk, seen, problems)
        unchecked = {kind: n for kind, n in walk.per_kind.items() if kind not in covered}
        return LedgerReport(ok=problems.count == 0, n_entries=walk.n_entries, problems=problems.first(),
                            n_problems=problems.count, rows_checked=rows_checked, unchecked=unchecked,
                            head=walk.head, predating={k: n for k, n in predating.items() if n})

    def _walk(self, conn, problems: _Problems, anchors: dict[int, str], kind_codes: dict[str, int]) -> "_Walk":
        t = self.table
        walk = _Walk()
        expected, prev, prevprev = 1, GENESIS, None
        renumbered = None  # an open run of renumbered entries: [first seq, last seq, shift]
        query = (sa.select(t.c.seq, t.c.kind, t.c.ref, t.c.claim_id, t.c.content_digest, t.c.recorded_at,
                           t.c.prev_hash, t.c.hash)
                 .where(t.c.seq > sa.bindparam("after")).order_by(t.c.seq).limit(CHUNK))
        after = -(2 ** 62)
        while True:
            chunk = conn.execute(query, {"after": after}).all()
            if not chunk:
                break
            for r in chunk:
                s = r.seq
                # the link to the entry before
                if s != expected:
                    gap = f"entry {expected} is" if s - 1 == expected else f"entries {expected}..{s - 1} are"
                    if s < expected:  # only possible for seq <= 0
                        problems.add((s, 0), f"entry {s}: a sequence number below 1 (inserted)")
                    else:
                        problems.add((expected, 0), f"{gap} missing: removed from the ledger "
                                                    f"(entry {s} follows entry {expected - 1})")
                elif r.prev_hash != prev:
                    if prevprev is not None and r.prev_hash == prevprev:
                        problems.add((s - 1, 1), f"entry {s - 1} was inserted: entry {s} is chained to "
                                                 f"entry {s - 2}")
                    elif s == 1:
                        problems.add((s, 0), f"{_where(r)}: the first entry does not start the chain "
                                             f"(entries before it were removed, or it was rewritten)")
                    else:
                        problems.add((s, 0), f"the chain breaks between entries {s - 1} and {s}: entry {s} "
                                             f"was chained to a different entry (one was removed, inserted "
                                             f"or rewritten there)")
                # the entry itself
                fields = {"seq": s, "kind": r.kind, "ref": r.ref, "claim_id": r.claim_id,
                          "content_digest": r.content_digest, "recorded_at": r.recorded_at, "prev_hash": r.prev_hash}
                if _entry_hash(fields) != r.hash:
                    shift = next((d for d in (1, -1, 2, -2) if _entry_hash(fields | {"seq": s + d}) == r.hash), None)
                    if shift is None:
                        problems.add((s, 2), f"{_where(r)}: the ledger entry was altered (its hash does not "
                                             f"match its fields)")
                        walk.broken.add(s)
                    elif renumbered and renumbered[1] == s - 1 and renumbered[2] == shift:
                        renumbered[1] = s
                    else:
                        if renumbered:
                            problems.add(*_renumbered(renumbered))
                        renumbered = [s, s, shift]
                elif renumbered:
                    problems.add(*_renumbered(renumbered))
                    renumbered = None
                if s in anchors and anchors[s] != r.hash:
                    problems.add((s, 3), f"entry {s} is not the entry anchored at {s}: the chain was "
                                         f"rewritten at or before it")
                walk.note(s, kind_codes.get(r.kind, 0), r.kind)
                walk.n_entries += 1
                expected, prevprev, prev = s + 1, prev, r.hash
            walk.head = (chunk[-1].seq, chunk[-1].hash)
            after = chunk[-1].seq
        if renumbered:
            problems.add(*_renumbered(renumbered))
        last = walk.head[0] if walk.head else 0
        for s in sorted(anchors):
            if s > last:
                problems.add((s, 0), f"entry {s}, anchored earlier, is missing: the ledger was cut after "
                                     f"entry {last}")
                break
        walk.last_seq = max(last, 0)
        return walk

    def _cross_check(self, conn, kind: str, covered: Covered, walk: "_Walk", seen: "_SeqBytes",
                     problems: _Problems) -> tuple[int, int]:
        """(rows read, rows without an entry that predate their kind being entered)."""
        t = self.table
        where = [t.c.kind == kind, _among(conn, t.c.ref, "refs")]
        if not covered.versioned:
            where.append(t.c.seq <= walk.last_seq)
        # else: a row that changed while verify ran has its newest entry (appended with the change)
        # beyond the walked chain's end; it is compared with that one, and chained next time.
        query = sa.select(t.c.seq, t.c.ref, t.c.claim_id, t.c.content_digest).where(*where)
        n, n_predating = 0, 0
        batch: list[tuple[str, str, Any]] = []

        def check(batch):
            nonlocal n_predating
            found: dict[str, list] = {}
            for e in conn.execute(query, {"refs": list({ref for ref, _, _ in batch})}):
                found.setdefault(e.ref, []).append(e)
            unentered = [ref for ref, _, _ in batch if ref not in found]
            excused = covered.predating(conn, unentered) if unentered and covered.predating else set()
            n_predating += len(excused)
            for ref, row_digest, claim in batch:
                entries = sorted(found.get(ref, ()), key=lambda e: e.seq)
                if not entries:
                    if ref not in excused:
                        problems.add((_END, kind, len(ref), ref),
                                     f"{kind} {ref} (claim {claim}) has no ledger entry: written behind the "
                                     f"ledger's back")
                    continue
                for e in entries:
                    seen[e.seq] = 1
                # A versioned row's older entries are its history: only the newest must match it.
                for e in entries[-1:] if covered.versioned else entries:
                    if e.content_digest != row_digest:
                        what = ("does not match its ledger entry, which was itself altered"
                                if e.seq in walk.broken else "was altered after it was recorded")
                        problems.add((e.seq, 4), f"entry {e.seq} ({kind} {ref}, claim {e.claim_id}): "
                                                 f"the {kind} {what}")
                if len(entries) > 1 and not covered.versioned:
                    problems.add((entries[1].seq, 5),
                                 f"{kind} {ref} (claim {claim}) has {len(entries)} ledger entries "
                                 f"({', '.join(str(e.seq) for e in entries)}): entered twice, or deleted and "
                                 f"its id reused")

        for ref, content in covered.rows(conn):
            n += 1
            ref = str(ref)
            batch.append((ref, digest(content), content.get("claim_id")))
            if len(batch) >= LOOKUP_CHUNK:
                check(batch)
                batch = []
        if batch:
            check(batch)
        return n, n_predating

    def _entries_without_rows(self, conn, kinds: set[str], kind_codes: dict[str, int], walk: "_Walk",
                              seen: "_SeqBytes", problems: _Problems) -> None:
        codes = {kind_codes[k] for k in kinds}
        missing = sorted(s for s in walk.kinds.seqs() if walk.kinds[s] in codes and not seen[s])
        if not missing:
            return
        t = self.table
        named = {}
        shown = missing[: problems.limit]
        for start in range(0, len(shown), LOOKUP_CHUNK):
            query = sa.select(t.c.seq, t.c.kind, t.c.ref, t.c.claim_id).where(
                t.c.seq.in_(shown[start:start + LOOKUP_CHUNK]))
            named.update((e.seq, e) for e in conn.execute(query))
        for s in missing:
            e = named.get(s)
            if e is None:
                problems.add((s, 4), f"entry {s}: its covered row is gone")
            else:
                problems.add((s, 4), f"entry {s} ({e.kind} {e.ref}, claim {e.claim_id}): the {e.kind} is gone "
                                     f"(deleted after it was recorded)")


class _SeqBytes:
    """One byte per seq: a bytearray over the dense range a chain has, a dict for forged far-off seqs."""

    def __init__(self, size: int = 1):
        self.dense, self.sparse = bytearray(max(size, 1)), {}

    def __getitem__(self, seq: int) -> int:
        return self.dense[seq] if 0 <= seq < len(self.dense) else self.sparse.get(seq, 0)

    def __setitem__(self, seq: int, value: int) -> None:
        if 0 <= seq < len(self.dense):
            self.dense[seq] = value
        elif 0 <= seq < 2 * len(self.dense) + CHUNK:
            self.dense.extend(bytes(max(seq + 1 - len(self.dense), len(self.dense))))
            self.dense[seq] = value
        else:
            self.sparse[seq] = value

    def seqs(self):
        """Every seq with a non-zero byte."""
        yield from (i for i, b in enumerate(self.dense) if b)
        yield from (s for s, b in self.sparse.items() if b)


class _Walk:
    """What the chain walk leaves for the cross-check: the kind of each seq, as a byte."""

    def __init__(self):
        self.n_entries = 0
        self.head: tuple[int, str] | None = None
        self.last_seq = 0
        self.kinds = _SeqBytes()
        self.broken: set[int] = set()
        self.per_kind: dict[str, int] = {}

    def note(self, seq: int, code: int, kind: str) -> None:
        self.kinds[seq] = code
        self.per_kind[kind] = self.per_kind.get(kind, 0) + 1


def _among(conn: sa.Connection, column, name: str):
    """column IN a list given at execution: one array parameter on PostgreSQL (planned and sent far
    faster than thousands of parameters), an expanded list elsewhere."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import ARRAY

        return column == sa.any_(sa.bindparam(name, type_=ARRAY(column.type)))
    return column.in_(sa.bindparam(name, expanding=True))


def _where(r) -> str:
    return f"entry {r.seq} ({r.kind} {r.ref}, claim {r.claim_id})"


def _renumbered(run: list[int]) -> tuple[tuple, str]:
    first, last, shift = run
    span = f"entry {first} was" if first == last else f"entries {first}..{last} were"
    return (first, 2), f"{span} renumbered (recorded as {first + shift}" + (
        "" if first == last else f"..{last + shift}") + ")"


def _entry_hash(fields: dict) -> str:
    return digest(fields)
