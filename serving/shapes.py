"""The record shapes a model version takes at the door: the canonical claim record, and for a version
trained through a dataset mapping, also a record in the extract's own columns and codes.

An extract record goes through the version's own mapping (`features.mapping.map_records`, the code
training used on the whole extract), then through the same validation as a canonical record. Every
problem is named by the column the claims system sent: a mapping problem by its source column, and
a canonical field the validator rejects by the source column it came from.
"""

from __future__ import annotations

from features.mapping import DatasetMapping, columns_read, map_records, parse_mapping
from features.schema import ClaimField

CANONICAL = "canonical"
EXTRACT = "extract"
# A mapped field's error quotes its extract column's value, at most this many characters of it.
SOURCE_VALUE_CHARS = 80


class RecordShapes:
    """Which shape each record is in, and the extract's records turned into canonical ones."""

    def __init__(self, carried: dict | None, fields: tuple[ClaimField, ...]):
        self.carried = carried
        self.mapping: DatasetMapping | None = None
        self.canonical_keys = frozenset(f.name for f in fields)
        self.extract_keys: frozenset[str] = frozenset()
        self.unread_keys: frozenset[str] = frozenset()
        if carried is not None:
            self.mapping = parse_mapping(carried["rules"], source=f"the mapping {carried.get('name', '')}".strip())
            names = list(self.mapping.fields) + [name for names in self.mapping.extra_columns for name in names]
            self._sources = {name: self.mapping.source_columns(name) for name in names}
            self.extract_keys = frozenset(columns_read(self.mapping, labels=False))
            # Columns of the training extract the mapping does not read: sent along, never read.
            self.unread_keys = frozenset(carried.get("columns", ())) - self.extract_keys

    @property
    def names(self) -> tuple[str, ...]:
        return (CANONICAL, EXTRACT) if self.mapping is not None else (CANONICAL,)

    def shape_of(self, record: dict) -> str:
        """The extract's shape when the record has a column only the extract has, else canonical."""
        if self.mapping is None:
            return CANONICAL
        only_extract = sum(1 for key in record if (key in self.extract_keys or key in self.unread_keys)
                           and key not in self.canonical_keys)
        if not only_extract:
            return CANONICAL
        only_canonical = sum(1 for key in record if key in self.canonical_keys and key not in self.extract_keys)
        return EXTRACT if only_extract >= only_canonical else CANONICAL

    def to_canonical(self, records: list[dict]) -> list[tuple[dict, list[dict], list[str]]]:
        """Extract records (all of this version's extract shape) as canonical records (what mapped),
        the mapping's errors, named by the record's columns, and what it changed on purpose (a value
        out of range set missing), said per record."""
        if self.unread_keys:
            records = [{k: v for k, v in record.items() if k not in self.unread_keys} for record in records]
        notes: list[str] = []
        mapped = map_records(records, self.mapping, notes)
        if not notes:  # the common case: nothing changed, one pass for the batch
            return [(claim, errors, []) for claim, errors in mapped]
        out = []
        for record, (claim, errors) in zip(records, mapped):
            own: list[str] = []
            if len(records) > 1:
                map_records([record], self.mapping, own)
            out.append((claim, errors, own if len(records) > 1 else notes))
        return out

    def source_errors(self, errors: list[dict], record: dict, reported: set[str] = frozenset()) -> list[dict]:
        """The validator's errors on a mapped record, named by the extract column each field came from;
        none for a field whose columns the mapping already reported (it did not map, so it is missing)."""
        named = []
        for error in errors:
            columns = self._sources.get(error["field"], ())
            if reported & set(columns):
                continue
            if not columns:  # a constant of the mapping (`value:`), or a field the record cannot carry
                named.append({**error, "reason": f"{error['reason']} (the mapping sets {error['field']})"})
                continue
            value = record.get(columns[0]) if len(columns) == 1 else error["value"]
            named.append({"field": ", ".join(columns),
                          "value": None if value is None else str(value)[:SOURCE_VALUE_CHARS],
                          "reason": f"{error['reason']} (as {error['field']})"})
        return named

    def claim_id(self, record: dict):
        """The claim id an extract record carries in its own column(s), for its error entry."""
        columns = self._sources.get("claim_id", ())
        values = [record.get(c) for c in columns]
        return None if any(v is None for v in values) or not values else "-".join(str(v) for v in values)

    def describe(self, canonical_example: dict) -> dict:
        """What `GET /model` says of the shapes this version takes, with an example of each."""
        shapes = {CANONICAL: {"fields": sorted(self.canonical_keys), "example": canonical_example}}
        if self.mapping is not None:
            shapes[EXTRACT] = {"mapping": self.mapping.name, "columns": sorted(self.extract_keys),
                               "columns_not_read": sorted(self.unread_keys),
                               "example": (self.carried.get("example") or [{}])[0],
                               "note": "a record with a column only the extract has is read in the extract's "
                                       "shape, through the mapping the version was trained with"}
        return shapes
