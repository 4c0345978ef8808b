"""`claimtriage validate --mapping`: the labels are checked as training checks them, and what the
mapping changed on purpose is said."""

import yaml

from cli.main import main

MAPPING = """
fields:
  claim_id: {column: id}
  loss_date: {column: when, format: "%d/%m/%Y"}
  claimant_age: {column: age, out_of_range: missing}
labels:
  is_fraud: {column: fraud, true_values: ["1"], false_values: ["0"]}
missing_values: [""]
"""


def _files(tmp_path, rows: str):
    (tmp_path / "m.yaml").write_text(MAPPING)
    (tmp_path / "x.csv").write_text("id,when,age,fraud\n" + rows)
    return ["validate", "--data", str(tmp_path / "x.csv"), "--mapping", str(tmp_path / "m.yaml")]


def test_validate_with_a_mapping_requires_the_fraud_label_as_training_does(tmp_path, capsys):
    assert main(_files(tmp_path, "a,01/02/2024,30,1\nb,02/02/2024,41,\n")) == 1
    out = capsys.readouterr().out
    assert "is_fraud: is required but missing (1 rows)" in out and "claim_id=b" in out


def test_validate_says_which_values_the_mapping_set_missing(tmp_path, capsys):
    assert main(_files(tmp_path, "a,01/02/2024,30,1\nb,02/02/2024,7,0\n")) == 0
    out = capsys.readouterr().out
    assert "note: claimant_age (from age): 1 values outside 14 to 120 set missing: '7' (1 rows)" in out
    assert "2 claims, all valid." in out


def test_generate_writes_another_insurers_extract_lacking_fields_with_its_mapping(tmp_path, capsys):
    assert main(["generate", "--claims", "400", "--seed", "3", "--extract", str(tmp_path / "x"),
                 "--lacking", "claimant_id,report_date"]) == 0
    out = capsys.readouterr().out
    data, mapping = sorted((tmp_path / "x").glob("*.csv"))[0], sorted((tmp_path / "x").glob("*.yaml"))[0]
    assert f"claimtriage train --data {data} --mapping {mapping}" in out
    header = data.read_text().splitlines()[0].split(",")
    assert "claim_id" not in header and len(header) > 15
    assert main(["validate", "--data", str(data), "--mapping", str(mapping)]) == 0
    assert "400 claims, all valid." in capsys.readouterr().out
    fields = yaml.safe_load(mapping.read_text())["fields"]
    assert "claim_id" in fields and not {"report_date", "claimant_id"} & set(fields)


def test_a_mapping_s_coarse_dates_reach_the_features_as_training_builds_them(tmp_path):
    """A loss date known to the month and a report date without its time, as `claimtriage train`
    hands the mapping to the features: no weekday, day count or report hour is made from them."""
    import pandas as pd

    from features.builder import FeatureBuilder
    from features.mapping import apply_mapping, load_mapping
    from training.from_mapping import mapping_extras

    (tmp_path / "m.yaml").write_text("""
fields:
  claim_id: {column: id}
  policy_start_date: {column: start, format: "%Y-%m-%d"}
  loss_date: {parts: {year: yr, month: mo}}
  report_date: {column: rep, format: "%Y-%m-%d"}
  claim_amount: {column: amt}
labels:
  is_fraud: {column: fraud, true_values: ["1"], false_values: ["0"]}
""")
    mapping = load_mapping(tmp_path / "m.yaml")
    raw = pd.DataFrame({"id": [f"c{i}" for i in range(40)], "start": ["2020-01-05"] * 40,
                        "yr": ["2024"] * 40, "mo": [str(1 + i % 12) for i in range(40)],
                        "rep": [f"2024-{1 + i % 12:02d}-{10 + i % 9}" for i in range(40)],
                        "amt": [str(100 + 7 * i) for i in range(40)], "fraud": ["0", "1"] * 20})
    extras = mapping_extras(mapping)
    assert extras.precision == {"policy_start_date": "day", "loss_date": "month", "report_date": "day"}
    builder = FeatureBuilder(extras.categorical, extras.numeric, extras.precision).fit(apply_mapping(raw, mapping))
    features = set(builder.feature_names_)
    assert not {"loss_weekday", "policy_age_days", "report_delay_days", "report_hour"} & features
    assert "claim_amount" in features
    assert builder.dropped_features_["loss_weekday"] == "loss_date is month-level; this feature needs day or better"
