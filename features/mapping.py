"""Dataset mappings: an insurer's own extract to canonical claims, declared in YAML, not code.

A mapping file says, per canonical field, where its value comes from:

    fields:
      claim_id:          {column: policy_number}              # rename
      line_of_business:  {value: auto}                        # a constant for the whole extract
      loss_type:         {column: incident_type, values: {Vehicle Theft: theft, ...}}   # every value mapped
      police_report:     {column: police_report_available, true_values: ["YES"], false_values: ["NO"]}
      loss_date:         {column: incident_date, format: "%m/%d/%Y"}
      loss_date:         {parts: {year: yr, month: mo, day: dy}}                     # from several columns
      report_date:       {parts: {year: yr, month: rep_mo, week_of_month: rep_wk, weekday: rep_day},
                          not_before: loss_date}                                     # year of the loss
      customer_since:    {parts: {year: cust_yr}}                                    # a year-level date
      policy_id:         {join: [branch, policy_no], separator: "-"}                 # text from several
      claim_amount:      {column: amount_thousands, scale: 1000}
      claimant_age:      {column: Age, missing: ["0"], out_of_range: missing}
    labels:
      is_fraud:          {column: fraud_reported, true_values: ["Y"], false_values: ["N"]}
    missing_values: ["?", ""]          # source text that means "not known", for every column
    extra_features:
      categorical: [incident_severity, {column: channel, values: {"B": broker, "A": agent}, encoding: target}]
      numeric: [umbrella_limit, {column: prior_claims, bands: ["none", "1", "2 to 4", "more than 4"]}]
    training: {num_leaves: 3}          # model-shape settings suited to this extract (optional)
    read: {sep: ";"}                   # how to read the CSV file (pandas.read_csv settings, optional)

Rule keys (per canonical field; labels take the same, for true/false values):
    column: SRC               the value comes from source column SRC
    value: V                  a constant for the whole extract
    join: [A, B]              text from several columns, joined by `separator` (default "-")
    parts: {...}              a date from several columns: {year}, {year, month}, {year, month, day} or
                              {year, month, week_of_month, weekday}; months as 1-12 or names ("Jan",
                              "january"), weekdays as 1-7 (1 = Monday) or names ("Mon", "monday")
    week_starts: monday|sunday  week_of_month counts calendar weeks (week 1 holds the 1st); without
                              it, week N is days 7N-6..7N of the month (week 5 is days 29-31)
    not_before: FIELD         a date from parts that precedes FIELD's date (compared at its precision)
                              is a year later: for a year column that holds another event's year
    precision: LEVEL          year < month < week < day < second: how exact the date is; inferred from
                              the rule (parts; a format with or without a time of day; ISO 8601 is
                              second), and this key may only lower it (date-only timestamps);
                              `DatasetMapping.field_precision` gives it for every mapped date
    values: {src: canon}      map every source value (an unmapped value present in the data is an error)
    true_values / false_values  source values meaning yes / no; without them "true"/"false"/"1"/"0"
    format: "%m/%d/%Y"        how dates are written (strptime codes); without it, ISO 8601
    scale: 1000               multiply numbers (units)
    missing: [...]            source values meaning "not known" in this column only
    out_of_range: missing     an optional number or date outside the canonical range is set missing,
                              counted in the notes; without it the claim is rejected by validation
Extra features (`extra_features`: lists `categorical` and `numeric`), each a source column name or
    {column: SRC, missing: [...], values: {src: label or number}, bands: [...], encoding: ...}:
    bands (numeric only) are ordered labels read as their position 0, 1, 2, ...; encoding
    (categorical only) is auto, category, target or frequency. The model sees `extra_<column>`.

Quote source values in YAML ("YES", "NO", "on"): unquoted, YAML reads them as true/false, and
the mapping refuses them rather than guess.
Canonical fields a mapping does not name are absent: the features that need them are left out.
All problems (unknown columns, unmapped values, unparseable dates or numbers) are collected and
reported together, with the offending values and their counts, before anything is trained.
The scoring service maps request records (`map_records`) with the very code that maps the
training extract (`apply_mapping`): both run one table of source text through `_map_extract`.
"""

from __future__ import annotations

import copy
import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from features.record_spec import FALSE_TEXT, LARGEST_EXACT_INTEGER, TRUE_TEXT
from features.schema import EARLIEST_DATE, FIELDS_BY_NAME, LABEL_FIELDS, LATEST_DATE, ClaimField

RULE_KEYS = {"column", "value", "values", "true_values", "false_values", "format", "parts", "join", "separator", "scale",
             "missing", "week_starts", "not_before", "precision", "out_of_range"}
TOP_KEYS = {"name", "description", "fields", "labels", "missing_values", "extra_features", "training", "read"}
EXTRA_KEYS = {"column", "missing", "values", "bands", "encoding"}
ENCODINGS = ("auto", "category", "target", "frequency")
PRECISIONS = ("year", "month", "week", "day", "second")  # coarsest first
PART_SETS = {frozenset({"year"}): "year", frozenset({"year", "month"}): "month",
             frozenset({"year", "month", "day"}): "day",
             frozenset({"year", "month", "week_of_month", "weekday"}): "week"}
WEEK_STARTS = {"monday": 0, "sunday": 6}  # weekday numbers counted from Monday = 0
DATE_KINDS = ("date", "datetime")
NUMBER_KINDS = ("number", "integer")
KEY_KINDS = {"format": DATE_KINDS, "parts": DATE_KINDS, "week_starts": DATE_KINDS, "not_before": DATE_KINDS,
             "precision": DATE_KINDS, "true_values": ("boolean",), "false_values": ("boolean",),
             "scale": NUMBER_KINDS, "out_of_range": NUMBER_KINDS + DATE_KINDS}
_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
           "november", "december")
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MONTH_NAMES = {n: i for i, full in enumerate(_MONTHS, 1) for n in (full, full[:3])} | {"sept": 9}
WEEKDAY_NAMES = {n: i for i, full in enumerate(_WEEKDAYS, 1) for n in (full, full[:3])} \
    | {"tues": 2, "thur": 4, "thurs": 4}
