"""Strict JSON at the door: a body is checked before BentoML or FastAPI parses it.

Python's parser and pydantic both keep the last of two equal keys, so `{"claim_amount": 100,
"claim_amount": 100000}` would be scored on a value the sender may never have meant; a claim with a
million fields would be answered with a million "unknown field" errors. Here, duplicate keys (400),
too many fields in one claim (422), values that are not scalars (422) and a batch of more claims
than allowed (413) are refused with one message naming where.

A claim is parsed at once only from a window of 16 KiB of the text: Python's C parser holds the
interpreter lock for the whole of one object (measured: 0.5 s for one 8 MB object of 700,000
fields; 23 ms for a 256 KB claim of 18,717), and the event loop waits for that lock. A claim that
does not end within its window is read field by field, up to its first fault.
These functions only judge; the service parses the same bytes again after them.
"""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from dataclasses import dataclass
from json.decoder import scanstring

_SPACE = re.compile(r"[ \t\n\r]*")
_KINDS = {"{": "an object", "[": "a list", '"': "text"}
# A claim that ends within this many characters is parsed at once (~1 ms at most); a longer one, or
# one the parser finds fault with, is read field by field.
DECODE_AT_ONCE_CHARS = 16 * 1024


class Refused(ValueError):
    """A body the service will not read, with the HTTP status to answer and a message saying why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class _Duplicate(Exception):
    def __init__(self, key: str):
        self.key = key


@dataclass(frozen=True)
class ClaimLimits:
    """How large a claim and a batch may be at the door (config.security, config.serving)."""

    max_fields_per_claim: int = 500
    max_claims: int = 1000
    max_claim_chars: int = 262_144  # a claim inside a batch: at most what /score takes alone


def _unique_keys(pairs: list) -> dict:
    found = dict(pairs)
    if len(found) < len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise _Duplicate(key)
            seen.add(key)
    return found


def _no_constant(name: str):
    raise Refused(400, f"{name} is not a JSON number: send a number or null")


_STRICT = json.JSONDecoder(object_pairs_hook=_unique_keys, parse_constant=_no_constant)


def check_json(body: bytes) -> None:
    """Any JSON body (/feedback, /cases/{claim_id}/respond): well formed, no key twice in an object."""
    text = _text(body)
    with _as_refusal("the body"):
        _STRICT.decode(text)


def check_claim(body: bytes, limits: ClaimLimits) -> None:
    """The body of /score: one claim, a flat object of JSON scalars."""
    text = _text(body)
    end = _claim(text, _space(text, 0), "the claim", limits)
    _only_space_after(text, end)


def check_batch(body: bytes, limits: ClaimLimits) -> None:
    """The body of /score_batch: {"claims": [claim, ...], "explain": true or false}."""
    text = _text(body)
    i = _space(text, 0)
    if text[i:i + 1] != "{":
        raise Refused(422, 'the body must be a JSON object: {"claims": [...], "explain": true}')
    i, seen = _space(text, i + 1), set()
    while text[i:i + 1] != "}":
        key, i = _key(text, i, "the body")
        if key in seen:
            raise Refused(400, f"duplicate key {key!r} in the body")
        seen.add(key)
        if key == "claims":
            i = _claims(text, i, limits)
        elif key == "explain":
            i = _explain(text, i)
        else:
            raise Refused(422, f"unknown field {key!r} in the body: /score_batch takes 'claims' and 'explain'")
        i = _after_value(text, i, "}", "the body")
    _only_space_after(text, i + 1)


def _claims(text: str, i: int, limits: ClaimLimits) -> int:
    if text[i:i + 1] != "[":
        raise Refused(422, "'claims' must be a list of claims (JSON objects)")
    i, n = _space(text, i + 1), 0
    while text[i:i + 1] != "]":
        n += 1
        if n > limits.max_claims:
            raise Refused(413, f"a batch holds at most {limits.max_claims:,} claims; this one has more: split it")
        i = _after_value(text, _claim(text, i, f"claim {n} (claims[{n - 1}])", limits), "]", "'claims'")
    return _space(text, i + 1)


def _explain(text: str, i: int) -> int:
    first = text[i:i + 1]
    if first in ("{", "["):
        raise Refused(422, f"'explain' must be true or false, not {_KINDS[first]}")
    with _as_refusal("the body"):
        value, end = _STRICT.raw_decode(text, i)
    if not isinstance(value, bool):
        raise Refused(422, f"'explain' must be true or false, not {json.dumps(value)[:40]}")
    return _space(text, end)


def _claim(text: str, i: int, where: str, limits: ClaimLimits) -> int:
    """Check one claim starting at `i`; returns where it ends."""
    if not text[i:i + 1]:
        raise Refused(400, f"the body ends where {where} should begin: send the claim as a JSON object")
    if text[i] != "{":
        shown = _KINDS.get(text[i], "a number, true, false or null")
        raise Refused(422, f"{where} must be a JSON object of the claim's fields, not {shown}")
    try:  # parsed at once when it ends within a bounded window of the text
        with _as_refusal(where, malformed=(json.JSONDecodeError, RecursionError)):
            claim, length = _STRICT.raw_decode(text[i:i + DECODE_AT_ONCE_CHARS])
    except (json.JSONDecodeError, RecursionError):  # longer than the window, or malformed: field by field
        end = _walk(text, i, where, limits)
        if end - i > limits.max_claim_chars:
            raise Refused(413, f"{where} is {end - i:,} characters long; a claim takes at most "
                               f"{limits.max_claim_chars:,}") from None
        return _space(text, end)
    nested = next((key for key, value in claim.items() if isinstance(value, (dict, list))), None)
    if nested is not None:
        raise Refused(422, _nested(nested, "an object" if isinstance(claim[nested], dict) else "a list", where))
    if len(claim) > limits.max_fields_per_claim:
        raise Refused(422, f"{where} has {len(claim):,} fields; a claim has at most "
                           f"{limits.max_fields_per_claim:,}")
    return _space(text, i + length)


def _nested(key: str, kind: str, where: str) -> str:
    return f"field {key!r} of {where} is {kind}: a claim's fields are text, numbers, true, false or null"


def _walk(text: str, i: int, where: str, limits: ClaimLimits) -> int:
    """A claim read field by field up to its first fault (raised) or its end (returned): a claim of a
    million fields costs no more than one of 500."""
    i, seen = _space(text, i + 1), set()
    while text[i:i + 1] != "}":
        key, i = _key(text, i, where)
        if key in seen:
            raise Refused(400, f"duplicate key {key!r} in {where}")
        seen.add(key)
        if len(seen) > limits.max_fields_per_claim:
            raise Refused(422, f"{where} has more than {limits.max_fields_per_claim:,} fields; a claim has at "
                               f"most {limits.max_fields_per_claim:,}")
        if text[i:i + 1] in ("{", "["):
            raise Refused(422, _nested(key, _KINDS[text[i]], where))
        with _as_refusal(where):
            _, i = _STRICT.raw_decode(text, i)
        i = _after_value(text, _space(text, i), "}", where)
    return i + 1


def _key(text: str, i: int, where: str) -> tuple[str, int]:
    """A field name and the position of its value."""
    if text[i:i + 1] != '"':
        raise Refused(400, f"the body is not valid JSON: expecting a field name in double quotes in {where} "
                           f"(character {i + 1:,})")
    with _as_refusal(where):
        key, i = scanstring(text, i + 1)
    i = _space(text, i)
    if text[i:i + 1] != ":":
        raise Refused(400, f"the body is not valid JSON: expecting ':' after {key!r} in {where} "
                           f"(character {i + 1:,})")
    return key, _space(text, i + 1)


def _after_value(text: str, i: int, closing: str, where: str) -> int:
    """Past the ',' after a value (or onto the closing bracket)."""
    mark = text[i:i + 1]
    if mark == ",":
        i = _space(text, i + 1)
        if text[i:i + 1] == closing:
            raise Refused(400, f"the body is not valid JSON: a trailing comma in {where} (character {i + 1:,})")
        return i
    if mark == closing:
        return i
    raise Refused(400, f"the body is not valid JSON: expecting ',' or '{closing}' in {where} "
                       f"(character {i + 1:,})")


def _only_space_after(text: str, i: int) -> None:
    if _space(text, i) != len(text):
        raise Refused(400, f"the body is not valid JSON: more after the end of the value (character {i + 1:,})")


def _space(text: str, i: int) -> int:
    return _SPACE.match(text, i).end()


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise Refused(400, f"the body is not UTF-8 text (byte {err.start + 1:,}); JSON is sent as UTF-8") from None


@contextmanager
def _as_refusal(where: str, malformed: tuple = ()):
    """What the parser raises, as a Refused naming `where` (but the `malformed` kinds, left to the caller)."""
    try:
        yield
    except (Refused, *malformed):
        raise
    except _Duplicate as dup:
        raise Refused(400, f"duplicate key {dup.key!r} in {where}") from None
    except json.JSONDecodeError as err:
        raise Refused(400, f"the body is not valid JSON: {err.msg} (line {err.lineno}, column {err.colno})") from None
    except RecursionError:
        raise Refused(400, f"{where} nests lists or objects too deeply") from None
    except ValueError:  # Python reads no integer of more than 4,300 digits
        raise Refused(400, f"a number in {where} has more digits than any claim needs") from None
