"""Synthetic claims with the fraud mechanisms a claims professional would recognise.

Policies, claimants, providers, payee accounts, phones and addresses recur over a history of
two years or more. Labels are drawn from probabilities that are written out beside them
(`true_fraud_prob`, `true_paid_as_filed_prob`), so every model figure can be set against the best
any model could do. Those probabilities depend almost only on what a model can observe (the
claim and its entities' earlier claims): real fraud is rare and never cleanly separable, but the
gap to the oracle must come from the model, not from hidden dice.

Sharing alone is not fraud: families share an address (often a landline), business fleets are paid
into one account, and a colluding provider is a busy, real shop whose ordinary claims outnumber its
rings'. Rings work for months, recruiting members one after another, and are linked either through a
hub (one account or address most members use) or only through a chain (each member shares one
identity with the one before and another with the one after), so that no single shared value gives
a chain away and only the graph of links does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from features.history import history_features

DAY = np.timedelta64(1, "D")
CLAIMS_PER_POLICY = 2.5
REGIONS = np.array(["north", "south", "east", "west", "central", "coast", "mountain", "metro"])
LOSS_TYPES = {  # line -> (loss types, their shares, median cost, spread of log cost)
    "auto": (["collision", "theft", "glass", "injury", "vandalism"], [0.45, 0.10, 0.20, 0.10, 0.15],
             [4_500, 9_000, 600, 15_000, 1_500], [0.7, 0.6, 0.4, 0.9, 0.6]),
    "property": (["water", "fire", "storm", "theft", "vandalism"], [0.35, 0.10, 0.30, 0.15, 0.10],
                 [7_000, 30_000, 9_000, 5_000, 2_500], [0.8, 1.0, 0.8, 0.7, 0.6]),
}
AUTO_SHARE = 0.65
RING_EVERY = 2_000          # one fraud ring per this many claims
RING_MEMBERS = (4, 17)      # members per ring, [low, high)
RING_ACTIVE_DAYS = (90, 366)  # a ring works for three to twelve months, [low, high)
RING_RECRUITING = 0.75      # members join over the first three quarters of the ring's months
RING_CHAIN_SHARE = 0.4      # rings linked only member to member; the others are stars around a hub
RING_HUB_USE = 0.85         # share of a star's members on its hub...
RING_HUB_ACCOUNT = 0.6      # ...a payee account for this share of stars, else an address (a mail drop)
RING_AUTO_SHARE = 0.8       # staged crashes and injuries: most rings work motor claims
RING_VIA_COLLUDER = 0.85    # share of ring claims handled by the ring's colluding provider
COLLUDER_BOOK = 10_000      # one colluding provider, one more for each tenfold of this many claims
COLLUDER_SHARE = 0.04       # share of its line's ordinary claims a colluding provider handles: a busy shop
HOUSEHOLD_SHARE = 0.05      # claimants living in a family at one address
HOUSEHOLD_SIZE = (2, 6)     # claimants per family, [low, high)
HOUSEHOLD_LANDLINE = 0.6    # families sharing a landline phone too
FLEET_EVERY = 10_000        # one business fleet paid into one account per this many claims
FLEET_DRIVERS = (5, 41)     # drivers (claimants) per fleet, [low, high)
FRAUD_CONFIRMED_SHARE = 0.7   # fraud an investigation confirms...
FRAUD_CONFIRMED_DAYS = (30, 180)  # ...this many days after the report
LOSS_BEFORE_START = 0.012   # share of losses dated before the policy started (back-dated cover)
LATE_REPORT_SHARE = 0.08    # share reported weeks or months late
FRAUD_BASE_LOGIT = -7.6
FRAUD_SIGNAL_SCALE = 1.4
PAID_BASE_LOGIT = 1.0
PAID_SIMPLE_BONUS = 5.0     # glass repairs: small, standard, almost always paid as filed
# Identity kinds a ring member can share, in the order a chain alternates them.
PHONE, ACCOUNT, ADDRESS = 0, 1, 2


def generate_claims(n_claims: int, seed: int = 0, start: str = "2023-01-01", months: int = 30,
                    anomaly_rate: float = 0.005) -> pd.DataFrame:
    """A deterministic synthetic claims history of `n_claims` claims, sorted by report time."""
    if n_claims < 100:
        raise ValueError(f"n_claims must be at least 100, got {n_claims}")
    rng = np.random.default_rng(seed)
    span_start = np.datetime64(start, "D")
    span_days = int(months * 30.44)
    n_rings = max(1, n_claims // RING_EVERY)
    n_colluders = 1 + int(np.log10(max(n_claims, COLLUDER_BOOK) / COLLUDER_BOOK))
    ring = _rings(rng, n_rings, span_days, n_colluders)
    n_regular = n_claims - len(ring["member"])
    people = _policies_and_people(rng, n_regular, max(1, n_claims // FLEET_EVERY), ring, span_start, span_days)
    claims = _claims(rng, people, ring, n_regular, span_start, span_days)
    injected = _inject_anomalies(rng, claims, anomaly_rate)
    frame = _frame(claims, people, seed, n_colluders)
    frame["is_injected_anomaly"] = injected
    frame["ring_id"] = pd.array(claims["ring"], dtype="Int64")
    frame.loc[~claims["is_ring"], "ring_id"] = pd.NA  # ground truth, like is_injected_anomaly: never an input
    draw_labels(rng, frame, claims)
    frame = frame.sort_values(["report_date", "claim_id"], kind="stable").reset_index(drop=True)
    frame["claim_id"] = pd.array([f"C{i:09d}" for i in range(len(frame))], dtype="str")
    return frame


def _rings(rng, n_rings: int, span_days: int, n_colluders: int) -> dict:
    """Ring members recruited one after another while the ring works, each filing one to three claims."""
    sizes = rng.integers(*RING_MEMBERS, size=n_rings)
    member_ring = np.repeat(np.arange(n_rings), sizes)
    rank = np.arange(len(member_ring)) - (np.cumsum(sizes) - sizes)[member_ring]
    active_days = np.minimum(rng.integers(*RING_ACTIVE_DAYS, size=n_rings), span_days)
    active_from = rng.integers(0, np.maximum(span_days - active_days, 1))
    # The organiser starts the ring; the others join in order (a chain grows member by member).
    recruited = np.sort(rng.random(len(member_ring)) + member_ring) - member_ring  # sorted within each ring
    recruited[rank == 0] = 0.0
    join_day = active_from[member_ring] + (recruited * RING_RECRUITING * active_days[member_ring]).astype(int)
    claims_each = rng.integers(1, 4, size=len(member_ring))
    claim_member = np.repeat(np.arange(len(member_ring)), claims_each)
    ring_of_claim = member_ring[claim_member]
    working = active_from[ring_of_claim] + active_days[ring_of_claim] - join_day[claim_member]
    loss_day = join_day[claim_member] + (rng.random(len(claim_member)) * working).astype(int)
    auto = rng.random(n_rings) < RING_AUTO_SHARE
    return {"n": n_rings, "member_ring": member_ring, "rank": rank, "size": sizes, "join_day": join_day,
            "member": claim_member, "ring": ring_of_claim, "loss_day": loss_day, "auto": auto,
            "chain": rng.random(n_rings) < RING_CHAIN_SHARE,
            "hub": np.where(rng.random(n_rings) < RING_HUB_ACCOUNT, ACCOUNT, ADDRESS),
            "colluder": _ring_colluders(rng, auto, n_colluders)}


def _ring_colluders(rng, ring_auto: np.ndarray, n_colluders: int) -> np.ndarray:
    """Each ring's colluding provider: one of the line the ring works (even: motor, odd: property), if any."""
    colluder_auto = np.arange(n_colluders) % 2 == 0
    out = np.empty(len(ring_auto), dtype=np.int64)
    for line in (True, False):
        same = np.flatnonzero(colluder_auto == line)
        pool = same if len(same) else np.arange(n_colluders)
        rings = ring_auto == line
        out[rings] = pool[rng.integers(0, len(pool), size=rings.sum())]
    return out