# strptime codes that carry a time of day: a datetime written with one of them is exact to the second.
TIME_OF_DAY = re.compile(r"%[-#^]?[HIMSfpXTcRrklz]")
SHOWN_VALUES = 10  # offending values quoted per problem
# A true/false field without true_values/false_values reads the words the canonical validator reads.
TRUTH_WORDS = {word: True for word in TRUE_TEXT} | {word: False for word in FALSE_TEXT}

UNMAPPED = "has values the mapping does not map"
NOT_A_NUMBER = "is not a number"
NOT_A_DATE = "is not a real date"
NOT_A_BAND = "is not one of the bands"
NOT_EXTRACT_COLUMN = "is not a column of the extract this model was trained on"
NOT_PLAIN_VALUE = "must be text, a number, true/false or null"
ONE_VALUE = {UNMAPPED: "has a value the mapping does not map"}  # a problem's message, said of one record


@dataclass(frozen=True)
class MappingProblem:
    """One thing wrong: where (key path or field and column), what, the values, and which rows."""

    column: str
    message: str
    values: tuple[str, ...] = ()
    count: int = 0
    source: tuple[str, ...] = ()  # the extract column(s) at fault; empty for a mistake in the mapping itself
    rows: tuple[int, ...] = ()    # 0-based positions of the offending rows; empty when not about rows
    target: str = ""              # the canonical field or extra feature the values were mapped to

    def __str__(self) -> str:
        shown = f": {', '.join(repr(v) for v in self.values)}" if self.values else ""
        counted = f" ({self.count} rows)" if self.count else ""
        return f"{self.column}: {self.message}{shown}{counted}"


class MappingError(ValueError):
    """Everything wrong with a mapping or with the data it maps, in one report."""

    def __init__(self, problems: list[MappingProblem], source: str = "mapping"):
        self.problems = problems
        super().__init__(f"{source}: {len(problems)} problem(s)\n" + "\n".join(f"  {p}" for p in problems))


