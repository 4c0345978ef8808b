"""Time as the claim store keeps it: naive UTC datetimes."""

from __future__ import annotations

from datetime import datetime, timezone


def utc_now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def as_datetime(value) -> datetime | None:
    """A stored or sent moment as a naive UTC datetime: datetimes pass through, ISO text (SQLite
    hands date-times back as text from expressions; responses carry "...Z") is parsed."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value.removesuffix("Z"))
