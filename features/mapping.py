"""Dataset mappings: an insurer's own extract to canonical claims, declared in YAML, not code.

A mapping file says, per canonical field, where its value comes from:

    fields:
      claim_id:          {column: policy_number}              # rename
      line_of_business:  {value: auto}                        # a constant for the whole extract
      loss_type:         {column: incident_type, values: {Vehicle Theft: theft, ...}}   # every value mapped
      police_report:     {column: police_report_available, true_values: ["YES"], false_values: ["NO"]}
      loss_date:         {column: incident_date, format: "%m/%d/%Y"}
      loss_date:         {parts: {year: yr, month: mo, day: dy}}                     # from several columns
      policy_id:         {join: [branch, policy_no], separator: "-"}                 # text from several
      claim_amount:      {column: amount_thousands, scale: 1000}
    labels:
      is_fraud:          {column: fraud_reported, true_values: ["Y"], false_values: ["N"]}
    missing_values: ["?", ""]          # source text that means "not known", for every column
    extra_features: {categorical: [incident_severity], numeric: [umbrella_limit]}
    training: {num_leaves: 3}          # model-shape settings suited to this extract (optional)

Every rule may also say `missing: [...]` for values that mean "not known" in that column only.
Quote source values in YAML ("YES", "NO", "on"): unquoted, YAML reads them as true/false, and
the mapping refuses them rather than guess.
Canonical fields a mapping does not name are absent: the features that need them are left out.
All problems (unknown columns, unmapped values, unparseable dates or numbers) are collected and
reported together, with the offending values and their counts, before anything is trained.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from features.schema import FIELDS_BY_NAME, LABEL_FIELDS

RULE_KEYS = {"column", "value", "values", "true_values", "false_values", "format", "parts", "join", "separator", "scale",
             "missing"}
TOP_KEYS = {"name", "description", "fields", "labels", "missing_values", "extra_features", "training", "read"}
SHOWN_VALUES = 10  # offending values quoted per problem


@dataclass(frozen=True)
class MappingProblem:
    column: str
    message: str
    values: tuple[str, ...] = ()
    count: int = 0

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

    @property
    def extra_columns(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The model-facing names of the passed-through columns: (categorical, numeric)."""
        return (tuple(extra_name(c) for c in self.extra_categorical), tuple(extra_name(c) for c in self.extra_numeric))


def extra_name(column: str) -> str:
    """`extra_` + the source column in snake case, so it cannot collide with a canonical field."""
    return "extra_" + re.sub(r"[^0-9a-z]+", "_", column.strip().lower()).strip("_")


def load_mapping(path: str | Path) -> DatasetMapping:
    """Read and check a mapping file's structure; every mistake is named by its key path."""
    path = Path(path)
    if not path.exists():
        raise MappingError([MappingProblem(str(path), "no such mapping file")])
    raw = yaml.safe_load(path.read_text()) or {}
    problems = _structure_problems(raw)
    if problems:
        raise MappingError(problems, str(path))
    extras = raw.get("extra_features") or {}
    return DatasetMapping(
        name=str(raw.get("name", path.stem)), description=str(raw.get("description", "")),
        fields=raw["fields"], labels=raw.get("labels") or {},
        missing_values=tuple(str(v) for v in raw.get("missing_values") or ()),
        extra_categorical=tuple(extras.get("categorical") or ()), extra_numeric=tuple(extras.get("numeric") or ()),
        training=dict(raw.get("training") or {}), read=dict(raw.get("read") or {}))


