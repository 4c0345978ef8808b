"""Foreign extracts of generated claims: the written mapping reads back exactly what was generated."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.mapping import apply_mapping, extra_name, load_mapping, read_source
from features.schema import FIELD_NAMES
from training import generate
from cli.main import main
from training.extracts import DEFAULT_LACKING, FIELD_COLUMNS, claim_numbers, write_extract
from training.generate import generate_claims

N_CLAIMS, SEED = 2_000, 5
LABELS = ("is_fraud", "paid_as_filed")


def mapped_claims(csv: Path, mapping_file: Path) -> pd.DataFrame:
    """The extract through its mapping, as `claimtriage train --mapping` reads it."""
    mapping = load_mapping(mapping_file)
    return apply_mapping(read_source(csv, mapping), mapping)


def generated_as_numbered(n_claims: int, seed: int) -> pd.DataFrame:
    """The generated claims under the extract's claim numbers, indexed by them."""
    claims = generate_claims(n_claims, seed=seed)
    claims["claim_id"] = pd.array(claim_numbers(len(claims), seed), dtype="str")
    return claims.set_index("claim_id", drop=False)


def assert_same_values(mapped: pd.DataFrame, generated: pd.DataFrame, names) -> None:
    """Field by field, row for row (matched by claim number): same dtype, same values, same gaps."""
    expected = generated.loc[mapped["claim_id"].to_numpy()].reset_index(drop=True)
    for name in names:
        # The generator's labels are plain bool; a mapping reads every label as nullable boolean.
        want = expected[name].astype("boolean") if name in LABELS else expected[name]
        # Amounts come back through a unit (cents, thousands): equal to the last few bits.
        pd.testing.assert_series_equal(mapped[name], want, check_exact=False, rtol=1e-12, check_names=False,
                                       obj=name)


@pytest.fixture(scope="module")
def full_extract(tmp_path_factory):
    """An extract lacking nothing, with the paid-as-filed label."""
    out = tmp_path_factory.mktemp("full")
    return write_extract(out, N_CLAIMS, SEED, lacking=(), paid_as_filed=True)


@pytest.fixture(scope="module")
def partial_extract(tmp_path_factory):
    """The default extract: no claimant ids, report dates or claim amounts, no paid-as-filed label."""
    return write_extract(tmp_path_factory.mktemp("partial"), N_CLAIMS, SEED)


def test_every_field_and_label_reads_back_as_generated(full_extract):
    mapped = mapped_claims(*full_extract)
    generated = generated_as_numbered(N_CLAIMS, SEED)
    assert len(mapped) == len(generated)
    assert set(FIELD_NAMES) | set(LABELS) <= set(mapped.columns)
    assert_same_values(mapped, generated, FIELD_NAMES + LABELS)
    # The extract's gaps are the generator's gaps: "U" flags and empty cells came back as missing.
    assert mapped["police_report"].isna().sum() == generated["police_report"].isna().sum() > 0
    assert mapped["provider_id"].isna().sum() == generated["provider_id"].isna().sum() > 0


def test_lacking_fields_have_no_column_and_stay_absent(partial_extract):
    csv, mapping_file = partial_extract
    header = pd.read_csv(csv, dtype=str, nrows=0).columns
    for name in DEFAULT_LACKING:
        assert FIELD_COLUMNS[name].column not in header
    mapped = mapped_claims(csv, mapping_file)
    assert not set(DEFAULT_LACKING + ("paid_as_filed",)) & set(mapped.columns)
    present = [name for name in FIELD_NAMES if name not in DEFAULT_LACKING]
    assert_same_values(mapped, generated_as_numbered(N_CLAIMS, SEED), present + ["is_fraud"])


def test_lacking_amounts_do_not_leak_through_another_column(partial_extract):
    raw = pd.read_csv(partial_extract[0], dtype=str, keep_default_na=False)
    amounts = generated_as_numbered(N_CLAIMS, SEED).loc[raw["schadenummer"], "claim_amount"].to_numpy()
    for column in raw.columns:
        numbers = pd.to_numeric(raw[column], errors="coerce").to_numpy(dtype=float)
        for unit in (1e-3, 1e-2, 1.0, 1e2, 1e3):
            same = np.isclose(numbers * unit, amounts, rtol=1e-9)
            assert same.mean() < 0.01, f"{column} x {unit} carries the claim amounts"


def test_rows_are_shuffled_and_claim_numbers_unique_and_unrelated_to_time(full_extract):
    mapped = mapped_claims(*full_extract)
    assert mapped["claim_id"].is_unique
    position = np.arange(len(mapped))
    # Generated claims come sorted by report time; the extract must tell nothing of that order.
    by_time = mapped["report_date"].rank().to_numpy()
    assert abs(np.corrcoef(position, by_time)[0, 1]) < 0.1
    numbers = mapped["claim_id"].str.removeprefix("SN").astype(int).rank().to_numpy()
    assert abs(np.corrcoef(numbers, by_time)[0, 1]) < 0.1


def test_passed_through_columns_are_policy_and_customer_facts(full_extract):
    mapped = mapped_claims(*full_extract)
    channel, held = extra_name("verkoopkanaal"), extra_name("aantal_polissen")
    assert mapped[channel].notna().all() and mapped[held].notna().all()
    assert set(mapped[channel]) == {"tussenpersoon", "direct", "bank", "online"}
    assert mapped.groupby("policy_id")[channel].nunique().max() == 1
    assert mapped.groupby("claimant_id")[held].nunique().max() == 1
    assert mapped[held].min() >= 1


def test_claimtriage_validate_accepts_both_extracts(full_extract, partial_extract, mlflow_home, capsys):
    for csv, mapping_file in (full_extract, partial_extract):
        assert main(["validate", "--data", str(csv), "--mapping", str(mapping_file)]) == 0
    assert f"{N_CLAIMS} claims, all valid." in capsys.readouterr().out


@pytest.mark.parametrize("lacking", [("claim_id",), ("claim_number",)])
def test_lacking_must_name_canonical_fields_other_than_claim_id(tmp_path, lacking):
    with pytest.raises(ValueError, match=lacking[0]):
        write_extract(tmp_path, 200, lacking=lacking)
    assert not list(tmp_path.iterdir())


def test_dealer_codes_pass_through_as_a_categorical_feature(tmp_path):
    csv, mapping_file = write_extract(tmp_path, N_CLAIMS, SEED, code_levels=300)
    mapped = mapped_claims(csv, mapping_file)
    dealer = extra_name("dealercode")
    assert dealer in load_mapping(mapping_file).extra_columns[0]
    generated = generated_as_numbered(N_CLAIMS, SEED)
    coded = generate.add_code_column(generated, levels=300, seed=SEED)
    expected = coded.loc[mapped["claim_id"].to_numpy(), "dealer_code"].astype("str").reset_index(drop=True)
    pd.testing.assert_series_equal(mapped[dealer], expected, check_names=False)
    assert 100 < mapped[dealer].nunique() <= 300
