"""`claimtriage validate --mapping`: the labels are checked as training checks them, and what the
mapping changed on purpose is said."""

import yaml

from training.cli import main

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
