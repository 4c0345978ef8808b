"""Many rows into one table through the database driver's own executemany.

SQLAlchemy's executemany processes every value of every row in Python (parameter dictionaries,
type processors); for the few hundred rows of a scored batch that cost more than the database's
work. Here the INSERT is compiled once per table and column set, and rows go to the driver as
tuples. The only value the drivers would store differently from SQLAlchemy is a date-time on
SQLite, which SQLAlchemy keeps as text ("2026-11-25 09:30:00.000000", ordered as the moments are):
it is written in exactly that form, so rows read back through SQLAlchemy are the same either way
(tests read them back both ways).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Sequence

import sqlalchemy as sa


def placeholder(dialect: sa.Dialect) -> str:
    """The driver's parameter marker: "?" (SQLite) or "%s" (psycopg)."""
    if dialect.paramstyle not in ("qmark", "format", "pyformat"):
        raise NotImplementedError(f"driver SQL knows the qmark and format styles, not {dialect.paramstyle}")
    return "?" if dialect.paramstyle == "qmark" else "%s"


def key_chunks(keys: Sequence, size: int = 500):
    """`keys` in tuples of at most `size`, for IN lists far below any driver's limit on parameters."""
    for start in range(0, len(keys), size):
        yield tuple(keys[start:start + size])


def sqlite_datetime(value: datetime | date | None) -> str | None:
    """A naive UTC moment as SQLAlchemy's SQLite DateTime stores it."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    return value.isoformat(" ", "microseconds")


class BulkInsert:
    """`insert(conn, table, rows)`: rows as dicts sharing one set of keys, in one driver call."""

    def __init__(self, dialect: sa.Dialect) -> None:
        self.dialect = dialect
        self.placeholder = placeholder(dialect)
        self._statements: dict[tuple[str, tuple[str, ...]], tuple[str, list[int]]] = {}

    def __call__(self, conn: sa.Connection, table: sa.Table, rows: Sequence[dict]) -> None:
        if not rows:
            return
        names = tuple(rows[0])
        sql, moments = self._statement(table, names)
        values = [[r[n] for n in names] for r in rows]
        for j in moments:  # SQLite only: date-times as SQLAlchemy's text
            texts: dict = {None: None}  # a batch repeats its moments (stored_at, deadlines): convert each once
            for v in values:
                moment = v[j]
                text = texts.get(moment)
                if text is None and moment is not None:
                    text = texts[moment] = sqlite_datetime(moment)
                v[j] = text
        conn.exec_driver_sql(sql, [tuple(v) for v in values])

    def moment(self, value: datetime | None):
        """A date-time as this driver stores it for SQLAlchemy's DateTime (text on SQLite)."""
        return sqlite_datetime(value) if self.dialect.name == "sqlite" else value

    def delete_in(self, conn: sa.Connection, table: sa.Table, column: str, keys: Sequence) -> None:
        """DELETE the rows whose `column` is one of `keys`."""
        quote = self.dialect.identifier_preparer.quote
        for part in key_chunks(keys):
            conn.exec_driver_sql(f"DELETE FROM {quote(table.name)} WHERE {quote(column)} IN "
                                 f"({', '.join([self.placeholder] * len(part))})", part)

    def _statement(self, table: sa.Table, names: tuple[str, ...]) -> tuple[str, list[int]]:
        key = (table.name, names)
        found = self._statements.get(key)
        if found is None:
            quote = self.dialect.identifier_preparer.quote
            sql = (f"INSERT INTO {quote(table.name)} ({', '.join(quote(n) for n in names)}) "
                   f"VALUES ({', '.join([self.placeholder] * len(names))})")
            sqlite = self.dialect.name == "sqlite"
            moments = [j for j, n in enumerate(names) if sqlite and isinstance(table.c[n].type, sa.DateTime)]
            found = self._statements[key] = (sql, moments)
        return found


def insert_with_sqlalchemy(conn: sa.Connection, table: sa.Table, rows: Sequence[dict]) -> None:
    """The plain way, for tables built without a `BulkInsert` (it gives the same rows)."""
    if rows:
        conn.execute(table.insert(), list(rows))
