"""Dataset mappings: an extract's own conventions to canonical claims, every problem reported."""

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from features.mapping import (
    NOT_EXTRACT_COLUMN,
    MappingError,
    apply_mapping,
    load_mapping,
    map_records,
    parse_mapping,
    read_source,
)
from features.schema import CLAIM_FIELDS, FIELDS_BY_NAME
from features.validation import validate_claims

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "mappings" / "insurance_claims.yaml"
EXTRACT = ROOT / "tests" / "data" / "insurance_claims.csv"


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def mapped():
    mapping = load_mapping(SHIPPED)
    return apply_mapping(read_source(EXTRACT, mapping), mapping)


def test_shipped_mapping_on_the_public_extract(mapped):
    assert len(mapped) == 1000
    assert {"claim_id", "policy_start_date", "loss_date", "claim_amount", "police_report"} <= set(mapped.columns)
    assert not {"report_date", "customer_since", "paid_as_filed", "payee_account"} & set(mapped.columns)
    assert mapped["is_fraud"].mean() == pytest.approx(0.247)
    assert pd.api.types.is_datetime64_any_dtype(mapped["loss_date"])
    assert str(mapped["loss_hour"].dtype) == "Int64" and str(mapped["police_report"].dtype) == "boolean"
    first = mapped.iloc[0]  # 521585: bound 10/17/2014, incident 1/25/2015, YES police report
    assert first["claim_id"] == "521585" and first["policy_start_date"] == pd.Timestamp("2014-10-17")
    assert first["loss_date"] == pd.Timestamp("2015-01-25") and bool(first["police_report"]) is True
    assert pd.isna(mapped["police_report"].iloc[1])  # "?" means unknown
    assert set(mapped["loss_type"]) == {"collision", "theft", "parked_car"}


def test_the_word_none_is_a_category_not_a_missing_value(mapped):
    assert (mapped["extra_authorities_contacted"] == "None").sum() == 91
    assert mapped["extra_authorities_contacted"].notna().all()


def test_mapped_claims_pass_validation_against_the_fields_they_have(mapped):
    fields = [f for f in CLAIM_FIELDS if f.name in mapped.columns]
    report = validate_claims(mapped, fields=fields, labels=("is_fraud",))
    assert report.ok, report.summary()


def test_every_problem_is_reported_together_with_values_and_counts(tmp_path):
    raw = pd.DataFrame({"id": ["1", "2", "3", "4"], "kind": ["A", "B", "Z", "Z"], "when": ["01.02.2024", "x", "3.3.2024", "bad"],
                        "amt": ["1", "2", "lots", "4"], "fraud": ["Y", "N", "N", "maybe"]})
    mapping = load_mapping(write(tmp_path, """
fields:
  claim_id: {column: id}
  loss_type: {column: kind, values: {"A": theft, "B": glass}}
  loss_date: {column: when, format: "%d.%m.%Y"}
  claim_amount: {column: amt}
  region: {column: area}
labels:
  is_fraud: {column: fraud, true_values: ["Y"], false_values: ["N"]}
"""))
    with pytest.raises(MappingError) as caught:
        apply_mapping(raw, mapping)
    found = {(p.column, p.message): (p.values, p.count) for p in caught.value.problems}
    assert found[("loss_type (from kind)", "has values the mapping does not map")] == (("Z",), 2)
    assert found[("loss_date (from when)", "does not parse as a date with format '%d.%m.%Y'")][1] == 2
    assert found[("claim_amount (from amt)", "is not a number")] == (("lots",), 1)
    assert found[("is_fraud (from fraud)", "has values the mapping does not map")] == (("maybe",), 1)
    assert any(p.column == "region.column" and "'area' is not in the extract" in p.message
               for p in caught.value.problems)
    assert "5 problem(s)" in str(caught.value)


