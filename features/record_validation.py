"""Validation of one claim record in plain Python, for the online service's one-claim requests.

`validate_record` gives exactly what `validate_claims` gives for the same claim as a one-row frame
(the same errors, in the same order, with the same text, and the same typed values), in
microseconds instead of the milliseconds pandas needs per operation. Both take every rule and every
reason from `features.record_spec`; how a value is read stays the frame validator's to define, and
`tests/features/test_record_validation.py` holds the two to each other over thousands of valid and
broken claims, so a change to one that the other does not follow fails there.

A one-row frame types each column from its single value, and this module follows what that means:
a JSON integer in a text field is its digits (an int64 column), a JSON true in a number field is
"not true/false" (a bool column), text in a number field is read the way `pd.to_numeric` reads it.
Where the frame validator raises rather than reports (text that is not valid Unicode, which the
service's JSON parser never lets through), so does this, with the same exception. Anything this module does not read
itself (an ISO 8601 variant outside the common shapes, unusual number text, values of a type JSON
does not produce) goes to the frame validator's own code for that value or record, so correctness
never rests on the fast paths being complete.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Iterable

from features import record_spec as rules
from features.record_spec import FALSE_TEXT, LARGEST_EXACT_INTEGER, LARGEST_FLOAT, TRUE_TEXT
from features.schema import CLAIM_FIELDS, ClaimField

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["validate_record"]

# The types json.loads produces; a record holding anything else is validated by the frame validator.
_PLAIN_TYPES = frozenset({str, int, float, bool, type(None)})
# A one-row frame holds an int in an int64 or uint64 column inside this range, else in an object column.
_INT_COLUMN_MIN = -(2 ** 63)
_INT_COLUMN_END = 2 ** 64

# The ISO 8601 shapes read here; pandas (format="ISO8601") accepts these and more, and the rest go
# to pandas. ASCII digits only: pandas' C parser knows no other digits.
_ISO_DATETIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:[T ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,18}))?)?(Z|[+-][0-9]{2}(?::?[0-9]{2})?)?)?")
# Plain decimals of at most 15 significant digits: every parser rounds these the same, exactly.
_PLAIN_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)")
_MAX_PLAIN_DIGITS = 15


def validate_record(record: dict, fields: Iterable[ClaimField] = CLAIM_FIELDS,
                    as_of: datetime | None = None) -> tuple[dict, list[dict]]:
    """Check one JSON-decoded claim; return its typed values and its errors.

    `errors` lists {"field", "value", "reason"} dicts, exactly as `validate_claims` reports the
    claim as a one-row frame (order and text included). `typed` maps each field present and not
    missing to its canonical value (str, float, int, bool, or naive UTC datetime to the second);
    for a record with errors it holds only the fields that passed their own checks. Keys that are
    not in `fields` are ignored. `as_of` rejects loss, report and customer-since dates later than
    a day past that moment (an aware `as_of` counts by its wall-clock time, as the frame's does).
    """
    fields = fields if type(fields) is tuple else tuple(fields)
    plan = _plan(fields)
    all_ascii = True
    for key, value in record.items():
        kind = type(value)
        if kind is str:
            all_ascii = all_ascii and value.isascii()
        elif kind not in _PLAIN_TYPES:
            return _validate_with_frame(record, fields, as_of)
        if type(key) is not str:
            return _validate_with_frame(record, fields, as_of)
        all_ascii = all_ascii and key.isascii()
    if not all_ascii:
        _refuse_what_a_frame_cannot_hold(record)

    typed: dict = {}
    errors: list[dict] = []
    for name, check, spec, bounds, required in plan.steps:
        if name not in record:
            if required:
                errors.append({"field": name, "value": None, "reason": rules.MISSING})
            continue
        value = record[name]
        if value is None or (type(value) is float and value != value):
            if required:
                errors.append({"field": name, "value": None, "reason": rules.MISSING})
            continue
        parsed, reasons = check(spec, bounds, value)
        if reasons:
            shown = _show_value(value)
            errors.extend({"field": name, "value": shown, "reason": r} for r in reasons)
        else:
            typed[name] = parsed

    # Rules across fields read only values that passed their own checks, as the frame's do.
    for name, breaks, other_name, reason in plan.cross_field_rules:
        value, other = typed.get(name), typed.get(other_name)
        if value is not None and other is not None and breaks(value, other):
            errors.append({"field": name, "value": _show_value(record[name]), "reason": reason(other_name, other)})
    if as_of is not None:
        horizon = rules.horizon(as_of)
        for name in plan.future_fields:
            when = typed.get(name)
            if when is not None and when > horizon:
                errors.append({"field": name, "value": _show_value(record[name]), "reason": rules.IN_FUTURE})
    # A single claim cannot repeat its own claim_id, so the frame's duplicate rule never fires here.
    return typed, errors


# --- one checker per kind: (spec, its bounds, value that is present and not missing) -> (typed value, reasons)

def _out_of_bounds(bounds: rules.Bounds, measure) -> tuple:
    """The reasons for a measure (a length, a number, a date-time) outside its field's bounds."""
    return (((bounds.below,) if measure < bounds.low else ())
            + ((bounds.above,) if measure > bounds.high else ()))


def _check_string(spec: ClaimField, bounds: rules.Bounds, value):
    kind = type(value)
    if kind is str:
        text = value
    elif kind is int and _INT_COLUMN_MIN <= value < _INT_COLUMN_END:
        text = str(value)  # an int64 column: the frame reads its digits as the text
    else:
        return None, (rules.NOT_TEXT,)
    n = len(text)
    reasons = () if bounds.low <= n <= bounds.high else _out_of_bounds(bounds, n)
    if n and spec.choices and text not in spec.choices:
        reasons += (rules.not_one_of(spec.choices),)
    text_rule = rules.TEXT_RULES.get(spec.name)
    if text_rule is not None and not reasons:
        problem = text_rule.problem(text)
        reasons = (problem,) if problem else reasons
    return text, reasons


def _read_number(value) -> tuple[float | None, str | None]:
    """The frame's number parsing of one value: (number, None) or (None, reason)."""
    kind = type(value)
    if kind is float:
        if value - value != 0.0:  # inf or -inf (NaN never gets here)
            return None, rules.NOT_FINITE
        return value, None
    if kind is int:
        return (None, rules.TOO_LARGE) if abs(value) > LARGEST_FLOAT else (float(value), None)
    if kind is bool:
        return None, rules.NOT_NUMBER_BOOL
    number = _number_from_text(value)
    # NaN (unreadable) and infinities (text such as "inf" or "1e400") are no number.
    return (None, rules.NOT_NUMBER) if number - number != 0.0 else (number, None)


def _check_number(spec: ClaimField, bounds: rules.Bounds, value):
    number, reason = _read_number(value)
    if reason is not None:
        return None, (reason,)
    return number, () if bounds.low <= number <= bounds.high else _out_of_bounds(bounds, number)


def _check_integer(spec: ClaimField, bounds: rules.Bounds, value):
    number, reason = _read_number(value)
    if reason is not None:
        return None, (reason,)
    if not abs(number) <= LARGEST_EXACT_INTEGER:
        return None, (rules.TOO_LARGE,)
    if number % 1 != 0:
        return None, (rules.NOT_WHOLE,)
    whole = int(number)
    return whole, () if bounds.low <= whole <= bounds.high else _out_of_bounds(bounds, whole)


def _check_boolean(spec: ClaimField, bounds: None, value):  # true/false has no bounds
    kind = type(value)
    if kind is bool:
        return value, ()
    if kind is int:
        if value == 0 or value == 1:
            return value == 1, ()
    elif kind is str:
        text = value.strip().lower()
        if text in TRUE_TEXT:
            return True, ()
        if text in FALSE_TEXT:
            return False, ()
    return None, (rules.NOT_BOOLEAN,)


def _check_datetime(spec: ClaimField, bounds: rules.Bounds, value):
    when = _datetime_from_text(value) if type(value) is str else None
    if when is None:
        return None, (rules.NOT_DATETIME,)
    return (when, ()) if bounds.low <= when <= bounds.high else (None, _out_of_bounds(bounds, when))


def _check_date(spec: ClaimField, bounds: rules.Bounds, value):
    when = _datetime_from_text(value) if type(value) is str else None
    if when is None or when.hour or when.minute or when.second:
        return None, (rules.NOT_DATE,)
    return (when, ()) if bounds.low <= when <= bounds.high else (None, _out_of_bounds(bounds, when))


_CHECKS = {
    "string": _check_string,
    "number": _check_number,
    "integer": _check_integer,
    "boolean": _check_boolean,
    "datetime": _check_datetime,
    "date": _check_date,
}


# --- text to number and to date-time, as pandas reads them

def _number_from_text(text: str) -> float:
    """`pd.to_numeric(errors="coerce")` of one string as float (NaN if unreadable)."""
    if (_PLAIN_DECIMAL.fullmatch(text) is not None
            and len(text) - ("." in text) - (text[0] in "+-") <= _MAX_PLAIN_DIGITS):
        # pandas reads digits-only text as an integer first: "-0" is 0.0, not -0.0.
        return float(text) if "." in text else float(int(text))
    return _number_from_text_by_pandas(text)


def _datetime_from_text(text: str):
    """`pd.to_datetime(format="ISO8601", utc=True)` of one string, naive UTC to the second; None if unreadable.

    A value outside the years a `datetime` holds (e.g. year 0, which pandas accepts) comes back as
    the first or last day a `datetime` holds, at its own time of day: it only ever fails the date
    window.
    """
    match = _ISO_DATETIME.fullmatch(text)
    if match is None:
        return _datetime_from_text_by_pandas(text)
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        when = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0))
        if zone and zone != "Z":
            offset_hours, offset_minutes = int(zone[1:3]), int(zone[-2:]) if len(zone) > 3 else 0
            if offset_hours >= 24 or offset_minutes >= 60:
                return None
            offset = timedelta(hours=offset_hours, minutes=offset_minutes)
            when = when - offset if zone[0] == "+" else when + offset
    except (ValueError, OverflowError):
        # An impossible day or time, or a year a datetime cannot hold: pandas decides.
        return _datetime_from_text_by_pandas(text)
    if fraction and len(fraction) > 6 and not 1700 <= when.year <= 2200:
        # Beyond microseconds pandas parses to nanoseconds, whose range ends in 1677 and 2262.
        return _datetime_from_text_by_pandas(text)
    return when  # fractions of a second are dropped, as astype("datetime64[s]") floors them


