"""The reference profile of a model version: how its features and scores were distributed on claims
it never fitted, kept with the version's run so live claims can be compared with it later.

Its form, and why:
- `monitoring/profile.json` in the run's artifacts: per column (every model feature, each score)
  its kind, fixed bins, the reference's share of claims in each bin, n, and the feature's rank in
  the fraud model's importance. Bins are fixed at training time, so every later period is judged
  on the same bins and PSI figures from different weeks compare with each other.
  Numeric: the reference's deciles (actual values, deduplicated) as right-closed edges, open at
  both ends, so a discrete feature (witnesses: 0, 1, 2) gets one bin per value and a value beyond
  the reference's range still has a bin. Categorical: the reference's levels, then "(other)" for
  levels it never had, then "(missing)". Every column has a missing bin: a field that stops
  arriving is drift, never dropped. A categorical the model reads as a number (target or
  frequency encoded: hundreds of codes) is profiled as the number the model reads.
- `monitoring/reference_sample.parquet`: up to 5,000 reference rows (seeded), so two-sample
  statistics (Kolmogorov-Smirnov) are computed against real values rather than binned shares.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from features.builder import FeatureBuilder
from models.bundle import TriageBundle
from models.config import Config

PROFILE_DIR = "monitoring"
PROFILE_FILE = "profile.json"
SAMPLE_FILE = "reference_sample.parquet"
PROFILE_FORMAT = 1
# Rows kept for the two-sample statistics: KS on 5,000 reference values resolves a shift in the
# distribution of about 2% (its critical distance at 1% is 1.63 / sqrt(n)) and costs 100s of KB.
SAMPLE_ROWS = 5_000
# Deciles: ten bins of a tenth of the reference each, the usual basis of PSI's 0.1 / 0.25 rules.
NUMERIC_BINS = 10
OTHER, MISSING = "(other)", "(missing)"
SCORE_NAMES = ("fraud_probability", "approval_probability", "anomaly_score")
PROFILE_COMMAND = "claimtriage profile --version {version} --data CLAIMS"


class ProfileError(ValueError):
    """A profile that cannot be read or made, with what to do about it."""


@dataclass(frozen=True)
class ColumnProfile:
    """One feature or score of the reference: its fixed bins and the reference's share in each."""

    name: str
    source: str  # "feature" or "score"
    kind: str  # "numeric" or "categorical"
    edges: tuple[float, ...]  # numeric: right-closed inner edges; the outer bins are open
    levels: tuple[str, ...]  # categorical: the reference's levels
    shares: tuple[float, ...]  # per bin, in `labels` order
    n: int
    importance_rank: int | None  # 1 = the fraud model's most important feature; None for scores

    @classmethod
    def from_reference(cls, name: str, source: str, kind: str, values: pd.Series,
                       importance_rank: int | None) -> "ColumnProfile":
        """Bins fixed on the reference values, and the reference's shares in them."""
        edges: tuple[float, ...] = ()
        levels: tuple[str, ...] = ()
        if kind == "numeric":
            present = _numbers(values)
            present = present[~np.isnan(present)]
            if len(present):
                quantiles = np.linspace(0, 1, NUMERIC_BINS + 1)[1:-1]
                edges = tuple(float(e) for e in np.unique(np.quantile(present, quantiles, method="inverted_cdf")))
        else:
            levels = tuple(sorted(values.dropna().astype("str").unique()))
        blank = cls(name, source, kind, edges, levels, (), len(values), importance_rank)
        counts = blank.counts(values)
        shares = counts / counts.sum() if counts.sum() else counts.astype(float)
        return cls(name, source, kind, edges, levels, tuple(float(s) for s in shares), len(values), importance_rank)

    @property
    def labels(self) -> tuple[str, ...]:
        """What each bin holds, in words, for tables and plots."""
        if self.kind == "categorical":
            return self.levels + (OTHER, MISSING)
        if not self.edges:
            return ("any value", MISSING)
        inner = tuple(f"({a:g}, {b:g}]" for a, b in zip(self.edges, self.edges[1:]))
        return (f"<= {self.edges[0]:g}",) + inner + (f"> {self.edges[-1]:g}", MISSING)

    def counts(self, values: pd.Series) -> np.ndarray:
        """Claims per bin (missing values in the last bin), on this profile's fixed bins."""
        if self.kind == "numeric":
            numbers = _numbers(values)
            missing = np.isnan(numbers)
            inside = np.bincount(np.searchsorted(self.edges, numbers[~missing], side="left"),
                                 minlength=len(self.edges) + 1)
            return np.append(inside, missing.sum())
        missing = values.isna().to_numpy()
        codes = pd.Categorical(values[~missing].astype("str"), categories=list(self.levels)).codes
        known = np.bincount(codes[codes >= 0], minlength=len(self.levels))
        return np.append(known, [(codes < 0).sum(), missing.sum()])