@dataclass(frozen=True)
class DatasetMapping:
    name: str
    description: str
    fields: dict[str, dict]
    labels: dict[str, dict]
    missing_values: tuple[str, ...] = ()
    extra_categorical: tuple[str, ...] = ()
    extra_numeric: tuple[str, ...] = ()
    training: dict = field(default_factory=dict)
    read: dict = field(default_factory=dict)
    extra_rules: dict[str, dict] = field(default_factory=dict)  # source column -> its rule (missing, values, ...)

    @property
    def extra_columns(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The model-facing names of the passed-through columns: (categorical, numeric)."""
        return (tuple(extra_name(c) for c in self.extra_categorical), tuple(extra_name(c) for c in self.extra_numeric))

    @property
    def extra_encodings(self) -> dict[str, str]:
        """How the mapping asks each categorical extra feature to be encoded, where it says so."""
        return {extra_name(c): self.extra_rules[c]["encoding"] for c in self.extra_categorical
                if "encoding" in self.extra_rules.get(c, {})}

    @property
    def field_precision(self) -> dict[str, str]:
        """How exact each mapped date is, so no feature reads more than the source holds."""
        return {name: rule.get("precision", _inferred_precision(rule, FIELDS_BY_NAME[name].kind))
                for name, rule in self.fields.items() if FIELDS_BY_NAME[name].kind in DATE_KINDS}

    def source_columns(self, name: str) -> tuple[str, ...]:
        """The extract columns a canonical field, label or extra feature comes from, to name them in errors."""
        rule = self.fields.get(name, self.labels.get(name))
        if rule is not None:
            return _rule_columns(rule)
        for column in self.extra_categorical + self.extra_numeric:
            if extra_name(column) == name:
                return (column,)
        raise KeyError(f"{name} is neither a field nor an extra feature of mapping {self.name}")

    def to_dict(self) -> dict:
        """The mapping as plain data that `parse_mapping` rebuilds: how a model keeps its mapping."""
        def entry(column: str):
            return {"column": column, **self.extra_rules[column]} if column in self.extra_rules else column

        return copy.deepcopy({
            "name": self.name, "description": self.description, "fields": self.fields, "labels": self.labels,
            "missing_values": list(self.missing_values),
            "extra_features": {"categorical": [entry(c) for c in self.extra_categorical],
                               "numeric": [entry(c) for c in self.extra_numeric]},
            "training": self.training, "read": self.read})


def extra_name(column: str) -> str:
    """`extra_` + the source column in snake case, so it cannot collide with a canonical field."""
    return "extra_" + re.sub(r"[^0-9a-z]+", "_", column.strip().lower()).strip("_")


def load_mapping(path: str | Path) -> DatasetMapping:
    """Read and check a mapping file's structure; every mistake is named by its key path."""
    path = Path(path)
    if not path.exists():
        raise MappingError([MappingProblem(str(path), "no such mapping file")])
    return parse_mapping(yaml.safe_load(path.read_text()) or {}, str(path))


def parse_mapping(raw: dict, source: str = "mapping") -> DatasetMapping:
    """A mapping from plain data (a file's YAML, or the dict stored with a model), checked as a file is."""
    problems = _structure_problems(raw)
    if problems:
        raise MappingError(problems, source)
    extras = raw.get("extra_features") or {}
    categorical, numeric = list(extras.get("categorical") or ()), list(extras.get("numeric") or ())
    return DatasetMapping(
        name=str(raw.get("name", Path(source).stem)), description=str(raw.get("description", "")),
        fields=copy.deepcopy(raw["fields"]), labels=copy.deepcopy(raw.get("labels") or {}),
        missing_values=tuple(str(v) for v in raw.get("missing_values") or ()),
        extra_categorical=tuple(_extra_column(e) for e in categorical),
        extra_numeric=tuple(_extra_column(e) for e in numeric),
        training=dict(raw.get("training") or {}), read=dict(raw.get("read") or {}),
        extra_rules={e["column"]: copy.deepcopy({k: v for k, v in e.items() if k != "column"})
                     for e in categorical + numeric if isinstance(e, dict)})


# --- the structure of a mapping, checked before any data is read

def _structure_problems(raw) -> list[MappingProblem]:
    """Every mistake in a mapping's plain data, named by its key path, before any data is read."""
    if not isinstance(raw, dict):
        return [MappingProblem("(top)", "a mapping must be a YAML mapping of keys")]
    problems = [MappingProblem(k, f"unknown key; expected one of {', '.join(sorted(TOP_KEYS))}")
                for k in raw if k not in TOP_KEYS]
    if not isinstance(raw.get("fields"), dict) or not raw["fields"]:
        problems.append(MappingProblem("fields", "is required: a mapping of canonical field -> rule"))
        return problems
    fields = raw["fields"]
    if not isinstance(raw.get("labels") or {}, dict):
        problems.append(MappingProblem("labels", "must be a mapping of label -> rule"))
        raw = {**raw, "labels": {}}
    for section, known in (("fields", FIELDS_BY_NAME), ("labels", _LABEL_SPECS)):
        for name, rule in (raw.get(section) or {}).items():
            where = f"{section}.{name}"
            if name not in known:
                close = difflib.get_close_matches(str(name), list(known), n=1)
                hint = f"; did you mean {close[0]}?" if close else ""
                problems.append(MappingProblem(where, f"is not a canonical {section[:-1]}{hint}"))
            elif not isinstance(rule, dict):
                problems.append(MappingProblem(where, "must be a mapping such as {column: source_column}"))
            else:
                problems += _rule_problems(where, name, rule, known[name], fields)
    problems += _cycle_problems(fields)
    return problems + _extra_problems(raw.get("extra_features"))


_LABEL_SPECS = {name: ClaimField(name, "boolean", True, f"Outcome label {name}.") for name in LABEL_FIELDS}


def _rule_problems(where: str, name: str, rule: dict, spec: ClaimField, fields: dict) -> list[MappingProblem]:
    """What is wrong with one field's or label's rule, each named by its key path."""
    problems = [MappingProblem(f"{where}.{k}", "unknown rule key; expected one of " + ", ".join(sorted(RULE_KEYS)))
                for k in rule if k not in RULE_KEYS]
    shapes = _shape_problems(where, rule)
    problems += shapes or _unquoted(where, rule)
    sources = [k for k in ("column", "value", "parts", "join") if k in rule]
    if len(sources) != 1:
        problems.append(MappingProblem(where, "needs exactly one of column, value, parts or join"))
    problems += [MappingProblem(f"{where}.{key}", f"applies to {' or '.join(kinds)} fields; {name} is {spec.kind}")
                 for key, kinds in KEY_KINDS.items() if key in rule and spec.kind not in kinds]
    if spec.kind in DATE_KINDS and not shapes:
        problems += _date_rule_problems(where, name, rule, spec, fields)
    if "out_of_range" in rule and spec.kind in KEY_KINDS["out_of_range"]:
        if rule["out_of_range"] != "missing":
            problems.append(MappingProblem(f"{where}.out_of_range", "can only be missing (leave it out to reject "
                                                                    "claims whose value is out of range)"))
        elif spec.required:
            problems.append(MappingProblem(f"{where}.out_of_range", f"{name} is required: an out-of-range value "
                                                                    "must reject the claim, not go missing"))
    return problems


def _shape_problems(where: str, rule: dict) -> list[MappingProblem]:
    """Keys whose value has the wrong shape (a list where a mapping belongs, or the reverse)."""
    shapes = {"values": dict, "parts": dict, "true_values": list, "false_values": list, "missing": list,
              "join": list, "bands": list}
    return [MappingProblem(f"{where}.{key}", f"must be a {'mapping' if shape is dict else 'list'}")
            for key, shape in shapes.items() if key in rule and not isinstance(rule[key], shape)]


def _unquoted(where: str, rule: dict) -> list[MappingProblem]:
    """Source values YAML turned into booleans or numbers: the author must quote them."""
    found = [k for k in (rule.get("values") or {}) if not isinstance(k, str)]
    for key in ("true_values", "false_values", "missing", "join", "bands"):
        found += [v for v in (rule.get(key) or []) if not isinstance(v, str)]
    found += [v for v in (rule.get("parts") or {}).values() if not isinstance(v, str)]
    if "column" in rule and not isinstance(rule["column"], str):
        found.append(rule["column"])
    if not found:
        return []
    return [MappingProblem(where, "quote source values and column names (YAML reads unquoted yes/no/on/off and "
                                  "numbers as other types)",
                           tuple(str(v) for v in found))]


def _date_rule_problems(where: str, name: str, rule: dict, spec: ClaimField, fields: dict) -> list[MappingProblem]:
    """Parts, week counting, the not_before field and the stated precision of a date rule."""
    problems = []
    parts = rule.get("parts")
    if parts is not None and frozenset(parts) not in PART_SETS:
        problems.append(MappingProblem(f"{where}.parts", "needs year; year and month; year, month and day; "
                                                         "or year, month, week_of_month and weekday"))
    weekly = "week_of_month" in (parts or {})
    if "week_starts" in rule and (_word(rule, "week_starts") not in WEEK_STARTS or not weekly):
        problems.append(MappingProblem(f"{where}.week_starts", "is monday or sunday, for parts with week_of_month"))
    reference = _word(rule, "not_before")
    if "not_before" in rule:
        if parts is None:
            problems.append(MappingProblem(f"{where}.not_before", "applies to dates built from parts"))
        elif reference not in FIELDS_BY_NAME or FIELDS_BY_NAME[reference].kind not in DATE_KINDS:
            problems.append(MappingProblem(f"{where}.not_before", "must name a canonical date or datetime field"))
        elif reference == name:
            problems.append(MappingProblem(f"{where}.not_before", "cannot name the field itself"))
        elif reference not in fields:
            problems.append(MappingProblem(f"{where}.not_before", f"names {reference}, which this mapping does "
                                                                  "not map: map it too"))
    if "precision" in rule and (parts is None or frozenset(parts) in PART_SETS):
        stated, inferred = _word(rule, "precision"), _inferred_precision(rule, spec.kind)
        if stated not in PRECISIONS:
            problems.append(MappingProblem(f"{where}.precision", f"must be one of {', '.join(PRECISIONS)}"))
        elif PRECISIONS.index(stated) > PRECISIONS.index(inferred):
            problems.append(MappingProblem(f"{where}.precision", f"asks for {stated}, but this rule gives dates "
                                                                 f"exact to the {inferred} only"))
    return problems


def _word(rule: dict, key: str) -> str:
    """A rule's one-word setting (precision, week_starts, not_before); "" when it is not a word."""
    value = rule.get(key)
    return value if isinstance(value, str) else ""


def _inferred_precision(rule: dict, kind: str) -> str:
    """How exact a rule's dates are: by its parts, or by the time of day in its format."""
    if "parts" in rule:
        return PART_SETS.get(frozenset(rule["parts"]), "day")
    if kind == "date":
        return "day"
    written = rule.get("format")
    if written in (None, "ISO8601", "mixed"):
        return "second"
    return "second" if TIME_OF_DAY.search(str(written).replace("%%", "")) else "day"


def _cycle_problems(fields: dict) -> list[MappingProblem]:
    """not_before chains that come back to where they started: no field could be mapped first."""
    def reference(name: str):
        rule = fields.get(name)
        return (_word(rule, "not_before") or None) if isinstance(rule, dict) else None

    problems = []
    for name in fields:
        chain, current = [name], reference(name)
        while current is not None and current not in chain:
            chain.append(current)
            current = reference(current)
        if current == name and len(chain) > 1:
            problems.append(MappingProblem(f"fields.{name}.not_before",
                                           "goes round in a circle: " + " -> ".join(chain + [name])))
    return problems


def _extra_problems(extras) -> list[MappingProblem]:
    """The extra-feature lists: their entries, and no two giving the model the same name."""
    if extras is None:
        return []
    if not isinstance(extras, dict) or set(extras) - {"categorical", "numeric"}:
        return [MappingProblem("extra_features", "must have only the lists categorical and numeric")]
    problems, names = [], {}
    for kind in ("categorical", "numeric"):
        entries = extras.get(kind) or []
        if not isinstance(entries, list):
            problems.append(MappingProblem(f"extra_features.{kind}", "must be a list of source columns"))
            continue
        for entry in entries:
            found = _extra_entry_problems(kind, entry)
            problems += found
            if not found:
                column = _extra_column(entry)
                if extra_name(column) in names:
                    problems.append(MappingProblem(f"extra_features.{kind}.{column}", f"gives the feature "
                                                   f"{extra_name(column)}, as {names[extra_name(column)]!r} does"))
                names[extra_name(column)] = column
    return problems


def _extra_entry_problems(kind: str, entry) -> list[MappingProblem]:
    """One extra-feature entry: a column name, or {column: ..., and rules that fit its list}."""
    if isinstance(entry, str):
        return []
    if not isinstance(entry, dict) or not isinstance(entry.get("column"), str):
        return [MappingProblem(f"extra_features.{kind}", "each entry is a quoted source column or a mapping such "
                                                         "as {column: SRC, missing: [...]}", (str(entry),))]
    where = f"extra_features.{kind}.{entry['column']}"
    allowed = EXTRA_KEYS - ({"encoding"} if kind == "numeric" else {"bands"})
    problems = [MappingProblem(f"{where}.{k}", f"is not a key of a {kind} extra feature; expected one of "
                               + ", ".join(sorted(allowed))) for k in entry if k not in allowed]
    problems += _shape_problems(where, entry) or _unquoted(where, entry)
    if problems:
        return problems
    if "values" in entry and "bands" in entry:
        problems.append(MappingProblem(where, "give values or bands, not both"))
    targets = (int, float) if kind == "numeric" else (str, int, float)
    wrong = [v for v in (entry.get("values") or {}).values()
             if v is not None and (isinstance(v, bool) or not isinstance(v, targets))]
    if wrong:
        what = "numbers" if kind == "numeric" else "quoted labels"
        problems.append(MappingProblem(f"{where}.values", f"must map to {what}", tuple(str(v) for v in wrong)))
    bands = entry.get("bands", [None])
    if not bands or len(set(bands)) != len(bands):
        problems.append(MappingProblem(f"{where}.bands", "must list each band once, in order"))
    if entry.get("encoding", "auto") not in ENCODINGS:
        problems.append(MappingProblem(f"{where}.encoding", f"must be one of {', '.join(ENCODINGS)}"))
    return problems


def _extra_column(entry) -> str:
    """The source column of an extra-feature entry, written as a name or as {column: ...}."""
    return entry["column"] if isinstance(entry, dict) else entry


def _rule_columns(rule: dict) -> tuple[str, ...]:
    """The extract columns one rule reads, in the order it names them."""
    if "column" in rule:
        return (rule["column"],)
    if "parts" in rule:
        return tuple(rule["parts"].values())
    return tuple(rule.get("join", ()))


def columns_read(mapping: DatasetMapping, labels: bool) -> tuple[str, ...]:
    """Every extract column the mapping reads, once each; labels only where outcomes are known."""
    rules = list(mapping.fields.values()) + (list(mapping.labels.values()) if labels else [])
    columns = [c for rule in rules for c in _rule_columns(rule)] + list(mapping.extra_categorical)
    columns += mapping.extra_numeric
    return tuple(dict.fromkeys(columns))


# --- the extract, files and requests alike, as one table of text

@dataclass(frozen=True)
class _Extract:
    """The source as text columns (None where a cell holds nothing), whatever it came from."""

    n: int
    text: dict[str, np.ndarray]  # only the columns the mapping reads and the source has
    names: tuple[str, ...]       # every column the source has, to suggest the closest on a typo


@dataclass(frozen=True)
class _Where:
    """Where a problem lies: how the report names it, the field it feeds and the columns it reads."""

    label: str
    target: str
    source: tuple[str, ...]


def read_source(path: str | Path, mapping: DatasetMapping) -> pd.DataFrame:
    """The extract as text, exactly as written: only the mapping decides what is missing."""
    path = Path(path)
    if not path.exists():
        raise MappingError([MappingProblem(str(path), "no such data file")])
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".csv":
        # pandas would silently read "None", "NA" or "null" as missing; an extract may mean them.
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, **mapping.read)
    raise MappingError([MappingProblem(str(path), f"unknown file type {path.suffix!r}; use .csv or .parquet")])