def _datetime_from_text_by_pandas(text: str):
    import numpy as np
    import pandas as pd

    from features.validation import parse_datetime

    parsed, bad, _ = parse_datetime(pd.Series([text]), np.zeros(1, bool))
    if bad[0]:
        return None
    when = parsed.iloc[0]
    if 1 <= when.year <= 9999:
        return when.to_pydatetime()
    stand_in = datetime.min if when.year < 1 else datetime.max
    return stand_in.replace(hour=when.hour, minute=when.minute, second=when.second, microsecond=0)


def _number_from_text_by_pandas(text: str) -> float:
    import numpy as np
    import pandas as pd

    from features.validation import parse_number

    numbers, bad, _ = parse_number(pd.Series([text]), np.zeros(1, bool))
    return float("nan") if bad[0] else float(numbers.iloc[0])


# --- the rest: what the frame shows, what it cannot hold, records outside JSON's types

def _show_value(value) -> str | None:
    """A value as a report quotes it; of JSON's types, only None and NaN count as missing."""
    if value is None or (type(value) is float and value != value):
        return None
    return rules.quote(value)


def _refuse_what_a_frame_cannot_hold(record: dict) -> None:
    """Raise as building the one-row frame does: its text columns hold only UTF-8-encodable text."""
    for key, value in record.items():
        if not key.isascii():
            key.encode("utf-8")
    for value in record.values():
        if type(value) is str and not value.isascii():
            value.encode("utf-8")


