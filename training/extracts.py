"""Synthetic "foreign" extracts: generated claims written the way another insurer keeps them.

Proves bring-your-own-claims end to end on data whose truth we know. The insurer here is a
Dutch one: its own column names, codes for line of business, loss causes and regions, dates
written day/month/year, Y/N flags with U for unknown, amounts in cents and sums insured in
thousands, fraud as 1/0. `write_extract` writes the CSV and the YAML mapping (features/mapping.py)
that turns it back into canonical claims; canonical fields named in `lacking` are simply not
in the CSV, as they would be missing from a real extract.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import yaml

from features.schema import FIELD_NAMES
from training import generate

DATE_FORMAT = "%d/%m/%Y"
MOMENT_FORMAT = "%d/%m/%Y %H:%M:%S"
YES, NO, UNKNOWN = "Y", "N", "U"
LINE_CODES = {"auto": "MRV", "property": "WOH"}  # motorrijtuigen, woonhuis
LOSS_CAUSE_CODES = {"collision": "110", "glass": "130", "injury": "150", "theft": "310", "vandalism": "320",
                    "water": "510", "fire": "520", "storm": "530"}
REGION_NAMES = {"north": "Noord", "south": "Zuid", "east": "Oost", "west": "West", "central": "Midden",
                "coast": "Kust", "mountain": "Heuvelland", "metro": "Randstad"}
# Passed-through columns the generator can supply honestly: drawn independently of every label.
SALES_CHANNELS = {"tussenpersoon": 0.45, "direct": 0.25, "bank": 0.15, "online": 0.15}
POLICIES_HELD_MEAN_EXTRA = 0.8  # policies a customer holds besides this one, Poisson mean
CLAIM_NUMBER_DIGITS = 8
DEFAULT_LACKING = ("claimant_id", "report_date", "claim_amount")

Writer = Callable[[pd.Series], pd.Series]


@dataclass(frozen=True)
class ExtractColumn:
    """One column of the extract: its name, how the insurer writes a value, and the mapping rule back."""

    column: str
    write: Writer
    rule: dict = field(default_factory=dict)

    def mapping_rule(self) -> dict:
        """The features/mapping.py rule that reads this column back into the canonical field."""
        return {"column": self.column, **self.rule}


def _text(values: pd.Series) -> pd.Series:
    return values.astype("str").fillna("")


def _coded(codes: dict[str, str]) -> Writer:
    def write(values: pd.Series) -> pd.Series:
        unknown = set(values.dropna().unique()) - set(codes)
        if unknown:  # a new generated value must get its own code, not vanish into "unknown"
            raise ValueError(f"no extract code for {', '.join(sorted(map(str, unknown)))}")
        return values.map(codes).astype("str").fillna("")
    return write


def _date(fmt: str) -> Writer:
    return lambda values: values.dt.strftime(fmt).fillna("")


def _flag(values: pd.Series) -> pd.Series:
    return values.astype("boolean").map({True: YES, False: NO}).astype("str").fillna(UNKNOWN)


def _whole(values: pd.Series) -> pd.Series:
    return values.astype("Int64").astype("str").fillna("")


def _in_units(unit: float) -> Writer:
    """Amounts written in another unit (cents, thousands); the mapping scales them back by `unit`."""
    return lambda values: (values / unit).map(lambda v: "" if pd.isna(v) else f"{v:.15g}")


def _reverse(codes: dict[str, str]) -> dict[str, str]:
    return {code: canonical for canonical, code in codes.items()}


def _flag_rule() -> dict:
    return {"true_values": [YES], "false_values": [NO], "missing": [UNKNOWN]}


CENT, THOUSAND = 0.01, 1000.0
FIELD_COLUMNS: dict[str, ExtractColumn] = {
    "claim_id": ExtractColumn("schadenummer", _text),
    "policy_id": ExtractColumn("polisnummer", _text),
    "claimant_id": ExtractColumn("relatienummer", _text),
    "line_of_business": ExtractColumn("branche", _coded(LINE_CODES), {"values": _reverse(LINE_CODES)}),
    "loss_type": ExtractColumn("oorzaakcode", _coded(LOSS_CAUSE_CODES), {"values": _reverse(LOSS_CAUSE_CODES)}),
    "policy_start_date": ExtractColumn("ingangsdatum_polis", _date(DATE_FORMAT), {"format": DATE_FORMAT}),
    "loss_date": ExtractColumn("schadedatum", _date(DATE_FORMAT), {"format": DATE_FORMAT}),
    "report_date": ExtractColumn("meldingstijdstip", _date(MOMENT_FORMAT), {"format": MOMENT_FORMAT}),
    "claim_amount": ExtractColumn("schadebedrag_cent", _in_units(CENT), {"scale": CENT}),
    "coverage_limit": ExtractColumn("verzekerde_som_x1000", _in_units(THOUSAND), {"scale": THOUSAND}),
    "deductible": ExtractColumn("eigen_risico", _in_units(1.0)),
    "annual_premium": ExtractColumn("jaarpremie", _in_units(1.0)),
    "loss_hour": ExtractColumn("uur_van_schade", _whole),
    "police_report": ExtractColumn("proces_verbaal", _flag, _flag_rule()),
    "attorney_involved": ExtractColumn("advocaat", _flag, _flag_rule()),
    "witnesses": ExtractColumn("aantal_getuigen", _whole),
    "injuries": ExtractColumn("aantal_gewonden", _whole),
    "vehicles_involved": ExtractColumn("aantal_voertuigen", _whole),
    "region": ExtractColumn("regio", _coded(REGION_NAMES), {"values": _reverse(REGION_NAMES)}),
    "payee_account": ExtractColumn("rekening_hash", _text),
    "claimant_phone": ExtractColumn("telefoon_hash", _text),
    "claimant_address": ExtractColumn("adres_hash", _text),
    "provider_id": ExtractColumn("hersteller", _text),
    "claimant_age": ExtractColumn("leeftijd", _whole),
    "customer_since": ExtractColumn("klant_sinds", _date(DATE_FORMAT), {"format": DATE_FORMAT}),
}
assert set(FIELD_COLUMNS) == set(FIELD_NAMES), "every canonical field needs a column in the extract"

LABEL_COLUMNS: dict[str, ExtractColumn] = {
    "is_fraud": ExtractColumn("fraude", lambda v: v.map({True: "1", False: "0"}).astype("str"),
                              {"true_values": ["1"], "false_values": ["0"]}),
    "paid_as_filed": ExtractColumn("volledig_uitgekeerd", _flag, {"true_values": [YES], "false_values": [NO]}),
}
# The passed-through columns, by their extract names (the model sees extra_verkoopkanaal, ...).
SALES_CHANNEL, POLICIES_HELD, DEALER_CODE = "verkoopkanaal", "aantal_polissen", "dealercode"


def claim_numbers(n_claims: int, seed: int) -> np.ndarray:
    """The insurer's claim numbers for generated claims, in generated order: unique, unrelated to time.

    Generated claim ids count up in report order; kept as they are, they would tell a model the
    report order of an extract that has no report dates.
    """
    rng = np.random.default_rng([seed, 1])
    numbers = rng.choice(9 * 10 ** (CLAIM_NUMBER_DIGITS - 1), size=n_claims, replace=False) \
        + 10 ** (CLAIM_NUMBER_DIGITS - 1)
    return np.array([f"SN{v}" for v in numbers.tolist()], dtype=object)


def insurer_claims(n_claims: int = 5000, seed: int = 0, code_levels: int = 0) -> pd.DataFrame:
    """Generated claims as this insurer holds them: its claim numbers, its own extra columns, shuffled rows.

    Canonical field names; the extra columns carry their extract names (verkoopkanaal, ...).
    """
    claims = generate.generate_claims(n_claims, seed=seed)
    claims["claim_id"] = pd.array(claim_numbers(len(claims), seed), dtype="str")
    claims[SALES_CHANNEL] = _per_entity(claims["policy_id"], _sales_channels, [seed, 3])
    claims[POLICIES_HELD] = _per_entity(claims["claimant_id"], _policies_held, [seed, 4])
    if code_levels > 0:
        claims[DEALER_CODE] = _dealer_codes(claims, code_levels, seed)
    order = np.random.default_rng([seed, 2]).permutation(len(claims))
    return claims.iloc[order].reset_index(drop=True)


def _per_entity(entity: pd.Series, draw: Callable[[np.random.Generator, int], np.ndarray],
                stream: list[int]) -> np.ndarray:
    """One draw per policy (or claimant), the same on each of its claims, whatever the labels."""
    codes, uniques = pd.factorize(entity, sort=True)
    return draw(np.random.default_rng(stream), len(uniques))[codes]


def _sales_channels(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.choice(np.array(list(SALES_CHANNELS), dtype=object), size=n, p=list(SALES_CHANNELS.values()))


def _policies_held(rng: np.random.Generator, n: int) -> np.ndarray:
    return 1 + rng.poisson(POLICIES_HELD_MEAN_EXTRA, size=n)


def _dealer_codes(claims: pd.DataFrame, levels: int, seed: int) -> np.ndarray:
    """A high-cardinality text code (a dealer) with a weak fraud signal, drawn by the generator."""
    return generate.add_code_column(claims, levels=levels, seed=seed)["dealer_code"].to_numpy(dtype=object)


def extract_frame(claims: pd.DataFrame, lacking: tuple[str, ...] = DEFAULT_LACKING,
                  paid_as_filed: bool = False) -> pd.DataFrame:
    """The insurer's extract of `insurer_claims`, every cell text; the lacking fields have no column."""
    columns = {c.column: c.write(claims[name]) for name, c in FIELD_COLUMNS.items() if name not in lacking}
    columns[SALES_CHANNEL] = claims[SALES_CHANNEL].astype("str")
    columns[POLICIES_HELD] = claims[POLICIES_HELD].astype("str")
    if DEALER_CODE in claims.columns:
        columns[DEALER_CODE] = _text(claims[DEALER_CODE])
    for name, c in LABEL_COLUMNS.items():
        if name == "is_fraud" or paid_as_filed:
            columns[c.column] = c.write(claims[name])
    return pd.DataFrame(columns)