def apply_mapping(raw: pd.DataFrame, mapping: DatasetMapping, notes: list[str] | None = None) -> pd.DataFrame:
    """Canonical claims, labels and extra features from the extract; every problem raised together.

    `notes` (when given) receives one line per field whose out-of-range values were set missing
    and per date moved a year by `not_before`: changes the mapping asked for, counted.
    """
    problems: list[MappingProblem] = []
    columns = columns_read(mapping, labels=True)
    extract = _Extract(len(raw), {c: column_text(raw[c]) for c in columns if c in raw.columns},
                       tuple(map(str, raw.columns)))
    mapped = _map_extract(extract, mapping, problems, notes, labels=True)
    if problems:
        raise MappingError(problems, f"mapping {mapping.name}")
    return pd.DataFrame({name: _frame_column(kind, values) for name, (kind, values) in mapped.items()},
                        index=pd.RangeIndex(len(raw)))


def map_records(records: list[dict], mapping: DatasetMapping,
                notes: list[str] | None = None) -> list[tuple[dict | None, list[dict]]]:
    """Request records in the extract's own columns to canonical ones, by the code that maps the extract.

    One (canonical dict, errors) per record, in order: the dict holds what mapped (all of it when
    `errors` is empty), so a caller can still validate the rest and report every problem at once; an
    error names the record's own column. Labels are not read: a claim to score has no outcome yet.
    """
    if not records:
        return []
    extract, errors = _records_extract(records, columns_read(mapping, labels=False))
    problems: list[MappingProblem] = []
    mapped = _map_extract(extract, mapping, problems, notes, labels=False)
    _add_row_errors(problems, extract, errors, mapping)
    values = {name: _json_values(kind, column) for name, (kind, column) in mapped.items()}
    return [({name: v[row] for name, v in values.items() if v[row] is not None}, found)
            for row, found in enumerate(errors)]


