"""The claim record's rules and the words a report uses when a claim breaks one, stated once.

`features.schema` declares the fields (kind, range, choices). This module turns that declaration
into what a value must keep to, which fields are held against which, and every reason a report
can give. Both validators derive their checks from it: `features.validation` applies each rule
to a whole column with pandas, `features.record_validation` to one JSON claim in plain Python.
How each of them reads a value (text to number, text to date-time) stays in its own module.
"""

from __future__ import annotations

import json
import math
import operator
import sys
import unicodedata
from datetime import datetime, timedelta
from typing import Any, Callable, NamedTuple

from features.schema import CLAIM_FIELDS, EARLIEST_DATE, LATEST_DATE, ClaimField

# --- the reasons a value fails on its own

MISSING = "is required but missing"
NOT_TEXT = "must be text"
EMPTY = "is empty"
NOT_NUMBER = "must be a number"
NOT_NUMBER_BOOL = "must be a number, not true/false"
NOT_FINITE = "must be a finite number"
NOT_WHOLE = "must be a whole number"
TOO_LARGE = "is far too large"
NOT_BOOLEAN = "must be true or false"
NOT_DATETIME = "must be an ISO 8601 date-time, e.g. 2025-03-01T14:30:00Z"
NOT_DATE = "must be a date (YYYY-MM-DD) without a time of day"
OUTSIDE_DATES = f"is outside {EARLIEST_DATE} to {LATEST_DATE}"
BLANK = "is only spaces"
EDGE_SPACE = "starts or ends with a space"
# ... and the reasons a value fails against the clock or the rest of its batch.
IN_FUTURE = "is in the future"
DUPLICATE = "appears more than once in this batch"


def too_long(max_length: int) -> str:
    return f"is longer than {max_length} characters"


def contains_unsafe(character: str) -> str:
    """The reason for a text holding a character that `unsafe_text` refuses, named by its code point."""
    return f"contains a {_UNSAFE_CATEGORIES[unicodedata.category(character)]} (U+{ord(character):04X})"


def not_one_of(choices: tuple[str, ...]) -> str:
    """The reason for a non-empty text outside its field's choices (an empty one is only EMPTY)."""
    return f"must be one of {', '.join(choices)}"


def below_minimum(minimum: float, exclusive: bool) -> str:
    return f"must be {'greater than' if exclusive else 'at least'} {minimum:g}"


def above_maximum(maximum: float) -> str:
    return f"must be at most {maximum:g}"


def before(other: str, day) -> str:
    """The reason for a date before `other`'s date `day` (a datetime or a pandas Timestamp)."""
    return f"is before {other} {day.year:04d}-{day.month:02d}-{day.day:02d}"


# --- how values are read

# Booleans sent as text, compared after stripping and lower-casing.
TRUE_TEXT = frozenset({"true", "1"})
FALSE_TEXT = frozenset({"false", "0"})
LARGEST_FLOAT = sys.float_info.max
# Whole numbers beyond this cannot be held exactly (and no count in a claim comes near it).
LARGEST_EXACT_INTEGER = 2.0 ** 53
EARLIEST = datetime.fromisoformat(EARLIEST_DATE)
LATEST = datetime.fromisoformat(LATEST_DATE)
MAX_VALUE_CHARS = 80  # values quoted in a report are cut to this, so a 10 MB string stays readable


def quote(value: Any) -> str:
    """A present value as a report shows it: text and true/false as JSON, anything else as str."""
    text = json.dumps(value) if isinstance(value, (str, bool)) else str(value)
    return text if len(text) <= MAX_VALUE_CHARS else f"{text[:MAX_VALUE_CHARS]}... ({len(text)} chars)"


# --- what an identifier's text must keep to

# Characters an identifier may not hold: it is shown on the adjusters' pages, put in links and
# logs, and compared byte for byte. Control characters (NUL, escape...) break logs and terminals;
# format characters (bidirectional overrides such as U+202E, zero-width joiners) make an id read
# differently from what it is; line and paragraph separators split it across lines. Spaces
# inside are fine ("a?b#c%d e"); at either end they make two ids look the same.
_UNSAFE_CATEGORIES = {"Cc": "control character", "Cf": "format character", "Zl": "line separator",
                      "Zp": "paragraph separator"}