@pytest.mark.parametrize("text, where, message", [
    ("fields:\n  claim_ident: {column: a}\n", "fields.claim_ident", "did you mean claim_id?"),
    ("fields:\n  claim_id: {col: a}\n", "fields.claim_id.col", "unknown rule key"),
    ("fields:\n  claim_id: {column: a, value: b}\n", "fields.claim_id", "exactly one of"),
    ("fields:\n  police_report: {column: p, true_values: [yes]}\n", "fields.police_report", "quote source values"),
    ("fieldz: {}\n", "fieldz", "unknown key"),
    ("fields:\n  claim_id: {join: [branch, no]}\n", "fields.claim_id", "quote source values and column names"),
    ("labels:\n  fraud: {column: f}\nfields:\n  claim_id: {column: a}\n", "labels.fraud", "not a canonical label"),
])
def test_structural_mistakes_name_the_key(tmp_path, text, where, message):
    _problems_of(lambda: load_mapping(write(tmp_path, text)), where, message)


def _problems_of(load, where: str, message: str) -> list:
    """The problems `load` raises in one MappingError; one of them at `where`, saying `message`."""
    with pytest.raises(MappingError) as caught:
        load()
    assert any(p.column == where and message in p.message for p in caught.value.problems), caught.value
    return caught.value.problems


def test_constants_parts_joins_scaling_and_booleans(tmp_path):
    raw = pd.DataFrame({"branch": ["N", "S"], "no": ["7", "9"], "y": ["2024", "2023"], "m": ["2", "12"],
                        "d": ["29", "31"], "k": ["1.5", "?"], "pr": ["J", "N"]})
    mapping = load_mapping(write(tmp_path, """
missing_values: ["?"]
fields:
  claim_id: {join: [branch, "no"], separator: "/"}
  line_of_business: {value: property}
  loss_date: {parts: {year: y, month: m, day: d}}
  claim_amount: {column: k, scale: 1000}
  police_report: {column: pr, true_values: ["J"], false_values: ["N"]}
"""))
    out = apply_mapping(raw, mapping)
    assert out["claim_id"].tolist() == ["N/7", "S/9"]
    assert out["line_of_business"].tolist() == ["property", "property"]
    assert out["loss_date"].tolist() == [pd.Timestamp("2024-02-29"), pd.Timestamp("2023-12-31")]
    assert out["claim_amount"].iloc[0] == 1500.0 and pd.isna(out["claim_amount"].iloc[1])
    assert out["police_report"].tolist() == [True, False]


def test_impossible_date_parts_are_reported(tmp_path):
    raw = pd.DataFrame({"y": ["2023"], "m": ["2"], "d": ["30"]})
    mapping = load_mapping(write(tmp_path, "fields:\n  loss_date: {parts: {year: y, month: m, day: d}}\n"))
    with pytest.raises(MappingError, match="is not a real date"):
        apply_mapping(raw, mapping)


def mapping_of(text: str):
    return parse_mapping(yaml.safe_load(text))


def day(text: str) -> pd.Timestamp:
    return pd.Timestamp(text)


# --- the shipped mapping's output, pinned


def test_shipped_mapping_output_is_pinned_to_the_last_byte(mapped):
    # Digest of the mapped frame as CSV, taken before the mapping code was reworked (2026-12-01).
    digest = hashlib.sha256(mapped.to_csv(index=False).encode()).hexdigest()
    assert digest == "dc9a8b518e631e26490b71ea4703d2707670d50306a0aa8dc1a4d8d9a74f9a41"
    assert load_mapping(SHIPPED).field_precision == {"policy_start_date": "day", "loss_date": "day"}


# --- dates from parts: names, coarser dates, week of month, precision


def test_month_names_and_coarser_dates_from_parts():
    raw = pd.DataFrame({"y": ["2024", "2023", "2022"], "m": ["Jan", "february", "12"], "since": ["2010", "1999", "?"]})
    mapping = mapping_of("""
missing_values: ["?"]
fields:
  loss_date: {parts: {year: y, month: m}}
  customer_since: {parts: {year: since}}
""")
    out = apply_mapping(raw, mapping)
    assert out["loss_date"].tolist() == [day("2024-01-01"), day("2023-02-01"), day("2022-12-01")]
    assert out["customer_since"].tolist()[:2] == [day("2010-01-01"), day("1999-01-01")]
    assert pd.isna(out["customer_since"].iloc[2])
    assert mapping.field_precision == {"loss_date": "month", "customer_since": "year"}


WEEKS = pd.DataFrame({"y": ["2024"] * 4, "m": ["Mar", "3", "march", "MAR"], "w": ["1", "2", "2", "1"],
                      "d": ["Sun", "sunday", "Mon", "6"]})  # March 2024 began on a Friday; 6 is Saturday


