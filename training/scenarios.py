"""Drift scenarios: generated books shifted the way a claims book shifts, to prove monitoring and retraining on.

A scenario transforms a generated book (`training.generate.generate_claims`) after the fact and
changes only what it names: `later` moves every date, `inflation` scales amounts, `fraud` raises
the fraud rate, `ring` adds a fraud ring working through a provider never seen before. Each is
written `NAME[:KEY=VALUE[:KEY=VALUE]]`, several separated by commas, e.g.
`inflation:factor=1.5:loss_types=water+fire,ring:claims=60`.

`book_and_next_month` generates a book and the month that follows it from one history (the same
policies, claimants and providers run on), with the scenarios applied to that month only: what a
champion trained on the book meets when the book shifts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from training.generate import draw_labels, generate_claims

DATE_COLUMNS = ("policy_start_date", "loss_date", "report_date", "customer_since")
DAYS_PER_MONTH = 30.44
LATE_REPORT_MONTHS = 4  # the generator reports late claims up to 120 days after the loss


@dataclass(frozen=True)
class Scenario:
    """One named shift with its parameters (defaults filled in)."""

    name: str
    params: dict = field(default_factory=dict)


def later(book: pd.DataFrame, rng, history: pd.DataFrame | None, days: int = 365) -> pd.DataFrame:
    """Every date `days` later: the same claims in a later year (seasonless drift of calendar fields)."""
    shift = pd.Timedelta(days=int(days))
    return book.assign(**{c: book[c] + shift for c in DATE_COLUMNS if c in book.columns})


def inflation(book: pd.DataFrame, rng, history: pd.DataFrame | None, factor: float = 1.3,
              loss_types: str = "") -> pd.DataFrame:
    """Claim amounts times `factor` (claims inflation), for the `loss_types` given ('+'-separated) or all.

    The labels stay: in the generator a claim's fraud signal is its amount against its loss type's
    median, which inflation of the whole type leaves where it was."""
    factor = float(factor)
    if factor <= 0:
        raise ValueError(f"scenario inflation: factor must be above 0, got {factor}")
    chosen = [t for t in str(loss_types).split("+") if t]
    unknown = sorted(set(chosen) - set(book["loss_type"].unique()))
    if unknown:
        raise ValueError(f"scenario inflation: loss_types {', '.join(unknown)} not in the book "
                         f"(it has {', '.join(sorted(book['loss_type'].unique()))})")
    hit = book["loss_type"].isin(chosen).to_numpy() if chosen else np.ones(len(book), dtype=bool)
    amount = book["claim_amount"].to_numpy(dtype=float).copy()
    amount[hit] = np.round(amount[hit] * factor, 2)
    return book.assign(claim_amount=amount)


def fraud(book: pd.DataFrame, rng, history: pd.DataFrame | None, odds: float = 3.0) -> pd.DataFrame:
    """The odds of fraud on every claim times `odds`, labels redrawn: more fraud behind the same claims.

    Coupled draw: a claim already fraudulent stays so, an honest one turns fraudulent with
    probability (p' - p) / (1 - p), so is_fraud ~ Bernoulli(p') exactly and the claims themselves
    (the features a monitor sees) do not move; only realised quality and calibration do."""
    odds = float(odds)
    if odds < 1:
        raise ValueError(f"scenario fraud: odds must be at least 1 (a higher fraud rate), got {odds}")
    p = book["true_fraud_prob"].to_numpy(dtype=float)
    shifted = p * odds / (1 - p + p * odds)
    was = book["is_fraud"].to_numpy(dtype=bool)
    turns = ~was & (rng.random(len(book)) < (shifted - p) / (1 - p))
    is_fraud = was | turns
    return book.assign(is_fraud=is_fraud, paid_as_filed=book["paid_as_filed"].to_numpy(dtype=bool) & ~is_fraud,
                       true_fraud_prob=shifted,
                       true_paid_as_filed_prob=book["true_paid_as_filed_prob"].to_numpy() * (1 - shifted) / (1 - p))


def ring(book: pd.DataFrame, rng, history: pd.DataFrame | None, claims: int = 40, members: int = 10) -> pd.DataFrame:
    """A new fraud ring of `members` people filing `claims` claims within the book's dates, through one
    provider no earlier claim used, sharing phones, payee accounts and an address.

    Each ring claim is an ordinary claim of the book (picked at random) made the ring's: new
    claimant and policy (taken out shortly before), shared contact details, the new provider, the
    amount inflated 1.3-2.5x, police and witnesses rarer. Its labels are drawn as the generator draws
    every label, from what a model can observe, with the ring's own bonus; the book's own claims
    and labels stay as they were."""
    claims, members = int(claims), int(members)
    if not 1 <= members <= claims:
        raise ValueError(f"scenario ring: need 1 <= members <= claims, got members={members}, claims={claims}")
    added = _ring_claims(book, rng, claims, members)
    pool = pd.concat([history, book] if history is not None else [book], ignore_index=True)
    added = _ring_labels(pool, added, rng)
    return pd.concat([book, added], ignore_index=True).sort_values(
        ["report_date", "claim_id"], kind="stable").reset_index(drop=True)


def _ring_claims(book: pd.DataFrame, rng, n: int, members: int) -> pd.DataFrame:
    """The ring's claims, without labels, reported within the book's report dates."""
    out = book.iloc[rng.integers(0, len(book), size=n)].reset_index(drop=True).copy()
    member = rng.permutation(np.arange(n) % members)
    tag = f"{rng.integers(0, 16**6):06x}"  # 'r' in every id: never a generated (hex) id

    def ids(prefix: str, values) -> pd.array:
        return pd.array([f"{prefix}r{tag}{v:04d}" for v in values], dtype="str")

    first, last = book["report_date"].min(), book["report_date"].max()
    report = pd.Series(first + (last - first) * rng.random(n))
    delay = pd.to_timedelta(np.where(rng.random(n) < 0.25, rng.uniform(7, 30, n), rng.exponential(1.2, n)), unit="D")
    loss = (report - delay.to_numpy()).dt.floor("D")
    start = loss - pd.to_timedelta(rng.integers(10, 200, size=members)[member], unit="D").to_numpy()
    out["claim_id"] = ids("C", range(n))
    out["policy_id"], out["claimant_id"] = ids("P", member), ids("CL", member)
    # Each person's contact details: most share one of the ring's few, as in the generator's rings.
    own = 10 + np.arange(members)
    out["claimant_phone"] = ids("PH", np.where(rng.random(members) < 0.7, rng.integers(0, 3, members), own)[member])
    out["payee_account"] = ids("AC", np.where(rng.random(members) < 0.7, rng.integers(0, 2, members), own)[member])
    out["claimant_address"] = ids("AD", np.where(rng.random(members) < 0.5, 0, own)[member])
    out["provider_id"] = ids("PR", np.zeros(n, dtype=int))
    out["loss_date"], out["report_date"] = loss.astype(book["loss_date"].dtype), report.astype(book["report_date"].dtype)
    out["policy_start_date"] = start.astype(book["policy_start_date"].dtype)
    out["customer_since"] = out["policy_start_date"]
    out["claim_amount"] = np.round(out["claim_amount"].to_numpy(dtype=float) * rng.uniform(1.3, 2.5, n), 2)
    out.loc[rng.random(n) < 0.5, "police_report"] = False
    out.loc[rng.random(n) < 0.6, "witnesses"] = 0
    out["is_injected_anomaly"] = False
    return out


def _ring_labels(pool: pd.DataFrame, added: pd.DataFrame, rng) -> pd.DataFrame:
    """Labels for the ring's claims drawn as the generator draws them, history counted over `pool`."""
    everything = pd.concat([pool, added], ignore_index=True)
    is_ring = np.arange(len(everything)) >= len(pool)
    hour = everything["loss_hour"].to_numpy(dtype=float, na_value=12.0)
    draw_labels(rng, everything, {"is_ring": is_ring, "hour": hour})
    return everything.loc[is_ring].reset_index(drop=True)