def _validate_with_frame(record: dict, fields: tuple[ClaimField, ...], as_of) -> tuple[dict, list[dict]]:
    """The frame validator on the record as a one-row frame, in this module's return shape."""
    import math

    import numpy as np
    import pandas as pd

    from features.validation import validate_claims

    frame = pd.DataFrame([record], index=pd.RangeIndex(1))
    report = validate_claims(frame, fields=fields, as_of=None if as_of is None else pd.Timestamp(as_of))
    errors = [{"field": e.column, "value": e.value, "reason": e.reason}
              for e in report.errors.itertuples(index=False)]
    typed: dict = {}
    if len(report.claims):
        row = report.claims.iloc[0]
        for spec in fields:
            if spec.name not in report.claims.columns:
                continue
            value = row[spec.name]
            if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
                continue
            typed[spec.name] = (value.to_pydatetime() if isinstance(value, pd.Timestamp)
                                else value.item() if isinstance(value, np.generic) else value)
    return typed, errors


class _Plan:
    """What validating against one `fields` tuple needs, worked out once."""

    __slots__ = ("fields", "steps", "cross_field_rules", "future_fields")

    def __init__(self, fields: tuple[ClaimField, ...]):
        self.fields = fields
        self.steps = tuple((f.name, _CHECKS[f.kind], f, rules.bounds(f), f.required) for f in fields)
        names = {f.name for f in fields}
        self.cross_field_rules = tuple(rule for rule in rules.CROSS_FIELD_RULES
                                       if rule.field in names and rule.other in names)
        self.future_fields = tuple(name for name in rules.NOT_IN_FUTURE if name in names)