def _numbers(values: pd.Series) -> np.ndarray:
    return pd.to_numeric(values).to_numpy(dtype=np.float64, na_value=np.nan)


@dataclass(frozen=True)
class ReferenceProfile:
    """Every profiled column of a version, a sample of its reference rows, and where it came from."""

    columns: tuple[ColumnProfile, ...]
    sample: pd.DataFrame
    about: dict  # run_id, what the reference claims were, n, seed

    def column(self, name: str) -> ColumnProfile:
        found = next((c for c in self.columns if c.name == name), None)
        if found is None:
            raise ProfileError(f"the profile has no column {name!r}; it has {', '.join(c.name for c in self.columns)}")
        return found

    def to_json(self) -> dict:
        return {"format": PROFILE_FORMAT, **self.about, "columns": [asdict(c) for c in self.columns]}

    @classmethod
    def from_json(cls, data: dict, sample: pd.DataFrame) -> "ReferenceProfile":
        columns = tuple(ColumnProfile(**{**c, "edges": tuple(c["edges"]), "levels": tuple(c["levels"]),
                                         "shares": tuple(c["shares"])}) for c in data["columns"])
        about = {k: v for k, v in data.items() if k not in ("format", "columns")}
        return cls(columns, sample, about)


def feature_frame(builder: FeatureBuilder, claims: pd.DataFrame, matrix: np.ndarray) -> pd.DataFrame:
    """The model matrix as named columns; a native category as its level's text (not its code), so a
    level the model never saw keeps its name and lands in "(other)" rather than among the missing."""
    frame = pd.DataFrame(matrix, columns=builder.feature_names_, index=claims.index)
    native = {builder.feature_names_[j] for j in builder.categorical_indices_}
    for spec in builder.specs_:
        if spec.name in native:
            field = spec.requires[0]
            frame[spec.name] = (claims[field].astype("str") if field in claims.columns
                                else pd.Series(np.nan, index=claims.index, dtype="str"))
    return frame


def score_frame(bundle: TriageBundle, claims: pd.DataFrame, matrix: np.ndarray) -> pd.DataFrame:
    """The scores of claims whose features are `matrix`, named as the service stores them; no
    approval_probability where the version has no eligibility model."""
    scores = bundle.model_scores(claims, matrix)
    frame = pd.DataFrame({"fraud_probability": scores.fraud, "anomaly_score": scores.anomaly}, index=claims.index)
    if scores.approval is not None:
        frame["approval_probability"] = scores.approval
    return frame[[n for n in SCORE_NAMES if n in frame.columns]]


def importance_ranks(bundle: TriageBundle) -> dict[str, int]:
    """Each feature's rank by total gain in the fraud model (1 = most): what "a top-10 feature" means."""
    booster = bundle.fraud.booster
    gain = booster.feature_importance(importance_type="gain")
    order = np.argsort(-gain, kind="stable")
    names = booster.feature_name()
    return {names[j]: rank for rank, j in enumerate(order, start=1)}