SCENARIOS = {"later": later, "inflation": inflation, "fraud": fraud, "ring": ring}


def parse_scenarios(text: str) -> list[Scenario]:
    """`NAME[:KEY=VALUE...]` separated by commas, into scenarios; unknown names and keys are errors naming
    what exists."""
    out = []
    for part in (p.strip() for p in (text or "").split(",") if p.strip()):
        name, *pairs = part.split(":")
        if name not in SCENARIOS:
            raise ValueError(f"unknown scenario {name!r}; the scenarios are {', '.join(SCENARIOS)}")
        known = _parameters(name)
        params = {}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep or key not in known:
                raise ValueError(f"scenario {name}: {pair!r} is not KEY=VALUE with KEY one of {', '.join(known)}")
            params[key] = value
        out.append(Scenario(name, params))
    return out


def _parameters(name: str) -> tuple[str, ...]:
    code = SCENARIOS[name].__code__
    return code.co_varnames[3:code.co_argcount]


def apply_scenarios(book: pd.DataFrame, scenarios: list[Scenario], seed: int = 0,
                    history: pd.DataFrame | None = None) -> pd.DataFrame:
    """`book` with the scenarios applied in order; `history`: the earlier claims a ring's labels count over."""
    rng = np.random.default_rng([seed, 14])
    for scenario in scenarios:
        book = SCENARIOS[scenario.name](book, rng, history, **scenario.params)
    return book


def book_and_next_month(n_claims: int, seed: int = 0, months: int = 12, scenarios: list[Scenario] = (),
                        start: str = "2023-01-01") -> tuple[pd.DataFrame, pd.DataFrame]:
    """A book of `months` months and the month reported after it (about `n_claims` in both), from one
    generated history (the same policies, people and providers); the scenarios shift the month only.

    The history runs on past the month and what is reported after it is dropped, so the month holds
    late reports of earlier losses as every month of the book does (cutting the history at the month's
    end would leave it short of them, and a monitor would see drift in report delays that is not there)."""
    span = months + 1 + LATE_REPORT_MONTHS
    claims = generate_claims(round(n_claims * span / (months + 1)), seed=seed, start=start, months=span)
    day = np.timedelta64(1, "D")
    cutoff = np.datetime64(start, "D") + int(months * DAYS_PER_MONTH) * day
    month_end = cutoff + int(DAYS_PER_MONTH) * day
    reported = claims["report_date"].to_numpy()
    book = claims.loc[reported < cutoff].reset_index(drop=True)
    following = claims.loc[(reported >= cutoff) & (reported < month_end)].reset_index(drop=True)
    return book, apply_scenarios(following, list(scenarios), seed, history=book)

def generate_with_scenarios(n_claims: int, seed: int, scenarios: list[Scenario],
                            next_month: bool = False) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """What `claimtriage generate` writes: the book shifted by the scenarios, or, with `next_month`,
    the book as it was and its next month shifted."""
    if next_month:
        return book_and_next_month(n_claims, seed, scenarios=scenarios)
    return apply_scenarios(generate_claims(n_claims, seed=seed), scenarios, seed), None