def extract_mapping(lacking: tuple[str, ...] = DEFAULT_LACKING, code_levels: int = 0,
                    paid_as_filed: bool = False) -> dict:
    """The mapping file's content (features/mapping.py keys only) that reads the extract back."""
    categorical = [SALES_CHANNEL] + ([DEALER_CODE] if code_levels > 0 else [])
    labels = {name: c.mapping_rule() for name, c in LABEL_COLUMNS.items() if name == "is_fraud" or paid_as_filed}
    return {
        "name": "polder_verzekeringen",
        "description": "Generated claims in a Dutch insurer's conventions (training/extracts.py); lacks: "
                       + (", ".join(lacking) or "nothing"),
        "missing_values": [""],
        "fields": {name: c.mapping_rule() for name, c in FIELD_COLUMNS.items() if name not in lacking},
        "labels": labels,
        "extra_features": {"categorical": categorical, "numeric": [POLICIES_HELD]},
    }


def check_lacking(lacking: tuple[str, ...]) -> None:
    """Any canonical field may be lacking except claim_id, which every claim needs to be told apart."""
    unknown = sorted(set(lacking) - set(FIELD_NAMES))
    if unknown:
        raise ValueError(f"lacking names fields that are not canonical: {', '.join(unknown)}")
    if "claim_id" in lacking:
        raise ValueError("claim_id cannot be lacking: every claim needs its own identifier")