def map_frame(raw: pd.DataFrame, mapping: DatasetMapping,
              notes: list[str] | None = None) -> tuple[pd.DataFrame, list[list[dict]]]:
    """Claims to score in the extract's own columns, as a frame, to canonical claims: `map_records`
    for a whole file (bulk scoring). Returns the canonical frame as `apply_mapping` makes it (what
    mapped; labels are not read) and per row the mapping's errors, named by the extract's columns.
    A mistake of the mapping itself (a column the input lacks, say) raises `MappingError`."""
    columns = columns_read(mapping, labels=False)
    extract = _Extract(len(raw), {c: column_text(raw[c]) for c in columns if c in raw.columns},
                       tuple(map(str, raw.columns)))
    problems: list[MappingProblem] = []
    mapped = _map_extract(extract, mapping, problems, notes, labels=False)
    errors: list[list[dict]] = [[] for _ in range(len(raw))]
    _add_row_errors(problems, extract, errors, mapping)
    frame = pd.DataFrame({name: _frame_column(kind, values) for name, (kind, values) in mapped.items()},
                         index=pd.RangeIndex(len(raw)))
    return frame, errors


def _add_row_errors(problems: list[MappingProblem], extract: _Extract, errors: list[list[dict]],
                    mapping: DatasetMapping) -> None:
    """Each problem with the rows' values, as errors of those rows named by the extract's columns;
    a problem of no row (the mapping's own fault, not a record's) raises."""
    for problem in problems:
        if not problem.rows or not problem.source:
            raise MappingError([problem], f"mapping {mapping.name}")
        reason = f"{ONE_VALUE.get(problem.message, problem.message)} (to {problem.target})"
        for row in problem.rows:
            errors[row] += [{"field": c, "value": extract.text[c][row], "reason": reason} for c in problem.source]


def column_text(column: pd.Series) -> np.ndarray:
    """A frame column as text, as `read_source` reads a CSV; None where the cell is empty."""
    text = column.astype("str").to_numpy(dtype=object)
    return np.where(pd.isna(text), None, text)


def _records_extract(records: list[dict], columns: tuple[str, ...]) -> tuple[_Extract, list[list[dict]]]:
    """One table of text for a batch of JSON records; each record's own key and type errors beside it."""
    table = {c: [None] * len(records) for c in columns}
    errors: list[list[dict]] = [[] for _ in records]
    for row, record in enumerate(records):
        if not isinstance(record, dict):
            errors[row].append({"field": None, "value": None, "reason": "must be an object of the extract's columns"})
            continue
        for key, value in record.items():
            cells = table.get(key)
            if cells is None:
                errors[row].append({"field": key, "value": None, "reason": NOT_EXTRACT_COLUMN})
            elif type(value) is str:  # most values, and the cheapest to take
                cells[row] = value
            elif isinstance(value, (dict, list, tuple, set)):
                errors[row].append({"field": key, "value": str(value)[:80], "reason": NOT_PLAIN_VALUE})
            else:
                cells[row] = _record_text(value)
    return _Extract(len(records), {c: np.array(v, dtype=object) for c, v in table.items()}, columns), errors