@pytest.mark.parametrize("week_starts, rows, days", [
    ("", slice(None), [3, 10, 11, 2]),                 # week N is days 7N-6..7N
    ("week_starts: monday", slice(None), [3, 10, 4, 2]),  # week 1 is Mon 26 Feb - Sun 3 Mar
    ("week_starts: sunday", slice(1, None), [3, 4, 2]),   # week 1 is Sun 25 Feb - Sat 2 Mar
])
def test_week_of_month_and_weekday_name_one_day(week_starts, rows, days):
    mapping = mapping_of(f"""
fields:
  loss_date: {{parts: {{year: y, month: m, week_of_month: w, weekday: d}}, {week_starts}}}
""".replace(", }", "}"))
    out = apply_mapping(WEEKS.iloc[rows], mapping)
    assert out["loss_date"].tolist() == [day(f"2024-03-{d:02d}") for d in days]
    assert mapping.field_precision == {"loss_date": "week"}


def test_a_week_and_weekday_the_month_does_not_have_is_reported_with_columns_values_and_rows():
    raw = pd.DataFrame({"y": ["2024", "2023", "2024", "2024", "2024"], "m": ["Mar", "Feb", "Mrz", "3", "3"],
                        "w": ["5", "5", "1", "6", "1"], "d": ["Mon", "Wed", "Mon", "Mon", "Mon"]})
    mapping = mapping_of("fields:\n  loss_date: {parts: {year: y, month: m, week_of_month: w, weekday: d}}\n")
    with pytest.raises(MappingError) as caught:
        apply_mapping(raw, mapping)
    found = {p.message: p for p in caught.value.problems}
    no_such = found["has no such weekday in that week of the month"]
    assert (no_such.column, no_such.values, no_such.count) == ("loss_date (from parts)", ("2024-Mar-5-Mon",
                                                                                          "2023-Feb-5-Wed"), 2)
    assert no_such.source == ("y", "m", "w", "d") and no_such.rows == (0, 1)
    assert found["is not a real date"].values == ("2024-3-6-Mon",)  # blocks end at week 5
    month = found["is not a month (1-12 or a name such as Jan)"]
    assert (month.column, month.values, month.source, month.rows) == ("loss_date (month from m)", ("Mrz",), ("m",),
                                                                      (2,))


def test_not_before_composes_the_date_again_a_year_later_and_notes_it():
    # The extract gives the loss year only: a report in January of a December loss is next year's.
    raw = pd.DataFrame({"ly": ["2023", "2023", "2023"], "lm": ["12", "12", "6"], "ld": ["28", "5", "10"],
                        "rm": ["Jan", "Dec", "Jun"], "rw": ["1", "3", "2"], "rd": ["Tue", "Mon", "Mon"]})
    mapping = mapping_of("""
fields:
  report_date: {parts: {year: ly, month: rm, week_of_month: rw, weekday: rd}, not_before: loss_date}
  loss_date: {parts: {year: ly, month: lm, day: ld}}
""")
    notes: list[str] = []
    out = apply_mapping(raw, mapping, notes)
    # 2023: Tuesday 3 January; 2024: Tuesday 2 January (composed again, not the same day plus a year).
    assert out["report_date"].tolist() == [day("2024-01-02"), day("2023-12-18"), day("2023-06-12")]
    assert list(out.columns) == ["report_date", "loss_date"]
    assert notes == ["report_date (from parts): 1 dates before loss_date moved one year later: '2023-Jan-1-Tue' "
                     "(1 rows)"]


def test_not_before_compares_at_the_dates_own_precision():
    raw = pd.DataFrame({"y": ["2023", "2023"], "lm": ["3", "3"], "ld": ["20", "20"], "rm": ["3", "2"]})
    mapping = mapping_of("""
fields:
  loss_date: {parts: {year: y, month: lm, day: ld}}
  report_date: {parts: {year: y, month: rm}, not_before: loss_date}
""")
    out = apply_mapping(raw, mapping)  # March of a 20 March loss is not before it; February is
    assert out["report_date"].tolist() == [day("2023-03-01"), day("2024-02-01")]