_PLANS: dict[int, _Plan] = {}


def _plan(fields: tuple[ClaimField, ...]) -> _Plan:
    plan = _PLANS.get(id(fields))
    if plan is None or plan.fields is not fields:
        if len(_PLANS) > 64:
            _PLANS.clear()
        plan = _PLANS[id(fields)] = _Plan(fields)  # holds `fields`, so its id stays its own
    return plan


_DTYPES = {"string": "str", "number": "float64", "integer": "Int64", "boolean": "boolean",
           "date": "datetime64[s]", "datetime": "datetime64[s]"}


def duplicate_errors(typed: list[dict], raw: list[dict]) -> dict[int, dict]:
    """The one rule across claims: a valid claim_id sent twice in one batch, both flagged."""
    name = rules.UNIQUE_IN_BATCH
    seen: dict[str, list[int]] = {}
    for i, claim in enumerate(typed):
        key = claim.get(name)
        if key is not None:
            seen.setdefault(key, []).append(i)
    return {i: {"field": name, "value": _show_value(raw[i][name]), "reason": rules.DUPLICATE}
            for rows in seen.values() if len(rows) > 1 for i in rows}


def typed_frame(claims: list[dict], fields: Iterable[ClaimField]) -> "pd.DataFrame":
    """Validated claims (from `validate_record`) as the frame `validate_claims` would have typed.

    Each field any claim has becomes a column of its canonical dtype (text, float64, Int64,
    boolean, datetime64[s]); a claim without it holds the missing value there.
    """
    import numpy as np
    import pandas as pd

    present = set().union(*claims) if claims else set()
    columns = {}
    for spec in fields:
        if spec.name not in present:
            continue
        values = [c.get(spec.name) for c in claims]
        if spec.kind == "number":
            columns[spec.name] = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
        else:
            columns[spec.name] = pd.array(values, dtype=_DTYPES[spec.kind])
    return pd.DataFrame(columns, index=pd.RangeIndex(len(claims)))