def _ring_identities(rng, ring: dict, first_id: int) -> np.ndarray:
    """Per ring member, the phone, account and address ids it shares (rows PHONE, ACCOUNT, ADDRESS); -1: its own.

    A chain's link between the members ranked l and l+1 is a phone, an account, an address in turn,
    so every member shares one identity with the one before and another with the one after and no
    identity reaches three members. A star's members mostly use its hub, an account or an address.
    """
    n = len(ring["member_ring"])
    member = np.arange(n)
    rank, chain = ring["rank"], ring["chain"][ring["member_ring"]]
    ids = np.full((3, n), -1, dtype=np.int64)
    before = chain & (rank > 0)
    after = chain & (rank < ring["size"][ring["member_ring"]] - 1)
    ids[(rank[before] - 1) % 3, member[before]] = first_id + member[before] - 1
    ids[rank[after] % 3, member[after]] = first_id + member[after]
    on_hub = ~chain & ((rank == 0) | (rng.random(n) < RING_HUB_USE))
    ids[ring["hub"][ring["member_ring"][on_hub]], member[on_hub]] = first_id + n + ring["member_ring"][on_hub]
    return ids


def _families_and_fleets(rng, n_people: int, n_fleets: int) -> dict:
    """Legitimate sharing among ordinary policyholders: families of two to five at one address (most on
    one landline), and the drivers of a business fleet paid into the fleet's one account."""
    mean_size = np.mean(np.arange(*HOUSEHOLD_SIZE))
    family_size = rng.integers(*HOUSEHOLD_SIZE, size=max(1, round(n_people * HOUSEHOLD_SHARE / mean_size)))
    fleet_size = np.minimum(rng.integers(*FLEET_DRIVERS, size=n_fleets), max(2, n_people // (4 * n_fleets)))
    picked = rng.permutation(n_people)[:family_size.sum() + fleet_size.sum()]
    in_family, in_fleet = picked[:family_size.sum()], picked[family_size.sum():]
    family = np.repeat(np.arange(len(family_size)), family_size)
    return {"in_family": in_family, "head": in_family[(np.cumsum(family_size) - family_size)[family]],
            "landline": (rng.random(len(family_size)) < HOUSEHOLD_LANDLINE)[family],
            "in_fleet": in_fleet, "fleet": np.repeat(np.arange(n_fleets), fleet_size)}


def _policies_and_people(rng, n_regular: int, n_fleets: int, ring: dict, span_start, span_days: int) -> dict:
    """Policies with their claimant, contact details, payee account; families, fleets and rings share some."""
    n_policies = max(10, int(n_regular / CLAIMS_PER_POLICY))
    n_members = len(ring["member_ring"])
    total = n_policies + n_members
    claimant = np.arange(total)
    reuse = rng.random(n_policies) < 0.04  # some claimants hold a second policy
    claimant[:n_policies][reuse] = rng.integers(0, n_policies, size=reuse.sum())
    inside = rng.random(total) < 0.25
    start = np.where(inside, rng.integers(0, span_days, size=total), -rng.integers(30, 8 * 365, size=total))
    lob_auto = rng.random(total) < AUTO_SHARE
    phone, address, account = claimant.copy(), claimant.copy(), claimant.copy()
    shared = _families_and_fleets(rng, n_policies, n_fleets)
    head, landline = shared["head"], shared["landline"]
    address[shared["in_family"]] = address[head]
    phone[shared["in_family"][landline]] = phone[head[landline]]
    account[shared["in_fleet"]] = total + shared["fleet"]
    lob_auto[shared["in_fleet"]] = True
    m = slice(n_policies, total)
    ids = _ring_identities(rng, ring, first_id=total + n_fleets)
    for kind, column in ((PHONE, phone), (ACCOUNT, account), (ADDRESS, address)):
        column[m] = np.where(ids[kind] >= 0, ids[kind], column[m])
    # Identities shared for ordinary reasons, not fraud: anyone on them (a second policy of the same person too).
    legit = np.stack([np.isin(phone, phone[head[landline]]), np.isin(account, total + shared["fleet"]),
                      np.isin(address, address[head])])
    lob_auto[m] = ring["auto"][ring["member_ring"]]
    # Ring policies are taken out shortly before the member joins the ring.
    start[m] = ring["join_day"] - rng.integers(10, 200, size=n_members)
    first_start = pd.Series(start).groupby(claimant).transform("min").to_numpy()
    tenure = np.where(rng.random(total) < 0.6, rng.integers(0, 10 * 365, size=total), 0)
    return {"n_policies": n_policies, "claimant": claimant, "start": start, "auto": lob_auto, "phone": phone,
            "address": address, "account": account, "customer_since": first_start - tenure, "legit": legit,
            "age": np.clip(rng.normal(47, 15, size=total).round(), 18, 90).astype(int),
            "premium": np.round(rng.lognormal(np.log(np.where(lob_auto, 1_100, 1_400)), 0.35), 2),
            "limit": np.where(lob_auto, rng.choice([25e3, 50e3, 100e3, 250e3], size=total),
                              rng.choice([150e3, 300e3, 500e3, 1e6], size=total)),
            "deductible": rng.choice([250.0, 500.0, 1000.0, 2000.0], size=total, p=[0.2, 0.4, 0.3, 0.1]),
            "region": rng.integers(0, len(REGIONS), size=total), "span_start": span_start}


def _claims(rng, people: dict, ring: dict, n_regular: int, span_start, span_days: int) -> dict:
    """Which policy each claim is on, when it happened and what it cost."""
    # Claim counts per policy are overdispersed: a few policies claim again and again.
    weight = rng.gamma(0.6, size=people["n_policies"])
    policy = np.concatenate([rng.choice(people["n_policies"], size=n_regular, p=weight / weight.sum()),
                             people["n_policies"] + ring["member"]])
    n = len(policy)
    is_ring = np.arange(n) >= n_regular
    start = people["start"][policy]
    earliest = np.maximum(start, 0)
    loss_day = earliest + (rng.random(n) * (span_days - earliest)).astype(int)
    loss_day[is_ring] = np.maximum(ring["loss_day"], start[is_ring] + 1)
    # Back-dated cover: only policies that started inside the period can show it.
    early = (rng.random(n) < LOSS_BEFORE_START) & (start > 30)
    loss_day[early] = start[early] - rng.integers(1, 30, size=early.sum())
    auto = people["auto"][policy]
    loss_type, cost = _loss_types_and_costs(rng, auto)
    ring_inflate = np.where(is_ring, rng.uniform(1.3, 2.5, size=n), 1.0)
    amount = np.round(cost * ring_inflate, 2)
    ring_of_claim = np.r_[np.full(n_regular, -1), ring["ring"]]
    return {"policy": policy, "is_ring": is_ring, "ring": ring_of_claim,
            "colluder": np.where(is_ring, ring["colluder"][np.maximum(ring_of_claim, 0)], -1),
            "legit_shared": people["legit"][:, policy],
            "loss_day": loss_day, "auto": auto, "loss_type": loss_type, "amount": amount, "n": n,
            **_circumstances(rng, loss_type, auto, is_ring)}


def _loss_types_and_costs(rng, auto: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = len(auto)
    loss_type = np.empty(n, dtype=object)
    cost = np.empty(n)
    for line, is_line in (("auto", auto), ("property", ~auto)):
        names, shares, medians, spreads = LOSS_TYPES[line]
        pick = rng.choice(len(names), size=is_line.sum(), p=shares)
        loss_type[is_line] = np.array(names, dtype=object)[pick]
        cost[is_line] = np.exp(np.log(np.array(medians)[pick]) + np.array(spreads)[pick] * rng.normal(size=len(pick)))
    return loss_type, np.maximum(cost, 50.0)


def _circumstances(rng, loss_type: np.ndarray, auto: np.ndarray, is_ring: np.ndarray) -> dict:
    """Report delay, hour, police, witnesses, injuries, vehicles, attorney, provider use."""
    n = len(loss_type)
    late = rng.random(n) < LATE_REPORT_SHARE + 0.15 * is_ring
    delay_days = np.where(late, rng.uniform(7, 120, size=n), rng.exponential(1.2, size=n))
    night_prone = np.isin(loss_type, ["theft", "vandalism"])
    hour = np.where(night_prone & (rng.random(n) < 0.5), rng.integers(0, 5, size=n), rng.integers(6, 23, size=n))
    crime_or_crash = np.isin(loss_type, ["theft", "collision", "injury", "vandalism"])
    police = rng.random(n) < np.where(crime_or_crash, 0.75 - 0.4 * is_ring, 0.25)
    witnesses = rng.poisson(np.where(np.isin(loss_type, ["collision", "injury"]), 0.9 - 0.6 * is_ring, 0.2))
    injuries = np.where(loss_type == "injury", 1 + rng.poisson(0.5, size=n),
                        np.where(loss_type == "collision", rng.poisson(0.15, size=n), 0))
    vehicles = np.where(auto, np.where(loss_type == "collision", 1 + rng.poisson(0.7, size=n), 1), 0)
    attorney = rng.random(n) < np.where(loss_type == "injury", 0.3 + 0.4 * is_ring,
                                        np.where(loss_type == "collision", 0.05, 0.01))
    return {"delay_days": delay_days, "hour": hour, "police": police, "witnesses": witnesses, "injuries": injuries,
            "vehicles": vehicles, "attorney": attorney}


def _inject_anomalies(rng, claims: dict, rate: float) -> np.ndarray:
    """Abnormal payouts and absurd combinations, far outside anything the population shows."""
    n = claims["n"]
    injected = rng.random(n) < rate
    payout = injected & (rng.random(n) < 0.6)
    typical = pd.Series(claims["amount"]).groupby(claims["loss_type"]).transform("median").to_numpy()
    claims["amount"][payout] = np.round(typical[payout] * rng.uniform(15, 60, size=payout.sum()), 2)
    absurd = injected & ~payout
    claims["vehicles"][absurd] = rng.integers(6, 13, size=absurd.sum())
    claims["injuries"][absurd] = rng.integers(4, 10, size=absurd.sum())
    claims["witnesses"][absurd] = rng.integers(10, 30, size=absurd.sum())
    return injected


def _hashed(prefix: str, values: np.ndarray, seed: int) -> pd.arrays.ArrowStringArray:
    """Stable hash-looking ids: the claims system sends pseudonymised identifiers, never raw ones."""
    mixed = (values.astype(np.uint64) + np.uint64(seed * 1_000_003 + 1)) * np.uint64(0x9E3779B97F4A7C15)
    mixed ^= mixed >> np.uint64(29)
    text = [f"{prefix}{v:012x}" for v in (mixed & np.uint64(0xFFFFFFFFFFFF)).tolist()]
    return pd.array(text, dtype="str")


def _with_missing(rng, values, dtype: str, share: float):
    out = pd.array(values, dtype=dtype)
    out[rng.random(len(out)) < share] = pd.NA
    return out


def _providers(rng, claims: dict, n_colluders: int) -> np.ndarray:
    """Each claim's provider: ordinary shops of its line; colluding ones that are busy, real shops of their
    line (even: motor, odd: property) and also handle most of their rings' claims."""
    n = claims["n"]
    n_providers = max(20, n // 200)
    half = n_providers // 2
    provider = np.where(claims["auto"], rng.integers(0, half, size=n), rng.integers(half, n_providers, size=n))
    colluders = np.array([k // 2 if k % 2 == 0 else half + k // 2 for k in range(n_colluders)])
    for k, colluder in enumerate(colluders):
        takes = ~claims["is_ring"] & (claims["auto"] == (k % 2 == 0)) & (rng.random(n) < COLLUDER_SHARE)
        provider[takes] = colluder
    via = claims["is_ring"] & (rng.random(n) < RING_VIA_COLLUDER)
    provider[via] = colluders[claims["colluder"][via]]
    return provider


def _frame(claims: dict, people: dict, seed: int, n_colluders: int) -> pd.DataFrame:
    """The canonical claim record for every generated claim."""
    rng = np.random.default_rng(seed + 7)
    p = claims["policy"]
    n = claims["n"]
    span_start = people["span_start"]
    loss_date = span_start + claims["loss_day"] * DAY
    report = (loss_date.astype("datetime64[s]") + (claims["hour"] * 3600).astype("timedelta64[s]")
              + (claims["delay_days"] * 86_400).astype(np.int64).astype("timedelta64[s]"))
    provider = _providers(rng, claims, n_colluders)
    no_provider = ~claims["is_ring"] & (rng.random(n) < 0.15)
    provider_ids = _hashed("PR", provider, seed).astype(object)
    provider_ids[no_provider] = None
    return pd.DataFrame({
        "claim_id": pd.array([f"tmp{i}" for i in range(n)], dtype="str"),
        "policy_id": _hashed("P", p, seed),
        "claimant_id": _hashed("CL", people["claimant"][p], seed),
        "line_of_business": pd.array(np.where(claims["auto"], "auto", "property"), dtype="str"),
        "loss_type": pd.array(claims["loss_type"].astype(str), dtype="str"),
        "policy_start_date": (span_start + people["start"][p] * DAY).astype("datetime64[s]"),
        "loss_date": loss_date.astype("datetime64[s]"),
        "report_date": report,
        "claim_amount": claims["amount"],
        "coverage_limit": people["limit"][p],
        "deductible": people["deductible"][p],
        "annual_premium": people["premium"][p],
        "loss_hour": _with_missing(rng, claims["hour"], "Int64", 0.05),
        "police_report": _with_missing(rng, claims["police"], "boolean", 0.05),
        "attorney_involved": _with_missing(rng, claims["attorney"], "boolean", 0.03),
        "witnesses": _with_missing(rng, claims["witnesses"], "Int64", 0.03),
        "injuries": pd.array(claims["injuries"], dtype="Int64"),
        "vehicles_involved": pd.array(claims["vehicles"], dtype="Int64"),
        "region": pd.array(REGIONS[people["region"][p]], dtype="str"),
        "payee_account": _hashed("AC", people["account"][p], seed),
        "claimant_phone": _hashed("PH", people["phone"][p], seed),
        "claimant_address": _hashed("AD", people["address"][p], seed),
        "provider_id": pd.array(provider_ids, dtype="str"),
        "claimant_age": pd.array(people["age"][p], dtype="Int64"),
        "customer_since": (span_start + people["customer_since"][p] * DAY).astype("datetime64[s]"),
    })


# The fraud signal's terms and their weights on the log-odds scale (before FRAUD_SIGNAL_SCALE).
FRAUD_WEIGHTS = {"amount": 1.1, "new_policy": 1.4, "young_policy": 0.7, "backdated": 2.5, "late_report": 1.3,
                 "unverified_loss": 1.0, "night_theft": 0.8, "injury_attorney": 0.9, "repeat_claimant": 0.45,
                 "shared_identity": 1.6, "ring": 1.2}


def _observed(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """What the labels are drawn from, as the claim shows it (a missing police report or witness count
    reads 0.5: neither yes nor no)."""
    amount = frame["claim_amount"].to_numpy()
    typical = frame.groupby("loss_type")["claim_amount"].transform("median").to_numpy()
    days = lambda a, b: (frame[a] - frame[b]).dt.total_seconds().to_numpy() / 86_400  # noqa: E731
    return {"loss_type": frame["loss_type"].to_numpy(dtype=object), "amount": amount,
            "log_ratio": np.clip(np.log(amount / typical), -1.0, 3.0),
            "policy_age": days("loss_date", "policy_start_date"), "delay": days("report_date", "loss_date"),
            "police": frame["police_report"].to_numpy(dtype=float, na_value=0.5),
            "witnesses": frame["witnesses"].to_numpy(dtype=float, na_value=0.5),
            "attorney": frame["attorney_involved"].to_numpy(dtype=float, na_value=0.0)}


def fraud_terms(frame: pd.DataFrame, claims: dict, observed: dict | None = None) -> dict[str, np.ndarray]:
    """Each term of the fraud signal (FRAUD_WEIGHTS weighs them), from the claim, its entities' earlier
    claims and two things no model sees: whether the claim is a ring's (`claims["is_ring"]`) and which
    shared identities are shared for ordinary reasons (`claims["legit_shared"]`: rows PHONE, ACCOUNT,
    ADDRESS; without it every shared identity counts). `claims["hour"]`: the loss hour, none missing.
    `observed`: `_observed(frame)` when the caller has it already."""
    o = _observed(frame) if observed is None else observed
    hist = history_features(frame, names=["claimant_claims_365d", "payee_account_other_claimants",
                                          "phone_other_claimants", "address_other_claimants"])
    # A family's address and landline, a fleet's account: shared for ordinary reasons, no sign of fraud.
    legit = claims.get("legit_shared", np.zeros((3, len(frame)), dtype=bool))
    shared = sum(np.where(legit[kind], 0.0, np.nan_to_num(hist[f"{name}_other_claimants"]))
                 for kind, name in ((ACCOUNT, "payee_account"), (PHONE, "phone"), (ADDRESS, "address")))
    loss_type, policy_age = o["loss_type"], o["policy_age"]
    return {"amount": o["log_ratio"], "new_policy": policy_age < 30,
            "young_policy": (policy_age >= 30) & (policy_age < 60), "backdated": policy_age < 0,
            "late_report": np.clip(np.log1p(o["delay"]) / np.log(30), 0, 1.5),
            "unverified_loss": np.isin(loss_type, ["theft", "collision"]) & (o["police"] < 0.5) & (o["witnesses"] < 0.5),
            "night_theft": (loss_type == "theft") & (claims["hour"] < 5),
            "injury_attorney": (loss_type == "injury") & (o["attorney"] > 0.5),
            "repeat_claimant": np.minimum(np.nan_to_num(hist["claimant_claims_365d"]), 4),
            "shared_identity": np.minimum(shared, 3) ** 0.5, "ring": claims["is_ring"]}


def fraud_signal(terms: dict[str, np.ndarray]) -> np.ndarray:
    """The weighted sum of the fraud terms: the log-odds above FRAUD_BASE_LOGIT, before scale and noise."""
    return sum(FRAUD_WEIGHTS[name] * terms[name] for name in FRAUD_WEIGHTS)


def draw_labels(rng, frame: pd.DataFrame, claims: dict) -> None:
    """True probabilities from observable signals (plus a little noise), then the labels and when an
    investigation confirmed the fraud. `claims` as fraud_terms reads it."""
    o = _observed(frame)
    signals = fraud_signal(fraud_terms(frame, claims, o))
    loss_type, amount, log_ratio, delay = o["loss_type"], o["amount"], o["log_ratio"], o["delay"]
    police, witnesses, attorney = o["police"], o["witnesses"], o["attorney"]
    injury = loss_type == "injury"
    fraud_logit = FRAUD_BASE_LOGIT + FRAUD_SIGNAL_SCALE * signals + rng.normal(0, 0.3, size=len(frame))
    fraud_p = 1 / (1 + np.exp(-fraud_logit))
    glass, small = loss_type == "glass", log_ratio < np.log(0.6)
    over_limit = amount > frame["coverage_limit"].to_numpy()
    crash = np.isin(loss_type, ["collision", "injury"])
    paid_logit = (PAID_BASE_LOGIT - 0.9 * log_ratio + PAID_SIMPLE_BONUS * glass + 1.0 * small - 0.7 * injury
                  - 1.0 * (attorney > 0.5) - 0.8 * (delay > 14) - 2.5 * over_limit - 0.5 * (crash & (witnesses < 0.5))
                  + 0.8 * (police > 0.5) + rng.normal(0, 0.2, size=len(frame)))
    paid_given_honest = 1 / (1 + np.exp(-paid_logit))
    is_fraud = rng.random(len(frame)) < fraud_p
    frame["is_fraud"] = is_fraud
    frame["paid_as_filed"] = (rng.random(len(frame)) < paid_given_honest) & ~is_fraud
    frame["true_fraud_prob"] = fraud_p
    frame["true_paid_as_filed_prob"] = (1 - fraud_p) * paid_given_honest
    frame["fraud_confirmed_at"] = _fraud_confirmed_at(rng, frame["report_date"].to_numpy("datetime64[s]"), is_fraud)


def _fraud_confirmed_at(rng, report: np.ndarray, is_fraud: np.ndarray) -> np.ndarray:
    """When an investigation confirmed the fraud (NaT: never, or not fraud): an outcome known after the fact,
    possibly after the book's last report, never a model input."""
    confirmed = is_fraud & (rng.random(len(report)) < FRAUD_CONFIRMED_SHARE)
    after = (rng.uniform(*FRAUD_CONFIRMED_DAYS, size=len(report)) * 86_400).astype(np.int64).astype("timedelta64[s]")
    return np.where(confirmed, report + after, np.datetime64("NaT", "s"))


PARQUET_ROW_GROUP = 100_000


def write_claims(frame: pd.DataFrame, path: str | Path) -> None:
    """Write claims as Parquet or CSV, by the file's suffix."""
    path = Path(path)
    if path.suffix == ".parquet":
        # Row groups of 100,000 claims: Spark reads a row group as one task at most, and a book of a
        # million claims in one group was one task that overran the driver's default 1 GB heap.
        frame.to_parquet(path, index=False, row_group_size=PARQUET_ROW_GROUP)
    elif path.suffix == ".csv":
        frame.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%S")
    else:
        raise ValueError(f"{path}: unknown file type {path.suffix!r}; use .parquet or .csv")


def add_code_column(claims: pd.DataFrame, levels: int = 300, name: str = "dealer_code", strength: float = 0.5,
                    seed: int = 0) -> pd.DataFrame:
    """`claims` with a text code of `levels` levels (a dealer, a postcode) carrying a weak fraud signal.

    Code frequencies fall off as 1/rank (Zipf), as dealers' and postcodes' volumes do: a few codes
    cover many claims, most codes a handful. Each code tilts fraud by t ~ N(0, strength) on the log
    scale: given the labels already drawn, P(code | fraud) is proportional to w * exp(t) and
    P(code | legitimate) to w, so only the codes seen often enough reveal their tilt.
    """
    rng = np.random.default_rng(seed)
    weight = 1.0 / np.arange(1, levels + 1)
    tilt = rng.normal(0.0, strength, size=levels)
    names = np.array([f"D{i:04d}" for i in rng.permutation(levels)], dtype=object)  # no order to read into
    is_fraud = claims["is_fraud"].to_numpy(dtype=bool)
    codes = np.empty(len(claims), dtype=object)
    for fraud, share in ((False, weight), (True, weight * np.exp(tilt))):
        rows = is_fraud == fraud
        codes[rows] = names[rng.choice(levels, size=int(rows.sum()), p=share / share.sum())]
    return claims.assign(**{name: pd.array(codes, dtype="str")})