def build_profile(bundle: TriageBundle, features: pd.DataFrame, scores: pd.DataFrame, about: dict,
                  seed: int = 0) -> ReferenceProfile:
    """The profile of reference features (from `feature_frame`) and their scores (`score_frame`)."""
    ranks = importance_ranks(bundle)
    native = {bundle.builder.feature_names_[j] for j in bundle.builder.categorical_indices_}
    columns = [ColumnProfile.from_reference(name, "feature", "categorical" if name in native else "numeric",
                                            features[name], ranks.get(name)) for name in bundle.builder.feature_names_]
    columns += [ColumnProfile.from_reference(name, "score", "numeric", scores[name], None) for name in scores.columns]
    rows = pd.concat([features[bundle.builder.feature_names_], scores], axis=1).reset_index(drop=True)
    if len(rows) > SAMPLE_ROWS:
        keep = np.sort(np.random.default_rng(seed).choice(len(rows), SAMPLE_ROWS, replace=False))
        rows = rows.iloc[keep].reset_index(drop=True)
    return ReferenceProfile(tuple(columns), rows, {**about, "n": len(features), "seed": seed})


def profile_claims(bundle: TriageBundle, claims: pd.DataFrame, about: dict, history: pd.DataFrame | None = None,
                   matrix: np.ndarray | None = None, seed: int = 0) -> ReferenceProfile:
    """The profile of validated claims, their history counted over `history` (default: themselves);
    `matrix`, when the caller has the claims' features already (training does)."""
    if len(claims) == 0:
        raise ProfileError("no claims to build a reference profile from")
    if matrix is None:
        matrix = bundle.features(claims, history)
    return build_profile(bundle, feature_frame(bundle.builder, claims, matrix),
                         score_frame(bundle, claims, matrix), about, seed)


def log_profile(client: MlflowClient, run_id: str, profile: ReferenceProfile) -> None:
    """Keep the profile with a run (a finished one too: `claimtriage profile` adds it to old versions)."""
    client.log_dict(run_id, profile.to_json(), f"{PROFILE_DIR}/{PROFILE_FILE}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / SAMPLE_FILE
        profile.sample.to_parquet(path, index=False)
        client.log_artifact(run_id, str(path), artifact_path=PROFILE_DIR)


def model_version(source: Config | MlflowClient, version: str | int, model_name: str | None = None):
    """The registered version (its source run holds the profile); unknown: an error naming those that exist."""
    client, name = _client_and_name(source, model_name)
    try:
        return client.get_model_version(name, str(version))
    except MlflowException:
        existing = sorted((int(v.version) for v in client.search_model_versions(f"name = '{name}'")))
        known = ", ".join(map(str, existing)) if existing else "none yet"
        raise ProfileError(f"{name} has no version {version}; versions: {known}") from None


def load_profile(source: Config | MlflowClient, version: str | int, model_name: str | None = None) -> ReferenceProfile:
    """The reference profile kept with a registered version's run."""
    client, name = _client_and_name(source, model_name)
    found = model_version(client, version, name)
    kept = {Path(a.path).name for a in client.list_artifacts(found.run_id, PROFILE_DIR)}
    if not {PROFILE_FILE, SAMPLE_FILE} <= kept:
        raise ProfileError(f"{name} version {version} has no reference profile (trained before profiles were "
                           f"kept); make one with `{PROFILE_COMMAND.format(version=version)}`")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(client.download_artifacts(found.run_id, PROFILE_DIR, tmp))
        data = json.loads((folder / PROFILE_FILE).read_text())
        sample = pd.read_parquet(folder / SAMPLE_FILE)
    return ReferenceProfile.from_json(data, sample)


def _client_and_name(source: Config | MlflowClient, model_name: str | None) -> tuple[MlflowClient, str]:
    if isinstance(source, Config):
        client = MlflowClient(tracking_uri=source.tracking_uri, registry_uri=source.tracking_uri)
        return client, model_name or source.registry.model_name
    return source, model_name or Config().registry.model_name