@pytest.mark.parametrize("rule, expected", [
    ("{column: r}", "second"),                                   # ISO 8601
    ('{column: r, format: "%d.%m.%Y %H:%M"}', "second"),
    ('{column: r, format: "%d.%m.%Y %I%p"}', "second"),
    ('{column: r, format: "%Y-%m-%d"}', "day"),
    ('{column: r, format: "%Y-%m-%d 100%%H"}', "day"),           # a literal %, not an hour
    ("{column: r, precision: day}", "day"),                       # a date-only timestamp, said so
    ("{parts: {year: y, month: m}, precision: year}", "year"),
])
def test_each_date_field_gets_a_precision_inferred_from_its_rule_or_stated(rule, expected):
    mapping = mapping_of(f"fields:\n  report_date: {rule}\n  loss_date: {{column: l, format: \"%d.%m.%Y\"}}\n")
    assert mapping.field_precision == {"report_date": expected, "loss_date": "day"}


@pytest.mark.parametrize("text, where, message", [
    ('  report_date: {column: r, format: "%Y-%m-%d", precision: second}\n', "fields.report_date.precision",
     "asks for second, but this rule gives dates exact to the day only"),
    ("  loss_date: {parts: {year: y, month: m}, precision: day}\n", "fields.loss_date.precision", "asks for day"),
    ("  loss_date: {column: l, precision: hour}\n", "fields.loss_date.precision", "must be one of year, month"),
    ("  claim_amount: {column: a, precision: day}\n", "fields.claim_amount.precision", "applies to date or datetime"),
    ("  loss_date: {parts: {year: y, day: d}}\n", "fields.loss_date.parts", "needs year; year and month"),
    ("  loss_date: {parts: {year: y, month: m, day: d}, week_starts: monday}\n", "fields.loss_date.week_starts",
     "for parts with week_of_month"),
    ("  loss_date: {parts: {year: y, month: m, week_of_month: w, weekday: d}, week_starts: friday}\n",
     "fields.loss_date.week_starts", "is monday or sunday"),
    ("  report_date: {parts: {year: y, month: m}, not_before: loss_date}\n", "fields.report_date.not_before",
     "names loss_date, which this mapping does not map: map it too"),
    ("  report_date: {column: r, not_before: loss_date}\n  loss_date: {column: l}\n",
     "fields.report_date.not_before", "applies to dates built from parts"),
    ("  report_date: {parts: {year: y}, not_before: claim_amount}\n  claim_amount: {column: a}\n",
     "fields.report_date.not_before", "must name a canonical date or datetime field"),
    ("  report_date: {parts: {year: y}, not_before: loss_date}\n  loss_date: {parts: {year: y}, not_before: "
     "report_date}\n", "fields.loss_date.not_before", "goes round in a circle"),
    ("  loss_type: {parts: {year: y}}\n", "fields.loss_type.parts", "applies to date or datetime fields"),
])
def test_date_rule_mistakes_name_the_key(text, where, message):
    problems = _problems_of(lambda: mapping_of("fields:\n" + text), where, message)
    assert all(p.source == () and p.rows == () for p in problems)


# --- extra features with rules of their own


def test_extra_features_take_their_own_missing_values_value_maps_bands_and_encodings():
    raw = pd.DataFrame({"seg": ["x", "y", "?"], "chan": ["B", "A", "B"], "Age": ["0", "34", "?"],
                        "prior": ["none", "2 to 4", "more than 4"], "lvl": ["low", "high", "low"],
                        "cnt": ["0", "2", "?"]})
    mapping = mapping_of("""
missing_values: ["?"]
fields:
  claim_id: {column: seg}
extra_features:
  categorical:
    - seg
    - {column: chan, values: {"B": broker, "A": agent}, encoding: target}
  numeric:
    - {column: Age, missing: ["0"]}
    - {column: prior, bands: ["none", "1", "2 to 4", "more than 4"]}
    - {column: lvl, values: {"low": 1, "high": 3.5}}
    - cnt
""")
    out = apply_mapping(raw, mapping)
    assert out["extra_seg"].tolist()[:2] == ["x", "y"] and pd.isna(out["extra_seg"].iloc[2])
    assert out["extra_chan"].tolist() == ["broker", "agent", "broker"]
    assert out["extra_age"].isna().tolist() == [True, False, True] and out["extra_age"].iloc[1] == 34.0
    assert out["extra_prior"].tolist() == [0.0, 2.0, 3.0]
    assert out["extra_lvl"].tolist() == [1.0, 3.5, 1.0]
    assert out["extra_cnt"].tolist()[:2] == [0.0, 2.0]  # "0" is missing in Age only
    assert mapping.extra_categorical == ("seg", "chan")
    assert mapping.extra_numeric == ("Age", "prior", "lvl", "cnt")
    assert mapping.extra_columns == (("extra_seg", "extra_chan"),
                                     ("extra_age", "extra_prior", "extra_lvl", "extra_cnt"))
    assert mapping.extra_encodings == {"extra_chan": "target"}