def _structure_problems(raw) -> list[MappingProblem]:
    if not isinstance(raw, dict):
        return [MappingProblem("(top)", "a mapping must be a YAML mapping of keys")]
    problems = [MappingProblem(k, f"unknown key; expected one of {', '.join(sorted(TOP_KEYS))}")
                for k in raw if k not in TOP_KEYS]
    if not isinstance(raw.get("fields"), dict) or not raw["fields"]:
        problems.append(MappingProblem("fields", "is required: a mapping of canonical field -> rule"))
        return problems
    for section, known in (("fields", FIELDS_BY_NAME), ("labels", dict.fromkeys(LABEL_FIELDS))):
        for name, rule in (raw.get(section) or {}).items():
            where = f"{section}.{name}"
            if name not in known:
                close = difflib.get_close_matches(str(name), list(known), n=1)
                hint = f"; did you mean {close[0]}?" if close else ""
                problems.append(MappingProblem(where, f"is not a canonical {section[:-1]}{hint}"))
            elif not isinstance(rule, dict):
                problems.append(MappingProblem(where, "must be a mapping such as {column: source_column}"))
            else:
                problems += [MappingProblem(f"{where}.{k}", "unknown rule key; expected one of "
                                            + ", ".join(sorted(RULE_KEYS))) for k in rule if k not in RULE_KEYS]
                problems += _unquoted(where, rule)
                sources = [k for k in ("column", "value", "parts", "join") if k in rule]
                if len(sources) != 1:
                    problems.append(MappingProblem(where, "needs exactly one of column, value, parts or join"))
    extras = raw.get("extra_features") or {}
    if not isinstance(extras, dict) or set(extras) - {"categorical", "numeric"}:
        problems.append(MappingProblem("extra_features", "must have only the lists categorical and numeric"))
    return problems


def _unquoted(where: str, rule: dict) -> list[MappingProblem]:
    """Source values YAML turned into booleans or numbers: the author must quote them."""
    found = [k for k in (rule.get("values") or {}) if not isinstance(k, str)]
    for key in ("true_values", "false_values", "missing", "join"):
        found += [v for v in (rule.get(key) or []) if not isinstance(v, str)]
    found += [v for v in (rule.get("parts") or {}).values() if not isinstance(v, str)]
    if "column" in rule and not isinstance(rule["column"], str):
        found.append(rule["column"])
    if not found:
        return []
    return [MappingProblem(where, "quote source values and column names (YAML reads unquoted yes/no/on/off and "
                                  "numbers as other types)",
                           tuple(str(v) for v in found))]


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


def apply_mapping(raw: pd.DataFrame, mapping: DatasetMapping) -> pd.DataFrame:
    """Canonical claims, labels and extra features from the extract; every problem raised together."""
    problems: list[MappingProblem] = []
    out: dict[str, pd.Series] = {}
    for name, rule in mapping.fields.items():
        out[name] = _apply_rule(raw, name, rule, FIELDS_BY_NAME[name].kind, mapping, problems)
    for name, rule in mapping.labels.items():
        out[name] = _apply_rule(raw, name, rule, "boolean", mapping, problems)
    for column in mapping.extra_categorical:
        if _has(raw, column, f"extra_features.categorical {column}", problems):
            out[extra_name(column)] = _missing_to_na(raw[column], mapping.missing_values).astype("str")
    for column in mapping.extra_numeric:
        if _has(raw, column, f"extra_features.numeric {column}", problems):
            out[extra_name(column)] = _number(raw[column], mapping.missing_values, f"extra_features {column}",
                                              problems)
    if problems:
        raise MappingError(problems, f"mapping {mapping.name}")
    return pd.DataFrame(out, index=raw.index).reset_index(drop=True)


def _has(raw: pd.DataFrame, column: str, where: str, problems: list[MappingProblem]) -> bool:
    if column in raw.columns:
        return True
    close = difflib.get_close_matches(column, [str(c) for c in raw.columns], n=3)
    hint = f"; closest: {', '.join(close)}" if close else f"; the extract has: {', '.join(map(str, raw.columns))}"
    problems.append(MappingProblem(where, f"source column {column!r} is not in the extract{hint}"))
    return False


def _missing_to_na(values: pd.Series, missing: tuple[str, ...]) -> pd.Series:
    text = values.astype("str")
    return text.mask(text.isin(missing) | values.isna())


