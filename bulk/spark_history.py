"""Point-in-time history features on Spark: the same numbers as features/history.py, as window functions.

A claim's moment is the first present of its report and loss dates, in whole seconds of UTC (`t`);
its person is its claimant, else its policy (TIME_FIELDS and PERSON_FIELDS). A claim without a
moment counts for nobody and gets nulls. Each entity is one shuffle, ordered by `t`:

- `{claimant,policy,provider}_claims_{90,365}d`: count over
  `partitionBy(entity).orderBy(t).rangeBetween(-days * 86400, -1)`, i.e. claims of the same entity
  in [t - days, t): the claim itself and claims in the same second are out, claims exactly 90 or
  365 days earlier are in.
- `days_since_claimant_last_claim`: (t - max(t) over `rangeBetween(unboundedPreceding, -1)`) / 86400.0
  on the claimant's window; null when the claimant has no earlier claim.
- `{payee_account,phone,address}_other_claimants`: Spark has no distinct count over a window, so
  each (entity, person) pair flags the row of its first use (row_number over the pair ordered by t);
  a running sum of those flags over `partitionBy(entity).orderBy(t).rangeBetween(unboundedPreceding, -1)`
  counts the people who used the entity before t, less one when the claim's own person (min of t over
  the pair) is among them. The frame is repartitioned by the entity first, so the pair window and the
  entity window share one shuffle.

A requested feature whose entity column is absent is all null, as the pandas path gives NaN.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from features.history import (COUNTED_ENTITIES, PERSON_FIELDS, SECONDS_PER_DAY, SHARED_ENTITIES, TIME_FIELDS,
                              WINDOWS_DAYS, history_feature_requirements)

_SECONDS = "_history_seconds"
_ENTITY = "_history_entity"
_SPREAD = "_history_spread"
_PERSON = "_history_person"
_FIRST_USE = "_history_first_use"
_OWN_FIRST = "_history_own_first"
LAST_CLAIM = "days_since_claimant_last_claim"


def history_columns(frame: DataFrame, names: list[str]) -> DataFrame:
    """`frame` (validated claims, one row per claim_id) with a DOUBLE column per history feature in
    `names`, equal to features.history.history_features on the same claims (null where it gives NaN)."""
    unknown = sorted(set(names) - set(history_feature_requirements()))
    if unknown:
        raise ValueError(f"not history features: {', '.join(unknown)}")
    wanted = list(dict.fromkeys(names))
    work = frame.withColumn(_SECONDS, _seconds(frame))
    person = _first_present(frame, PERSON_FIELDS)
    done: list[str] = []
    for field, prefix in COUNTED_ENTITIES.items():
        mine = [n for n in wanted if n.startswith(f"{prefix}_claims_") or (prefix == "claimant" and n == LAST_CLAIM)]
        if mine and field in frame.columns:
            work = _window_counts(work, field, prefix, mine)
            done += mine
    for field, prefix in SHARED_ENTITIES.items():
        name = f"{prefix}_other_claimants"
        if name in wanted and field in frame.columns and person is not None:
            work = _other_claimants(work, field, person, name)
            done.append(name)
    features = [F.col(n) if n in done else F.lit(None).cast("double").alias(n) for n in wanted]
    return work.select(*[F.col(c) for c in frame.columns], *features)


def _first_present(frame: DataFrame, fields: tuple[str, ...]) -> Column | None:
    """Per row, the first of `fields` it has, over those that are columns; None if none is."""
    present = [F.col(f) for f in fields if f in frame.columns]
    return F.coalesce(*present) if present else None


def _seconds(frame: DataFrame) -> Column:
    """Whole seconds of UTC since 1970 of each claim's moment (null without one)."""
    times = [F.col(f).cast("timestamp") for f in TIME_FIELDS if f in frame.columns]
    if not times:  # no claim dates at all: no history, every feature null
        return F.lit(None).cast("long")
    return F.unix_seconds(F.coalesce(*times))


def _with_entity(work: DataFrame, field: str, person: Column | None = None) -> DataFrame:
    """Add the entity a claim counts under (null when the claim has no moment, or no person when one
    is needed), and a spread key: rows without an entity get nulls anyway, and would otherwise all
    meet in one task (a book's claims without a provider can be most of it)."""
    known = F.col(_SECONDS).isNotNull() & F.col(field).isNotNull()
    if person is not None:
        known = known & person.isNotNull()
    return (work.withColumn(_ENTITY, F.when(known, F.col(field)))
            .withColumn(_SPREAD, F.when(~known, F.col("claim_id"))))


def _window_counts(work: DataFrame, field: str, prefix: str, names: list[str]) -> DataFrame:
    """Claims of the same entity in [t - window, t), and days since the entity's previous claim."""
    work = _with_entity(work, field)
    by_time = Window.partitionBy(_ENTITY, _SPREAD).orderBy(_SECONDS)
    known = F.col(_ENTITY).isNotNull()
    columns = {}
    for days in WINDOWS_DAYS:
        name = f"{prefix}_claims_{days}d"
        if name in names:
            earlier = by_time.rangeBetween(-days * SECONDS_PER_DAY, -1)
            columns[name] = F.when(known, F.count(F.lit(1)).over(earlier)).cast("double")
    if LAST_CLAIM in names:
        previous = F.max(_SECONDS).over(by_time.rangeBetween(Window.unboundedPreceding, -1))
        columns[LAST_CLAIM] = F.when(known, (F.col(_SECONDS) - previous) / F.lit(float(SECONDS_PER_DAY)))
    return work.withColumns(columns).drop(_ENTITY, _SPREAD)


def _other_claimants(work: DataFrame, field: str, person: Column, name: str) -> DataFrame:
    """Distinct people other than the claim's own who used the same entity in strictly earlier claims."""
    work = _with_entity(work, field, person).withColumn(_PERSON, person).repartition(_ENTITY, _SPREAD)
    pair = Window.partitionBy(_ENTITY, _SPREAD, _PERSON).orderBy(_SECONDS)
    whole_pair = pair.rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)
    before = Window.partitionBy(_ENTITY, _SPREAD).orderBy(_SECONDS).rangeBetween(Window.unboundedPreceding, -1)
    # One flag per (entity, person) on a row of its earliest second; ties in that second are all
    # outside every window that could count it, so which row carries it does not matter.
    work = work.withColumns({_FIRST_USE: (F.row_number().over(pair) == 1).cast("long"),
                             _OWN_FIRST: F.min(_SECONDS).over(whole_pair)})
    users_before = F.coalesce(F.sum(_FIRST_USE).over(before), F.lit(0))
    own_before = (F.col(_OWN_FIRST) < F.col(_SECONDS)).cast("long")
    value = F.when(F.col(_ENTITY).isNotNull(), users_before - own_before).cast("double")
    return work.withColumn(name, value).drop(_ENTITY, _SPREAD, _PERSON, _FIRST_USE, _OWN_FIRST)