def write_extract(out_dir: str | Path, n_claims: int = 5000, seed: int = 0,
                  lacking: tuple[str, ...] = DEFAULT_LACKING, code_levels: int = 0,
                  paid_as_filed: bool = False) -> tuple[Path, Path]:
    """Write a foreign extract (CSV) of generated claims and its mapping (YAML); return both paths.

    Files are named by size and seed (polder_5000_seed0.csv/.yaml) and overwrite earlier ones."""
    check_lacking(tuple(lacking))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"polder_{n_claims}_seed{seed}"
    csv_path, mapping_path = out_dir / f"{stem}.csv", out_dir / f"{stem}.yaml"
    claims = insurer_claims(n_claims, seed, code_levels)
    extract_frame(claims, tuple(lacking), paid_as_filed).to_csv(csv_path, index=False)
    mapping = extract_mapping(tuple(lacking), code_levels, paid_as_filed)
    header = (f"# Mapping for {csv_path.name}, written by training/extracts.py ({n_claims} generated claims, "
              f"seed {seed}).\n# Train on it with:\n#   claimtriage train --data {csv_path.name} "
              f"--mapping {mapping_path.name}\n")
    mapping_path.write_text(header + yaml.dump(mapping, Dumper=_QuotingDumper, sort_keys=False,
                                               default_flow_style=None, width=120, allow_unicode=True))
    return csv_path, mapping_path


class _QuotingDumper(yaml.SafeDumper):
    """Also quotes Y and N: PyYAML reads them as text, but YAML 1.1 (and other readers) as booleans."""


def _represent_text(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    if text.lower() in {"y", "n"}:
        return dumper.represent_scalar("tag:yaml.org,2002:str", text, style='"')
    return dumper.represent_str(text)


def _represent_list(dumper: yaml.SafeDumper, items: list) -> yaml.SequenceNode:
    # Short lists of source values read best on one line, quoted or not.
    flat = all(isinstance(item, str) for item in items)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", items, flow_style=flat or None)


_QuotingDumper.add_representer(str, _represent_text)
_QuotingDumper.add_representer(list, _represent_list)