def _record_text(value) -> str | None:
    """A JSON value as a CSV cell would hold it: numbers as their text, true/false in words."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def _frame_column(kind: str, values: np.ndarray):
    """A mapped column as the frame holds it: text, float, nullable integer or boolean, dates to the second."""
    if kind == "string":
        return pd.Series(values, dtype="str")
    if kind == "integer":
        return pd.array(values, dtype="Int64")
    if kind == "boolean":
        return pd.array(values, dtype="boolean")
    return values


def _json_values(kind: str, values: np.ndarray) -> list:
    """A mapped column as the values a canonical JSON record holds; None where missing."""
    if kind in DATE_KINDS:
        text = np.datetime_as_string(values, unit="D" if kind == "date" else "s").tolist()
        end = "" if kind == "date" else "Z"
        return [None if t == "NaT" else t + end for t in text]
    if kind == "integer":
        return [None if v != v else int(v) for v in values.tolist()]
    if kind == "number":
        return [None if v != v else v for v in values.tolist()]
    if kind == "boolean":
        return [None if v is None else bool(v) for v in values]
    return values.tolist()


# --- mapping one table of text: the single code path for training extracts and requests

def _map_extract(extract: _Extract, mapping: DatasetMapping, problems: list[MappingProblem],
                 notes: list[str] | None, labels: bool) -> dict[str, tuple[str, np.ndarray]]:
    """Every mapped column as (kind, values): fields in mapping order, labels, then extra features."""
    done: dict[str, np.ndarray] = {}
    for name in _evaluation_order(mapping.fields):
        done[name] = _map_field(extract, name, mapping.fields[name], FIELDS_BY_NAME[name], mapping, problems,
                                notes, done)
    out = {name: (FIELDS_BY_NAME[name].kind, done[name]) for name in mapping.fields}
    for name, rule in (mapping.labels.items() if labels else ()):
        out[name] = ("boolean", _map_field(extract, name, rule, _LABEL_SPECS[name], mapping, problems, notes, done))
    for column in mapping.extra_categorical:
        out[extra_name(column)] = ("string", _map_extra(extract, column, False, mapping, problems))
    for column in mapping.extra_numeric:
        out[extra_name(column)] = ("number", _map_extra(extract, column, True, mapping, problems))
    return out


def _evaluation_order(fields: dict) -> list[str]:
    """Fields in mapping order, except that a date comes after the field its not_before names."""
    order: list[str] = []

    def place(name: str) -> None:
        if name not in order:
            reference = fields[name].get("not_before")
            if reference in fields and reference not in order:
                place(reference)
            order.append(name)

    for name in fields:
        place(name)
    return order


def _map_field(extract: _Extract, name: str, rule: dict, spec: ClaimField, mapping: DatasetMapping,
               problems: list[MappingProblem], notes: list[str] | None, done: dict) -> np.ndarray:
    """One canonical field or label from its rule, typed; problems collected, nothing raised."""
    missing = _missing_set(mapping.missing_values, rule.get("missing"))
    if "parts" in rule:
        values, shown, where = _date_from_parts(extract, name, rule, missing, problems, notes, done)
    else:
        shown, where = _rule_text(extract, name, rule, missing, problems)
        values = _nothing(spec.kind, extract.n) if shown is None else _convert(shown, spec.kind, rule, where,
                                                                                problems)
    if shown is None:
        return values
    if rule.get("out_of_range") == "missing":
        values = _out_of_range_to_missing(values, shown, spec, where, notes)
    if spec.kind == "integer":
        values = _whole_numbers(values, shown, where, problems)
    return values


def _missing_set(everywhere: tuple[str, ...], here) -> frozenset[str]:
    """The text meaning "not known" in one column: the extract's own, and the rule's."""
    return frozenset(everywhere) | frozenset(str(v) for v in here or ())


def _nothing(kind: str, n: int) -> np.ndarray:
    """A column of missing values of a kind: what a rule whose source is absent gives."""
    if kind in DATE_KINDS:
        return np.full(n, np.datetime64("NaT"), dtype="datetime64[s]")
    if kind in NUMBER_KINDS:
        return np.full(n, np.nan)
    return np.full(n, None, dtype=object)


def _rule_text(extract: _Extract, name: str, rule: dict, missing: frozenset[str],
               problems: list[MappingProblem]) -> tuple[np.ndarray | None, _Where]:
    """The source text a column, constant or join rule gives, missing values as None."""
    if "value" in rule:
        constant = None if rule["value"] is None else str(rule["value"])
        return np.full(extract.n, constant, dtype=object), _Where(name, name, ())
    columns = _rule_columns(rule)
    where = _Where(f"{name} (from {', '.join(columns)})", name, columns)
    key = "column" if "column" in rule else "join"
    present = [_has(extract, c, _Where(f"{name}.{key}", name, (c,)), problems) for c in columns]
    if not all(present):
        return None, where
    texts = [_known(extract.text[c], missing) for c in columns]
    if key == "column":
        return texts[0], where
    separator = str(rule.get("separator", "-"))
    joined = [None if None in row else separator.join(row) for row in zip(*texts)]
    return np.array(joined, dtype=object), where


def _has(extract: _Extract, column: str, where: _Where, problems: list[MappingProblem]) -> bool:
    """Whether the source has the column; if not, a problem naming the closest columns it has."""
    if column in extract.text:
        return True
    close = difflib.get_close_matches(column, list(extract.names), n=3)
    hint = f"; closest: {', '.join(close)}" if close else f"; the extract has: {', '.join(extract.names)}"
    problems.append(MappingProblem(where.label, f"source column {column!r} is not in the extract{hint}",
                                   source=(column,), target=where.target))
    return False


def _known(text: np.ndarray, missing: frozenset[str]) -> np.ndarray:
    """The text with every value that means "not known" as None."""
    if not missing:
        return text
    return np.array([None if v in missing else v for v in text], dtype=object)


def _convert(text: np.ndarray, kind: str, rule: dict, where: _Where, problems: list[MappingProblem]) -> np.ndarray:
    """Source text to the field's kind, through the rule's value map, truth table, format or scale."""
    if "values" in rule:
        table = {str(k): None if v is None else str(v) for k, v in rule["values"].items()}
        text = _lookup(text, table, where, UNMAPPED, problems)
    if kind == "boolean":
        return _truth(text, rule, where, problems)
    if kind in DATE_KINDS:
        return _dates(text, rule.get("format"), where, problems)
    if kind in NUMBER_KINDS:
        return _numbers(text, where, problems) * float(rule.get("scale", 1))
    return text


def _lookup(text: np.ndarray, table: dict, where: _Where, message: str, problems: list[MappingProblem],
            keys: np.ndarray | None = None) -> np.ndarray:
    """Each value through a table (by `keys` if given); values the table lacks are reported."""
    keys = text if keys is None else keys
    mapped = np.array([None if k is None else table.get(k) for k in keys], dtype=object)
    _report(np.array([k is not None and k not in table for k in keys], dtype=bool), text, where, message, problems)
    return mapped


def _truth(text: np.ndarray, rule: dict, where: _Where, problems: list[MappingProblem]) -> np.ndarray:
    """Yes/no from the rule's true_values and false_values, or from true/false/1/0 when it gives none."""
    truth = ({str(v): True for v in rule.get("true_values", ())}
             | {str(v): False for v in rule.get("false_values", ())})
    if truth:
        return _lookup(text, truth, where, UNMAPPED, problems)
    keys = np.array([None if v is None else v.strip().lower() for v in text], dtype=object)
    return _lookup(text, TRUTH_WORDS, where, "is not true or false (say which values are, with true_values and "
                                       "false_values)", problems, keys)