def unsafe_text(text: str) -> str | None:
    """Why an identifier of a valid length cannot be used as it is, or None: the first unsafe
    character (see `_UNSAFE_CATEGORIES`), only spaces, or a space at the start or the end."""
    if not text.isprintable():  # a fast pass for the usual id: printable text holds none of them
        for character in text:
            if unicodedata.category(character) in _UNSAFE_CATEGORIES:
                return contains_unsafe(character)
    if text.isspace():
        return BLANK
    if text[:1].isspace() or text[-1:].isspace():
        return EDGE_SPACE
    return None


class TextRule(NamedTuple):
    """A check on the characters of a text field's readable values, held after their bounds:
    `problem(text)` is the reason for a text that breaks it, or None. Every text matching the
    regular expression `passes` (if given) keeps to it, so a column need not call `problem` on those."""

    problem: Callable[[str], str | None]
    passes: str | None = None


# A claim id that is printable ASCII without a space at either end (nearly every one) is safe.
TEXT_RULES: dict[str, TextRule] = {"claim_id": TextRule(unsafe_text, passes=r"[!-~](?:[ -~]*[!-~])?")}


def claim_id_problem(text: str) -> str | None:
    """Why `text` cannot be a claim id, or None: the claim record's whole rule for one, for callers
    that take a claim id outside a claim (the /feedback body, the review pages)."""
    field = next(f for f in CLAIM_FIELDS if f.name == "claim_id")
    length = bounds(field)
    if len(text) < length.low:
        return length.below
    if len(text) > length.high:
        return length.above
    return TEXT_RULES[field.name].problem(text)


# --- what a readable value must keep to

class Bounds(NamedTuple):
    """A readable value's measure (a text's length, a number, a date-time) must lie in [low, high].

    Below `low` a report gives the reason `below`, above `high` the reason `above`; an open side
    is -inf or inf with no reason. One pair of comparisons, ``low <= measure <= high``, then
    serves a single value and, element by element, a column.
    """

    low: Any
    high: Any
    below: str | None
    above: str | None


def bounds(field: ClaimField) -> Bounds | None:
    """The bounds on `field`'s readable values; None for a kind without any (true/false).

    A text's bounds are on its length; a text field with choices must also hold one of them
    (`not_one_of`) once it is not empty.
    """
    if field.kind == "string":
        too_long_reason = too_long(field.max_length) if field.max_length else None
        return Bounds(1, field.max_length or math.inf, EMPTY, too_long_reason)
    if field.kind in ("date", "datetime"):
        return Bounds(EARLIEST, LATEST, OUTSIDE_DATES, OUTSIDE_DATES)
    if field.kind in ("number", "integer"):
        low, high, below, above = -math.inf, math.inf, None, None
        if field.minimum is not None:
            # Numbers are compared as floats: above m is at least the next float after m.
            low = math.nextafter(field.minimum, math.inf) if field.exclusive_minimum else field.minimum
            below = below_minimum(field.minimum, field.exclusive_minimum)
        if field.maximum is not None:
            high, above = field.maximum, above_maximum(field.maximum)
        return Bounds(low, high, below, above)
    return None


# --- rules across the fields of a claim, and across the claims of a batch

class CrossFieldRule(NamedTuple):
    """A claim breaks this rule when `breaks(claim[field], claim[other])`; the report names `field`.

    Held only between values that passed their own checks; `reason(other, claim[other])` is the
    reason given.
    """

    field: str
    breaks: Callable[[Any, Any], Any]
    other: str
    reason: Callable[[str, Any], str]


# A loss cannot be reported before it happened. (A loss before the policy started is valid data:
# it is a signal for the model, not a broken record.)
CROSS_FIELD_RULES: tuple[CrossFieldRule, ...] = (
    CrossFieldRule("report_date", operator.lt, "loss_date", before),
)
# A policy bound today may start next month, so only these dates must lie in the past.
NOT_IN_FUTURE: tuple[str, ...] = ("loss_date", "report_date", "customer_since")
# A report date may run ahead of the scoring clock by clock skew between systems, not by more.
FUTURE_TOLERANCE = timedelta(days=1)
# One row per claim: a batch that sends a claim_id twice gets both rows reported.
UNIQUE_IN_BATCH = "claim_id"


def horizon(as_of: datetime) -> datetime:
    """The latest date-time a NOT_IN_FUTURE field may hold when validated at `as_of`.

    An aware `as_of` counts by its wall-clock time (its zone is dropped, not converted to UTC).
    """
    return as_of.replace(tzinfo=None) + FUTURE_TOLERANCE