def test_extra_values_outside_their_map_or_bands_are_reported():
    raw = pd.DataFrame({"chan": ["B", "C", "C"], "prior": ["none", "3", "1"]})
    mapping = mapping_of("""
fields:
  claim_id: {column: chan}
extra_features:
  categorical: [{column: chan, values: {"B": broker}}]
  numeric: [{column: prior, bands: ["none", "1", "2 to 4"]}]
""")
    with pytest.raises(MappingError) as caught:
        apply_mapping(raw, mapping)
    found = {p.column: p for p in caught.value.problems}
    chan, prior = found["extra_features chan"], found["extra_features prior"]
    assert (chan.message, chan.values, chan.count, chan.rows) == ("has values the mapping does not map", ("C",), 2,
                                                                  (1, 2))
    assert (chan.source, chan.target) == (("chan",), "extra_chan")
    assert (prior.message, prior.values, prior.rows) == ("is not one of the bands", ("3",), (1,))


@pytest.mark.parametrize("extras, where, message", [
    ("{categorical: [{column: c, bands: [a, b]}]}", "extra_features.categorical.c.bands", "is not a key"),
    ("{numeric: [{column: c, encoding: target}]}", "extra_features.numeric.c.encoding", "is not a key"),
    ("{categorical: [{column: c, encoding: onehot}]}", "extra_features.categorical.c.encoding", "must be one of"),
    ("{numeric: [{column: c, values: {a: lots}}]}", "extra_features.numeric.c.values", "must map to numbers"),
    ("{numeric: [{column: c, values: {a: 1}, bands: [a]}]}", "extra_features.numeric.c", "values or bands"),
    ("{numeric: [{column: c, bands: [none, 1]}]}", "extra_features.numeric.c", "quote source values"),
    ("{numeric: [{column: c, bands: [a, a]}]}", "extra_features.numeric.c.bands", "each band once"),
    ("{categorical: [{missing: [x]}]}", "extra_features.categorical", "each entry is"),
    ("{categorical: [Age], numeric: [age]}", "extra_features.numeric.age", "gives the feature extra_age"),
    ("{categorical: seg}", "extra_features.categorical", "must be a list"),
])
def test_extra_feature_mistakes_name_the_key(extras, where, message):
    _problems_of(lambda: mapping_of(f"fields:\n  claim_id: {{column: a}}\nextra_features: {extras}\n"), where,
                 message)


# --- out-of-range optional values: missing, counted


def test_out_of_range_optional_values_become_missing_and_are_counted_in_the_notes():
    raw = pd.DataFrame({"Age": ["0", "7", "0", "45", "130"], "since": ["01.01.1850", "02.02.2000", "", "", ""],
                        "Wit": ["-1", "2", "", "", ""]})
    mapping = mapping_of("""
missing_values: [""]
fields:
  claimant_age: {column: Age, out_of_range: missing}
  customer_since: {column: since, format: "%d.%m.%Y", out_of_range: missing}
  witnesses: {column: Wit}
""")
    notes: list[str] = []
    out = apply_mapping(raw, mapping, notes)
    assert out["claimant_age"].isna().tolist() == [True, True, True, False, True]
    assert out["customer_since"].isna().tolist() == [True, False, True, True, True]
    assert notes == ["claimant_age (from Age): 4 values outside 14 to 120 set missing: '0', '7', '130' (4 rows)",
                     "customer_since (from since): 1 values outside 1900-01-01 to 2100-12-31 set missing: "
                     "'01.01.1850' (1 rows)"]
    # Without the key the value goes through, and validation rejects the claim, as it always has.
    assert out["witnesses"].iloc[0] == -1
    report = validate_claims(out, fields=[FIELDS_BY_NAME[c] for c in out.columns])
    assert report.errors["column"].tolist() == ["witnesses"]
    assert apply_mapping(raw, mapping)["claimant_age"].isna().sum() == 4  # the same without a notes list