def _numbers(text: np.ndarray, where: _Where, problems: list[MappingProblem]) -> np.ndarray:
    """Text read as numbers, as pandas reads them; text that is no number is reported."""
    numbers = np.asarray(pd.to_numeric(text, errors="coerce"), dtype="float64")
    _report(pd.notna(text) & np.isnan(numbers), text, where, NOT_A_NUMBER, problems)
    return numbers


def _dates(text: np.ndarray, written: str | None, where: _Where, problems: list[MappingProblem]) -> np.ndarray:
    """Dates to the second, naive UTC (an ISO 8601 offset is converted, as the canonical validator does)."""
    parsed = pd.to_datetime(text, format=written or "ISO8601", errors="coerce", utc=True)
    values = parsed.tz_localize(None).astype("datetime64[s]").to_numpy()
    _report(pd.notna(text) & np.isnat(values), text, where,
            f"does not parse as a date with format {written or 'ISO8601'!r}", problems)
    return values


def _whole_numbers(numbers: np.ndarray, shown: np.ndarray, where: _Where,
                   problems: list[MappingProblem]) -> np.ndarray:
    """Counts and hours: fractions, and numbers too large to count exactly, are reported."""
    with np.errstate(invalid="ignore"):
        fractional = ~np.isnan(numbers) & (numbers % 1 != 0)
    huge = ~fractional & (np.abs(np.nan_to_num(numbers)) > LARGEST_EXACT_INTEGER)
    _report(fractional, shown, where, "is not a whole number", problems)
    _report(huge, shown, where, "is far too large", problems)
    return np.where(fractional | huge, np.nan, numbers)


def _out_of_range_to_missing(values: np.ndarray, shown: np.ndarray, spec: ClaimField, where: _Where,
                             notes: list[str] | None) -> np.ndarray:
    """Values outside the canonical range set missing, as `out_of_range: missing` asks, and counted."""
    if spec.kind in DATE_KINDS:
        outside = (values < np.datetime64(EARLIEST_DATE)) | (values > np.datetime64(LATEST_DATE))
        span = f"{EARLIEST_DATE} to {LATEST_DATE}"
    else:
        low = -np.inf if spec.minimum is None else spec.minimum
        high = np.inf if spec.maximum is None else spec.maximum
        with np.errstate(invalid="ignore"):
            outside = ((values <= low) if spec.exclusive_minimum else (values < low)) | (values > high)
        span = f"{low:g}{' (exclusive)' if spec.exclusive_minimum else ''} to {high:g}"
    if not outside.any():
        return values
    count = int(outside.sum())
    if notes is not None:
        notes.append(str(MappingProblem(where.label, f"{count} values outside {span} set missing",
                                        _offending(shown, outside), count)))
    return np.where(outside, np.datetime64("NaT") if spec.kind in DATE_KINDS else np.nan, values)


def _map_extra(extract: _Extract, column: str, numeric: bool, mapping: DatasetMapping,
               problems: list[MappingProblem]) -> np.ndarray:
    """One passed-through column: its own missing values, value map or bands, then text or number."""
    rule = mapping.extra_rules.get(column, {})
    listed = "numeric" if numeric else "categorical"
    if not _has(extract, column, _Where(f"extra_features.{listed} {column}", extra_name(column), (column,)),
                problems):
        return _nothing("number" if numeric else "string", extract.n)
    where = _Where(f"extra_features {column}", extra_name(column), (column,))
    text = _known(extract.text[column], _missing_set(mapping.missing_values, rule.get("missing")))
    if "values" in rule:
        table = {str(k): None if v is None else str(v) for k, v in rule["values"].items()}
        text = _lookup(text, table, where, UNMAPPED, problems)
    if "bands" in rule:
        text = _lookup(text, {str(band): str(i) for i, band in enumerate(rule["bands"])}, where, NOT_A_BAND,
                       problems)
    return _numbers(text, where, problems) if numeric else text


# --- dates from parts

def _date_from_parts(extract: _Extract, name: str, rule: dict, missing: frozenset[str],
                     problems: list[MappingProblem], notes: list[str] | None,
                     done: dict) -> tuple[np.ndarray, np.ndarray | None, _Where]:
    """A date from year, month, day or week-of-month and weekday columns: (dates, their text, where)."""
    parts = rule["parts"]
    where = _Where(f"{name} (from parts)", name, tuple(parts.values()))
    if not all([_has(extract, c, _Where(f"{name}.parts", name, (c,)), problems) for c in parts.values()]):
        return _nothing("date", extract.n), None, where
    texts = {k: _known(extract.text[c], missing) for k, c in parts.items()}
    numbers = {k: _part_numbers(k, texts[k], _Where(f"{name} ({k} from {c})", name, (c,)), problems)
               for k, c in parts.items()}
    shown = np.array(["-".join("" if t is None else t for t in row) for row in zip(*texts.values())], dtype=object)
    complete = np.logical_and.reduce([~np.isnan(v) for v in numbers.values()])
    dates, valid = _compose(numbers, rule.get("week_starts"))
    if "week_of_month" in parts:
        _report(complete & ~valid, shown, where, NOT_A_DATE, problems)
        _report(valid & np.isnat(dates), shown, where, "has no such weekday in that week of the month", problems)
    else:
        _report(complete & np.isnat(dates), shown, where, NOT_A_DATE, problems)
    if "not_before" in rule:
        dates = _not_before(dates, numbers, rule, done[rule["not_before"]], shown, where, problems, notes)
    return dates, shown, where


