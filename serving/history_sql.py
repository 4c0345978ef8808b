"""History features counted in the database: one SQL statement per batch of claims.

Each feature is a range count over a composite (entity, report date) index of the claims table, so
nothing is read back but the counts. PostgreSQL stores count history this way (several writers at
once); SQLite stores do with `history_in_memory=False`, and otherwise use the in-memory index
(`serving.history_index`). Both equal `features.history.history_features` (tests hold all three
side by side).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Iterable

import numpy as np
import sqlalchemy as sa

from features.history import COUNTED_ENTITIES, PERSON_FIELDS, SECONDS_PER_DAY, SHARED_ENTITIES, TIME_FIELDS, WINDOWS_DAYS
from features.schema import ENTITY_FIELDS
from serving.bulk import BulkInsert
from serving.clock import as_datetime

_ONE_SECOND = timedelta(seconds=1)
_NO_MOMENT = datetime(1900, 1, 1)  # stands in for a claim without dates, whose counts are then set missing


def _first(claim: dict, fields: tuple[str, ...]):
    """The first of `fields` a claim has (its moment, or its person), or None."""
    for name in fields:
        value = claim.get(name)
        if value is not None:
            return value
    return None


def _index_name(field: str) -> str:
    return f"ix_claims_{field}_at"


ENTITY_INDEX_NAMES = tuple(_index_name(field) for field in (*COUNTED_ENTITIES, *SHARED_ENTITIES))


def history_indexes(table: sa.Table) -> list[sa.Index]:
    """Per entity, its claims in report order (and, for the shared ones, who made them): each history
    feature of a claim is then a count over one range of one index, never a read of the table.
    The in-memory index (serving/history_index.py) does without them. Constructed on `table`, so
    they are created with it."""
    c = table.c
    indexes = [sa.Index(_index_name(field), c[field], c.report_date) for field in COUNTED_ENTITIES]
    indexes += [sa.Index(_index_name(field), c[field], c.report_date, c.claimant_id) for field in SHARED_ENTITIES]
    return indexes


class SqlHistory:
    """The history statement of one claims table, built once per shape and kept."""

    CHUNK = 400  # claims per statement: 10 values each, far below any driver's limit

    def __init__(self, table: str, bulk: BulkInsert) -> None:
        self.table = table
        self.bulk = bulk
        self._statements: dict[tuple[tuple[str, ...], int], tuple[str, list]] = {}

    def count(self, conn: sa.Connection, claims: list[dict], wanted: Iterable[str]) -> dict[str, np.ndarray]:
        """The history features of claims already stored in this transaction (see `Intake.history`)."""
        wanted = tuple(sorted(wanted))
        out = {name: np.full(len(claims), np.nan) for name in wanted}
        if not claims or not wanted:
            return out
        as_db = self.bulk.moment  # driver SQL: moments as the driver stores them
        windows = [timedelta(days=days) for days in WINDOWS_DAYS]
        # A claim's moment is its report, else its loss; its person its claimant, else its policy
        # (features.history): the plain columns, and their indexes, wherever every claim has them.
        moments = [_first(claim, TIME_FIELDS) for claim in claims]
        persons = [_first(claim, PERSON_FIELDS) for claim in claims]
        shape = (all(claim.get(TIME_FIELDS[0]) is not None for claim in claims),
                 all(claim.get(PERSON_FIELDS[0]) is not None for claim in claims))
        rows = []
        for start in range(0, len(claims), self.CHUNK):
            chunk = claims[start:start + self.CHUNK]
            sql, columns = self._statement(wanted, len(chunk), shape)
            params: list = []
            for i, claim in enumerate(chunk, start):
                t = moments[i] or _NO_MOMENT  # counted, then set missing below
                params += [i, as_db(t), *[as_db(t - window) for window in windows]]
                params += [persons[i] if field == PERSON_FIELDS[0] else claim.get(field) for field in ENTITY_FIELDS]
            rows += conn.exec_driver_sql(sql, tuple(params)).all()
        order = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
        # No entity, no history: missing, as the offline pipeline has it (the shared entities also
        # need the claimant, to tell the others apart).
        lacking = {field: np.fromiter((claim.get(field) is None for claim in claims), dtype=bool, count=len(claims))
                   for field in ENTITY_FIELDS}
        untimed = np.fromiter((moment is None for moment in moments), dtype=bool, count=len(claims))
        nobody = np.fromiter((person is None for person in persons), dtype=bool, count=len(claims))
        for k, (name, field, kind) in enumerate(columns, start=1):
            if kind == "last":
                values = np.array([math.nan if row[k] is None else
                                   (moments[row[0]] - as_datetime(row[k])) // _ONE_SECOND
                                   for row in rows], dtype=np.float64) / SECONDS_PER_DAY
            else:
                values = np.fromiter((row[k] for row in rows), dtype=np.float64, count=len(rows))
            out[name][order] = values
            missing = untimed | lacking[field] | (nobody if kind == "others" else False)
            out[name][missing] = np.nan
        return out

    def _statement(self, wanted: tuple[str, ...], n: int,
                   shape: tuple[bool, bool] = (True, True)) -> tuple[str, list[tuple[str, str, str]]]:
        """The statement for `n` claims (see `_build_statement`), kept for the common shapes."""
        key = (wanted, n, shape)
        found = self._statements.get(key)
        if found is None:
            found = self._build_statement(wanted, n, *shape)
            if len(self._statements) < 64:
                self._statements[key] = found
        return found

    def _build_statement(self, wanted: tuple[str, ...], n: int, by_report: bool = True,
                         by_claimant: bool = True) -> tuple[str, list[tuple[str, str, str]]]:
        """One statement counting the history features of `n` claims, given as a VALUES list.

        Each feature is a correlated count over one range of one composite index: claims of the
        same entity reported in [t - window, t), the latest report before t, or the distinct other
        claimants before t. Driver SQL, the same text on SQLite and PostgreSQL but for the
        placeholder: building it through the expression language cost more than running it."""
        table = self.table
        at = "c.report_date" if by_report else f"coalesce({', '.join('c.' + f for f in TIME_FIELDS)})"
        who = "c.claimant_id" if by_claimant else f"coalesce({', '.join('c.' + f for f in PERSON_FIELDS)})"
        columns, selects = [], []
        for field, prefix in COUNTED_ENTITIES.items():
            for days in WINDOWS_DAYS:
                name = f"{prefix}_claims_{days}d"
                if name in wanted:
                    columns.append((name, field, "count"))
                    selects.append(f"(SELECT count(*) FROM {table} c WHERE c.{field} = b.{field} "
                                   f"AND {at} >= b.t_{days} AND {at} < b.t)")
        if "days_since_claimant_last_claim" in wanted:
            columns.append(("days_since_claimant_last_claim", "claimant_id", "last"))
            selects.append(f"(SELECT max({at}) FROM {table} c WHERE c.claimant_id = b.claimant_id "
                           f"AND {at} < b.t)")
        for field, prefix in SHARED_ENTITIES.items():
            name = f"{prefix}_other_claimants"
            if name in wanted:
                columns.append((name, field, "others"))
                # b.claimant_id holds each claim's person (its claimant, else its policy).
                selects.append(f"(SELECT count(DISTINCT {who}) FROM {table} c WHERE c.{field} = b.{field} "
                               f"AND {at} < b.t AND {who} <> b.claimant_id)")
        row = "(" + ", ".join([self.bulk.placeholder] * (2 + len(WINDOWS_DAYS) + len(ENTITY_FIELDS))) + ")"
        names = ", ".join(("i", "t", *(f"t_{days}" for days in WINDOWS_DAYS), *ENTITY_FIELDS))
        sql = f"WITH b({names}) AS (VALUES {', '.join([row] * n)}) SELECT b.i, {', '.join(selects)} FROM b"
        return sql, columns