@pytest.mark.parametrize("rule, where, message", [
    ("claim_amount: {column: a, out_of_range: missing}", "fields.claim_amount.out_of_range",
     "claim_amount is required"),
    ("region: {column: a, out_of_range: missing}", "fields.region.out_of_range", "applies to number or integer"),
    ("claimant_age: {column: a, out_of_range: drop}", "fields.claimant_age.out_of_range", "can only be missing"),
])
def test_out_of_range_mistakes_name_the_key(rule, where, message):
    _problems_of(lambda: mapping_of(f"fields:\n  {rule}\n"), where, message)


def test_a_true_false_field_without_its_own_values_reads_true_and_false():
    raw = pd.DataFrame({"p": ["true", "FALSE", "1", "maybe"]})
    with pytest.raises(MappingError) as caught:
        apply_mapping(raw, mapping_of("fields:\n  police_report: {column: p}\n"))
    assert [(p.values, p.rows) for p in caught.value.problems] == [(("maybe",), (3,))]
    out = apply_mapping(raw.head(3), mapping_of("fields:\n  police_report: {column: p}\n"))
    assert out["police_report"].tolist() == [True, False, True]


# --- what the scoring service needs


def test_a_mapping_kept_as_plain_data_rebuilds_the_same_mapping():
    mapping = load_mapping(SHIPPED)
    assert parse_mapping(yaml.safe_load(SHIPPED.read_text()), str(SHIPPED)) == mapping
    assert parse_mapping(json.loads(json.dumps(mapping.to_dict()))) == mapping
    rich = mapping_of("fields:\n  claim_id: {column: a}\nextra_features: {categorical: [{column: c, encoding: "
                      "target}], numeric: [b]}\n")
    assert parse_mapping(rich.to_dict()) == rich and rich.name == "mapping"
    with pytest.raises(MappingError, match="^the stored mapping: 1 problem"):
        parse_mapping({"fields": {"claim_ident": {"column": "a"}}}, "the stored mapping")


def test_problems_name_their_source_columns_and_rows_and_read_as_before():
    raw = pd.DataFrame({"id": ["1", "2", "3", "4"], "kind": ["A", "B", "Z", "Z"]})
    mapping = mapping_of('fields:\n  claim_id: {column: id}\n  loss_type: {column: kind, values: {"A": theft, "B": '
                         'glass}}\n  region: {column: area}\n')
    with pytest.raises(MappingError) as caught:
        apply_mapping(raw, mapping)
    unmapped, absent = caught.value.problems
    assert str(unmapped) == "loss_type (from kind): has values the mapping does not map: 'Z' (2 rows)"
    assert (unmapped.source, unmapped.rows, unmapped.target) == (("kind",), (2, 3), "loss_type")
    assert (absent.column, absent.source, absent.rows) == ("region.column", ("area",), ())


def test_source_columns_of_fields_and_extra_features():
    mapping = mapping_of("""
fields:
  claim_id: {join: [branch, "no"]}
  line_of_business: {value: auto}
  loss_date: {parts: {year: y, month: m, day: d}}
  loss_type: {column: kind}
labels:
  is_fraud: {column: fraud, true_values: ["Y"], false_values: ["N"]}
extra_features: {categorical: [Sales Channel]}
""")
    assert mapping.source_columns("claim_id") == ("branch", "no")
    assert mapping.source_columns("line_of_business") == ()
    assert mapping.source_columns("loss_date") == ("y", "m", "d")
    assert mapping.source_columns("loss_type") == ("kind",)
    assert mapping.source_columns("extra_sales_channel") == ("Sales Channel",)
    with pytest.raises(KeyError):
        mapping.source_columns("region")