def _apply_rule(raw: pd.DataFrame, name: str, rule: dict, kind: str, mapping: DatasetMapping,
                problems: list[MappingProblem]) -> pd.Series:
    missing = mapping.missing_values + tuple(str(v) for v in rule.get("missing", ()))
    n = len(raw)
    where = f"{name}"
    if "value" in rule:
        values = pd.Series([rule["value"]] * n, index=raw.index, dtype=object)
    elif "parts" in rule:
        return _date_from_parts(raw, name, rule["parts"], missing, problems)
    elif "join" in rule:
        if not all(_has(raw, c, f"{where}.join", problems) for c in rule["join"]):
            return pd.Series([None] * n, index=raw.index, dtype=object)
        parts = [_missing_to_na(raw[c], missing) for c in rule["join"]]
        joined = parts[0].str.cat(parts[1:], sep=str(rule.get("separator", "-")))
        return joined.astype("str")
    else:
        if not _has(raw, rule["column"], f"{where}.column", problems):
            return pd.Series([None] * n, index=raw.index, dtype=object)
        values = _missing_to_na(raw[rule["column"]], missing)
        where = f"{name} (from {rule['column']})"
    return _convert(values, kind, rule, where, problems)


def _convert(values: pd.Series, kind: str, rule: dict, where: str, problems: list[MappingProblem]) -> pd.Series:
    if "values" in rule:
        table = {str(k): v for k, v in rule["values"].items()}
        values = _lookup(values, table, where, problems)
    if "true_values" in rule or "false_values" in rule or kind == "boolean":
        truth = ({str(v): True for v in rule.get("true_values", ())}
                 | {str(v): False for v in rule.get("false_values", ())})
        return _lookup(values, truth, where, problems).astype("boolean") if truth else values.astype("boolean")
    if kind in ("date", "datetime"):
        text = values.astype("str")
        parsed = pd.to_datetime(text, format=rule.get("format", "ISO8601"), errors="coerce")
        _report(text.notna() & parsed.isna(), text, where,
                f"does not parse as a date with format {rule.get('format', 'ISO8601')!r}", problems)
        return parsed.astype("datetime64[s]")
    if kind in ("number", "integer"):
        numbers = _number(values, (), where, problems) * float(rule.get("scale", 1))
        if kind == "integer":
            fractional = numbers.notna() & (numbers % 1 != 0)
            _report(fractional, values.astype("str"), where, "is not a whole number", problems)
            return numbers.where(~fractional).astype("Int64")
        return numbers
    return values.astype("str")


def _lookup(values: pd.Series, table: dict, where: str, problems: list[MappingProblem]) -> pd.Series:
    text = values.astype("str")
    mapped = text.map(table)
    _report(text.notna() & ~text.isin(list(table)), text, where, "has values the mapping does not map", problems)
    return mapped


def _number(values: pd.Series, missing: tuple[str, ...], where: str, problems: list[MappingProblem]) -> pd.Series:
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        return values.astype("float64")
    text = _missing_to_na(values, missing) if missing else values.astype("str")
    numbers = pd.to_numeric(text, errors="coerce").astype("float64")
    _report(text.notna() & numbers.isna(), text, where, "is not a number", problems)
    return numbers


def _date_from_parts(raw: pd.DataFrame, name: str, parts: dict, missing: tuple[str, ...],
                     problems: list[MappingProblem]) -> pd.Series:
    if set(parts) != {"year", "month", "day"}:
        problems.append(MappingProblem(f"{name}.parts", "needs exactly year, month and day"))
        return pd.Series([pd.NaT] * len(raw), index=raw.index, dtype="datetime64[s]")
    if not all(_has(raw, c, f"{name}.parts", problems) for c in parts.values()):
        return pd.Series([pd.NaT] * len(raw), index=raw.index, dtype="datetime64[s]")
    numbers = {k: _number(raw[c], missing, f"{name} ({k} from {c})", problems) for k, c in parts.items()}
    frame = pd.DataFrame(numbers)
    parsed = pd.to_datetime(frame, errors="coerce")
    text = raw[list(parts.values())].astype("str").agg("-".join, axis=1)
    _report(frame.notna().all(axis=1) & parsed.isna(), text, f"{name} (from parts)", "is not a real date", problems)
    return parsed.astype("datetime64[s]")


def _report(bad: pd.Series, values: pd.Series, where: str, message: str, problems: list[MappingProblem]) -> None:
    bad = bad.to_numpy(dtype=bool, na_value=False)
    if bad.any():
        offending = pd.Series(values.to_numpy(dtype=object)[bad]).value_counts()
        problems.append(MappingProblem(where, message, tuple(str(v) for v in offending.index[:SHOWN_VALUES]),
                                       int(bad.sum())))