def _part_numbers(part: str, text: np.ndarray, where: _Where, problems: list[MappingProblem]) -> np.ndarray:
    """A date part as numbers; months and weekdays may also be written as names."""
    names = {"month": MONTH_NAMES, "weekday": WEEKDAY_NAMES}.get(part)
    if names is None:
        return _numbers(text, where, problems)
    named = np.array([np.nan if v is None else names.get(v.strip().lower(), np.nan) for v in text], dtype=float)
    numbers = np.where(np.isnan(named), np.asarray(pd.to_numeric(text, errors="coerce"), dtype="float64"), named)
    example = "1-12 or a name such as Jan" if part == "month" else "1-7 from Monday, or a name such as Mon"
    _report(pd.notna(text) & np.isnan(numbers), text, where, f"is not a {part} ({example})", problems)
    return numbers


def _compose(parts: dict[str, np.ndarray], week_starts: str | None) -> tuple[np.ndarray, np.ndarray]:
    """(dates, which rows had parts in range): NaT where the parts name no day of the calendar."""
    ones = np.ones(len(parts["year"]))
    year, month = parts["year"], parts.get("month", ones)
    valid = _whole_within(year, 1, 9999) & _whole_within(month, 1, 12)
    if "day" in parts:
        valid &= _whole_within(parts["day"], 1, 31)
    if "week_of_month" in parts:
        valid &= _whole_within(parts["week_of_month"], 1, 6 if week_starts else 5)
        valid &= _whole_within(parts["weekday"], 1, 7)
    months = (np.where(valid, year, 1970).astype(np.int64) - 1970) * 12 + np.where(valid, month, 1).astype(np.int64) - 1
    first = months.astype("datetime64[M]").astype("datetime64[D]")
    length = ((months + 1).astype("datetime64[M]").astype("datetime64[D]") - first).astype(np.int64)
    offset = np.zeros(len(year), dtype=np.int64)
    if "day" in parts:
        offset = np.where(valid, parts["day"], 1).astype(np.int64) - 1
    if "week_of_month" in parts:
        week = np.where(valid, parts["week_of_month"], 1).astype(np.int64)
        weekday = np.where(valid, parts["weekday"], 1).astype(np.int64) - 1
        offset = _week_offset(first, week, weekday, week_starts)
    fits = valid & (offset >= 0) & (offset < length)
    dates = (first + np.where(fits, offset, 0).astype("timedelta64[D]")).astype("datetime64[s]")
    return np.where(fits, dates, np.datetime64("NaT")), valid


def _whole_within(values: np.ndarray, low: int, high: int) -> np.ndarray:
    """Which values are whole numbers from low to high: date parts that can name a calendar day."""
    with np.errstate(invalid="ignore"):
        return ~np.isnan(values) & (values % 1 == 0) & (values >= low) & (values <= high)


def _week_offset(first: np.ndarray, week: np.ndarray, weekday: np.ndarray, week_starts: str | None) -> np.ndarray:
    """Days from the 1st to the given weekday (Monday = 0) of week N of the month."""
    first_weekday = (first.astype(np.int64) + 3) % 7  # 1970-01-01, day 0, was a Thursday
    if week_starts is None:  # week N is days 7N-6..7N
        start = 7 * (week - 1)
        return start + (weekday - first_weekday - start) % 7
    begins = WEEK_STARTS[week_starts]  # week 1 is the calendar week that holds the 1st
    return -((first_weekday - begins) % 7) + 7 * (week - 1) + (weekday - begins) % 7


def _not_before(dates: np.ndarray, parts: dict[str, np.ndarray], rule: dict, reference: np.ndarray,
                shown: np.ndarray, where: _Where, problems: list[MappingProblem],
                notes: list[str] | None) -> np.ndarray:
    """Dates before the named field's, compared at this rule's precision, composed again a year later."""
    unit = {"year": "Y", "month": "M"}.get(PART_SETS[frozenset(rule["parts"])], "D")
    earlier = dates.astype(f"datetime64[{unit}]") < reference.astype(f"datetime64[{unit}]")
    if not earlier.any():
        return dates
    later, _ = _compose(parts | {"year": parts["year"] + 1}, rule.get("week_starts"))
    _report(earlier & np.isnat(later), shown, where,
            f"is before {rule['not_before']} and is no real date a year later", problems)
    moved = earlier & ~np.isnat(later)
    if notes is not None and moved.any():
        notes.append(str(MappingProblem(where.label, f"{int(moved.sum())} dates before {rule['not_before']} "
                                                     "moved one year later", _offending(shown, moved),
                                        int(moved.sum()))))
    return np.where(earlier, later, dates)


# --- reporting

def _report(bad: np.ndarray, shown: np.ndarray, where: _Where, message: str, problems: list[MappingProblem]) -> None:
    """One problem for every row in `bad`: the commonest offending values, the count and the rows."""
    if bad.any():
        problems.append(MappingProblem(where.label, message, _offending(shown, bad), int(bad.sum()), where.source,
                                       tuple(np.flatnonzero(bad).tolist()), where.target))


def _offending(shown: np.ndarray, bad: np.ndarray) -> tuple[str, ...]:
    """The commonest offending values first, as many as a report quotes."""
    counts = pd.Series(shown[bad]).value_counts()
    return tuple(str(v) for v in counts.index[:SHOWN_VALUES])