ONLINE = """
missing_values: ["?", ""]
fields:
  claim_id: {column: id}
  line_of_business: {value: auto}
  loss_type: {column: kind, values: {"A": theft, "B": glass}}
  loss_date: {column: when, format: "%d.%m.%Y"}
  report_date: {column: rep}
  claim_amount: {column: amt}
  witnesses: {column: wit}
  police_report: {column: pol, true_values: ["true"], false_values: ["false"]}
  claimant_age: {column: age, out_of_range: missing}
labels:
  is_fraud: {column: fraud, true_values: ["Y"], false_values: ["N"]}
extra_features: {categorical: [chan], numeric: [score]}
"""
GOOD = {"id": 1, "kind": "A", "when": "03.02.2024", "rep": "2024-02-04T10:30:00+01:00", "amt": 2.5, "wit": 3.0,
        "pol": True, "age": 7, "chan": "web", "score": None}
OTHER = {"id": "B-2", "kind": "B", "when": "01.01.2024", "amt": "1200", "score": 0.5, "age": "40"}
BAD = {"id": "3", "kind": "Z", "when": "31.02.2024", "amt": "?", "fraud": "Y", "colour": "red", "wit": [1]}


def test_records_map_to_canonical_json_values_and_a_bad_record_leaves_the_others_alone():
    mapping = mapping_of(ONLINE)
    notes: list[str] = []
    results = map_records([GOOD, BAD, OTHER], mapping, notes)
    assert results[0] == ({"claim_id": "1", "line_of_business": "auto", "loss_type": "theft",
                           "loss_date": "2024-02-03", "report_date": "2024-02-04T09:30:00Z", "claim_amount": 2.5,
                           "witnesses": 3, "police_report": True, "extra_chan": "web"}, [])
    assert type(results[0][0]["witnesses"]) is int and type(results[0][0]["claim_amount"]) is float
    assert results[2] == ({"claim_id": "B-2", "line_of_business": "auto", "loss_type": "glass",
                           "loss_date": "2024-01-01", "claim_amount": 1200.0, "claimant_age": 40,
                           "extra_score": 0.5}, [])
    canonical, errors = results[1]
    # What did map comes back too, so the service can still report the rest of the record at once.
    assert canonical == {"claim_id": "3", "line_of_business": "auto"}
    assert sorted(errors, key=str) == sorted([
        {"field": "fraud", "value": None, "reason": NOT_EXTRACT_COLUMN},  # labels are not read online
        {"field": "colour", "value": None, "reason": NOT_EXTRACT_COLUMN},
        {"field": "wit", "value": "[1]", "reason": "must be text, a number, true/false or null"},
        {"field": "kind", "value": "Z", "reason": "has a value the mapping does not map (to loss_type)"},
        {"field": "when", "value": "31.02.2024",
         "reason": "does not parse as a date with format '%d.%m.%Y' (to loss_date)"},
    ], key=str)
    assert [map_records([r], mapping)[0] for r in (GOOD, OTHER)] == [results[0], results[2]]
    assert notes == ["claimant_age (from age): 1 values outside 14 to 120 set missing: '7' (1 rows)"]
    assert map_records([], mapping) == []


def test_record_values_are_read_as_the_text_a_csv_would_hold():
    mapping = mapping_of('fields:\n  witnesses: {column: w}\n  police_report: {column: p, true_values: ["YES"], '
                         'false_values: ["NO"]}\n  region: {column: r}\n')
    (ok, _), (_, errors) = map_records([{"w": 3.0, "r": 2.5}, {"w": 2.5, "p": True, "r": False}], mapping)
    assert ok == {"witnesses": 3, "region": "2.5"}
    assert {(e["field"], e["value"]) for e in errors} == {("w", "2.5"), ("p", "true")}


def test_records_from_the_extract_map_exactly_as_the_extract_does(mapped):
    mapping = load_mapping(SHIPPED)
    read = {c for name in list(mapping.fields) + list(mapping.extra_columns[0] + mapping.extra_columns[1])
            for c in mapping.source_columns(name)}
    records = [{k: v for k, v in row.items() if k in read} for row in read_source(EXTRACT, mapping).to_dict("records")]
    results = map_records(records, mapping)
    assert [errors for _, errors in results] == [[]] * len(records)
    dates = {"policy_start_date", "loss_date"}
    for (canonical, _), row in zip(results, mapped.drop(columns=["is_fraud"]).to_dict("records")):
        expected = {k: v.strftime("%Y-%m-%d") if k in dates else v for k, v in row.items() if not pd.isna(v)}
        assert canonical == expected
        assert {k: type(v) for k, v in canonical.items()} == \
            {k: float if isinstance(v, float) else type(v) for k, v in expected.items()}
