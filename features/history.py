"""Point-in-time history features per entity (claimant, policy, provider, payee, phone, address).

Only claims reported strictly before a claim count towards its features, so a model never sees
the future. The same vectorised code serves a training frame of millions (the frame is its own
history) and one claim scored online against the store's history of its entities.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.schema import OUTCOME_TIME_FIELD

SECONDS_PER_DAY = 86_400
WINDOWS_DAYS = (90, 365)
# Composite sort key = entity code << 34 | seconds since 1900: 2^34 s covers 544 years.
_TIME_BITS = 34
_EPOCH = np.datetime64("1900-01-01T00:00:00", "s")

# A claim's moment in history is when it was reported; an extract without report dates counts by
# when the loss happened instead (the same fallback the split by time uses). Who made a claim is its
# claimant; an extract without claimant ids lets the policy stand in (one policy, one insured).
TIME_FIELDS = ("report_date", "loss_date")
PERSON_FIELDS = ("claimant_id", "policy_id")

# entity -> (feature prefix, whether its windowed claim counts are features)
COUNTED_ENTITIES = {"claimant_id": "claimant", "policy_id": "policy", "provider_id": "provider"}
# Entities whose use by several distinct claimants is the signature of a ring.
SHARED_ENTITIES = {"payee_account": "payee_account", "claimant_phone": "phone", "claimant_address": "address"}


def history_feature_requirements(time: str = "report_date", person: str = "claimant_id") -> dict[str, tuple[str, ...]]:
    """Each history feature and the claim fields it needs, when claims are placed in time by `time`
    and told apart by `person` (see TIME_FIELDS and PERSON_FIELDS)."""
    needs: dict[str, tuple[str, ...]] = {}
    for field, prefix in COUNTED_ENTITIES.items():
        for days in WINDOWS_DAYS:
            needs[f"{prefix}_claims_{days}d"] = (field, time)
    needs["days_since_claimant_last_claim"] = ("claimant_id", time)
    for field, prefix in SHARED_ENTITIES.items():
        needs[f"{prefix}_other_claimants"] = tuple(dict.fromkeys((field, person, time)))
    return needs


def first_present(frame: pd.DataFrame, fields: tuple[str, ...]) -> pd.Series | None:
    """Per claim, the first of `fields` it has (a claim's history time or person); None if none is a column."""
    found = None
    for name in fields:
        if name in frame.columns:
            found = frame[name] if found is None else found.where(found.notna(), frame[name])
    return found


def history_features(claims: pd.DataFrame, history: pd.DataFrame | None = None,
                     names: list[str] | None = None) -> dict[str, np.ndarray]:
    """History features for `claims`, counted over `history` (default: `claims` themselves).

    A claim present in both (same claim_id) counts once: the version in `claims` is used.
    Returns float64 arrays aligned with `claims`, restricted to `names` when given.
    """
    pool = history_pool(claims, history)
    targets = slice(len(pool) - len(claims), len(pool))
    moments = first_present(pool, TIME_FIELDS)
    wanted = set(names) if names is not None else set(history_feature_requirements())
    out: dict[str, np.ndarray] = {}
    if moments is None:  # no claim dates at all: no history
        return {k: np.full(len(claims), np.nan) for k in wanted}
    timed = moments.notna().to_numpy()
    seconds = (moments.to_numpy(dtype="datetime64[s]") - _EPOCH).astype(np.int64)
    for field, prefix in COUNTED_ENTITIES.items():
        if field in pool.columns and any(n.startswith(prefix + "_") or n.endswith("last_claim") for n in wanted):
            out.update(_window_counts(pool[field].where(timed), seconds, prefix, targets, wanted))
    person = first_present(pool, PERSON_FIELDS)
    for field, prefix in SHARED_ENTITIES.items():
        name = f"{prefix}_other_claimants"
        if name in wanted and field in pool.columns and person is not None:
            out[name] = _other_claimants(pool[field].where(timed), person, seconds)[targets]
    # An entity field absent from these claims (left out of a request) gives missing, not an error.
    return {k: out.get(k, np.full(len(claims), np.nan)) for k in wanted}


def history_pool(claims: pd.DataFrame, history: pd.DataFrame | None) -> pd.DataFrame:
    """The history and the claims in one frame, each claim once (the version in `claims`), claims last."""
    if history is None or len(history) == 0:
        return claims
    earlier = history.loc[~history["claim_id"].isin(claims["claim_id"])]
    columns = [c for c in claims.columns if c in earlier.columns]
    if OUTCOME_TIME_FIELD.name in earlier.columns and OUTCOME_TIME_FIELD.name not in columns:
        # When the history's fraud was confirmed (features/graph.py): claims being scored have no
        # outcome yet, so it is missing for them.
        return pd.concat([earlier[[*columns, OUTCOME_TIME_FIELD.name]], claims[columns]], ignore_index=True)
    return pd.concat([earlier[columns], claims[columns]], ignore_index=True)


def _codes(values: pd.Series) -> np.ndarray:
    codes, _ = pd.factorize(values, use_na_sentinel=True)
    return codes.astype(np.int64)


def _window_counts(entity: pd.Series, seconds: np.ndarray, prefix: str, targets: slice,
                   wanted: set[str]) -> dict[str, np.ndarray]:
    """Claims of the same entity reported in [t - window, t), and days since the last one."""
    codes = _codes(entity)
    known = codes >= 0
    keys = (codes << _TIME_BITS) + seconds
    ordered = np.sort(keys[known])
    own, t, k = keys[targets], seconds[targets], codes[targets] >= 0
    before = np.searchsorted(ordered, own, side="left")
    out = {}
    for days in WINDOWS_DAYS:
        start = np.searchsorted(ordered, own - days * SECONDS_PER_DAY, side="left")
        out[f"{prefix}_claims_{days}d"] = np.where(k, before - start, np.nan).astype(np.float64)
    if prefix == "claimant" and "days_since_claimant_last_claim" in wanted:
        first_of_entity = np.searchsorted(ordered, (codes[targets] << _TIME_BITS), side="left")
        has_prior = k & (before > first_of_entity)
        previous = ordered[np.maximum(before - 1, 0)] & ((1 << _TIME_BITS) - 1)
        out["days_since_claimant_last_claim"] = np.where(has_prior, (t - previous) / SECONDS_PER_DAY, np.nan)
    return out


def _other_claimants(entity: pd.Series, claimant: pd.Series, seconds: np.ndarray) -> np.ndarray:
    """Distinct claimants other than this claim's who used the same entity in earlier claims."""
    codes, people = _codes(entity), _codes(claimant)
    known = (codes >= 0) & (people >= 0)
    pair = pd.Series(seconds[known]).groupby([codes[known], people[known]], sort=False).min()
    pair_entity = pair.index.get_level_values(0).to_numpy(dtype=np.int64)
    first_seen = np.sort((pair_entity << _TIME_BITS) + pair.to_numpy(dtype=np.int64))
    entity_start = np.searchsorted(first_seen, codes << _TIME_BITS, side="left")
    users_before = np.searchsorted(first_seen, (codes << _TIME_BITS) + seconds, side="left") - entity_start
    # Subtract the claimant's own earlier use of the entity: we count the *other* people.
    own_first = pd.Series(pair.to_numpy(dtype=np.int64), index=pair.index)
    lookup = pd.MultiIndex.from_arrays([codes, people])
    own_seen = own_first.reindex(lookup).to_numpy(dtype=np.float64)
    own_before = (own_seen < seconds).astype(np.int64)
    return np.where(known, users_before - own_before, np.nan).astype(np.float64)
