"""Rings as a graph, point in time: the component of linked claims each claim joins when reported.

Two claims are linked when they share an identity: a claimant, a policy, a payee account, a phone,
an address (and a provider, when `GraphSettings.link_fields` names it). Linked claims form
connected components: a chain (A shares a phone with B, B an account with C) is one component
although A and C share nothing. For each claim, as of its report time, only links between claims
reported strictly before it count, and the claim's own links to them:

- `ring_claims`: earlier claims in its component;
- `ring_claimants`: distinct claimants among them, other than its own;
- `ring_claims_90d`: those reported in the 90 days before it;
- `ring_claims_2hop`: earlier claims within two links of it;
- `ring_fraud_share`: the share of its component's earlier claims whose fraud was confirmed before
  it was reported (`OUTCOME_TIME_FIELD`; outcomes known later do not count). Missing when the
  component is empty.

Identities that link nothing: empty or placeholder values ("0", "unknown", "n/a", ...), and values
already used by `max_claims_per_identity` earlier claims (a call-centre phone, a broker's account):
from then on the value links no new claim, so one busy identity never welds the book into one
component. Links made before it got that busy stay (they were real when made). A claim's rank in a
value is the number of claims reported strictly before it with that value: it links through the value
when its rank is below the cap, to the earlier claims that did too.

Offline, who links through what is worked out first over the whole book (each claim's rank in each
of its values, by sorting), then the claims are taken in report order, a second at a time (claims of
the same second never see each other), keeping the components in a union-find with each component's
claims, claimants, report times and confirmation times. Flat integer arrays hold the links: at 1M
claims the pass takes about 0.7 GB and 15 s (dictionaries of lists took 1.15 GB and 24 s).
Online the service's history index answers the same questions
(serving/graph_history.py); tests hold the two side by side.
"""

from __future__ import annotations

import functools
from array import array
from bisect import bisect_left, insort
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features import schema
from features.history import PERSON_FIELDS, SECONDS_PER_DAY, TIME_FIELDS, first_present

OUTCOME_TIME_FIELD = schema.OUTCOME_TIME_FIELD.name
LINK_FIELDS = ("claimant_id", "policy_id", "payee_account", "claimant_phone", "claimant_address", "provider_id")
DEFAULT_LINK_FIELDS = LINK_FIELDS[:5]  # a provider serves hundreds of unrelated claimants by trade
DEFAULT_PLACEHOLDERS = ("", "0", "-", "?", "na", "n/a", "none", "null", "unknown", "nil", "tbc", "xxx")
RECENT_DAYS = 90
GRAPH_FEATURES = ("ring_claims", "ring_claimants", "ring_claims_90d", "ring_claims_2hop", "ring_fraud_share")
GRAPH_LABELS = {
    "ring_claims": "earlier claims linked to this one through shared identities",
    "ring_claimants": "other claimants among the linked earlier claims",
    "ring_claims_90d": "linked earlier claims in the previous 90 days",
    "ring_claims_2hop": "earlier claims within two links of this one",
    "ring_fraud_share": "share of the linked earlier claims already confirmed as fraud",
}


@dataclass(frozen=True)
class GraphSettings:
    """Which identities link claims, which values are no identity, and when a value is too busy."""

    link_fields: tuple[str, ...] = DEFAULT_LINK_FIELDS
    max_claims_per_identity: int = 50
    placeholders: tuple[str, ...] = DEFAULT_PLACEHOLDERS

    def __post_init__(self):
        unknown = [f for f in self.link_fields if f not in LINK_FIELDS]
        if unknown:
            raise ValueError(f"graph link_fields: {', '.join(unknown)} cannot link claims; choose from "
                             f"{', '.join(LINK_FIELDS)}")
        if self.max_claims_per_identity < 1:
            raise ValueError(f"graph max_claims_per_identity must be at least 1, not {self.max_claims_per_identity}")

    @functools.cached_property
    def placeholder_set(self) -> frozenset[str]:
        return frozenset(p.strip().lower() for p in self.placeholders)

    def is_identity(self, value) -> bool:
        """Whether a value can link claims (a string that is no placeholder)."""
        return value is not None and value == value and str(value).strip().lower() not in self.placeholder_set


def graph_feature_requirements(time: str = "report_date",
                               settings: GraphSettings = GraphSettings()) -> dict[str, tuple[str, ...]]:
    """Each graph feature and the claim fields it needs (any one link field is enough; the fraud
    share needs confirmation times too, see `OUTCOME_TIME_FIELD`)."""
    needs = {name: (time,) for name in GRAPH_FEATURES}
    needs["ring_fraud_share"] = (time, OUTCOME_TIME_FIELD)
    return needs


@dataclass
class GraphReport:
    """What the identities held: how many claim-identity pairs could not link, and why."""

    placeholder_values: int = 0  # claim-identity pairs with a placeholder value
    over_shared_links: int = 0  # claim-identity pairs whose value had reached the cap
    over_shared_values: dict[str, int] = field(default_factory=dict)  # field -> values that reached it

    def as_dict(self) -> dict:
        return {"placeholder_values": self.placeholder_values, "over_shared_links": self.over_shared_links,
                "over_shared_values": dict(self.over_shared_values)}


def _seconds(values: pd.Series) -> np.ndarray:
    """Whole seconds since 1900 (int64; -1 where missing)."""
    secs = values.to_numpy(dtype="datetime64[s]")
    out = (secs - np.datetime64("1900-01-01T00:00:00", "s")).astype(np.int64)
    return np.where(np.isnat(secs), -1, out)


def graph_features(pool: pd.DataFrame, targets: slice | None = None, settings: GraphSettings = GraphSettings(),
                   names: list[str] | None = None, report: GraphReport | None = None) -> dict[str, np.ndarray]:
    """Graph features of the rows `targets` of `pool` (default all), counted over all of `pool`.

    `pool` holds each claim once (the history and the claims, as features.history.history_pool makes
    them). Returns float64 arrays aligned with the targets; claims without a report (or loss) time
    are in no graph and get missing values."""
    n = len(pool)
    targets = targets or slice(0, n)
    wanted = list(names) if names is not None else list(GRAPH_FEATURES)
    n_out = len(range(n)[targets])
    out = {name: np.full(n_out, np.nan) for name in wanted}
    moments = first_present(pool, TIME_FIELDS)
    if moments is None or not wanted:
        return out
    seconds = _seconds(moments)
    person = first_present(pool, PERSON_FIELDS)
    people = pd.factorize(person)[0] if person is not None else np.full(n, -1)
    confirmed = (_seconds(pool[OUTCOME_TIME_FIELD]) if OUTCOME_TIME_FIELD in pool.columns
                 else np.full(n, -1))
    claim, value, starts = _identity_pairs(pool, settings, report)
    links = _Links(claim, value, seconds, n, settings.max_claims_per_identity, report, settings.link_fields, starts)
    del claim, value
    graph = _Graph(links, seconds, people, confirmed)
    order = np.argsort(seconds, kind="stable")
    order = order[seconds[order] >= 0]
    if not len(order):
        return out
    first_target = targets.start
    is_target = np.zeros(n, dtype=bool)
    is_target[targets] = True
    # Where each second's claims start in `order`: all of a second's claims are described before any is added.
    bounds = _ints(np.concatenate(([0], np.flatnonzero(np.diff(seconds[order])) + 1, [len(order)])))
    targeted = bytearray(is_target[order].view(np.uint8).tobytes())
    columns = [(name, out[name]) for name in wanted]
    recent = RECENT_DAYS * SECONDS_PER_DAY
    order_list, seconds_list = _ints(order), graph.seconds
    for g in range(len(bounds) - 1):
        lo, hi = bounds[g], bounds[g + 1]
        t = seconds_list[order_list[lo]]
        for k in range(lo, hi):
            if targeted[k]:
                c = order_list[k]
                found = graph.describe(c, t, recent)
                for name, column in columns:
                    column[c - first_target] = found[name]
        for k in range(lo, hi):
            graph.add(order_list[k])
    return out


def _ints(values: np.ndarray) -> array:
    """Integers as Python's compact array, 4 bytes an item where they fit, else 8: indexing gives plain
    ints (fast in the walk, where a numpy scalar would be slow and a list would hold an object per item)."""
    narrow = not len(values) or (int(values.min()) >= -2**31 and int(values.max()) < 2**31)
    out = array("i" if narrow else "q")
    out.frombytes(np.ascontiguousarray(values, dtype=np.int32 if narrow else np.int64).tobytes())
    return out


def _identity_pairs(pool: pd.DataFrame, settings: GraphSettings,
                    report: GraphReport | None) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Every (claim, identity value) pair that may link, as two int64 arrays: each value an integer key
    (each field's values numbered after the previous field's), leaving out values that link nothing;
    and where each field's keys start."""
    claims, values, starts, offset = [], [], [], 0
    placeholders = list(settings.placeholder_set)
    for name in settings.link_fields:
        starts.append(offset)
        if name not in pool.columns:
            continue
        raw = pool[name].astype(object)
        present = raw.notna().to_numpy()
        dummy = present & raw.where(present, "").astype(str).str.strip().str.lower().isin(placeholders).to_numpy()
        if report is not None:
            report.placeholder_values += int(dummy.sum())
        codes, uniques = pd.factorize(raw.where(~dummy))
        has = np.flatnonzero(codes >= 0)
        claims.append(has.astype(np.int64))
        values.append(codes[has].astype(np.int64) + offset)
        offset += len(uniques)
    if not claims:
        return np.empty(0, np.int64), np.empty(0, np.int64), starts
    return np.concatenate(claims), np.concatenate(values), starts


class _Links:
    """Who links through what, worked out before the walk (the whole book is known offline).

    A claim links through a value when fewer than `cap` claims with it were reported in earlier seconds
    (its rank). Per claim, the values it links through and its rank in each; per value, the claims that
    link through it in report order, with their times. Flat int64 arrays with start offsets: a few
    bytes a link, where dictionaries of lists took hundreds."""

    def __init__(self, claim: np.ndarray, value: np.ndarray, seconds: np.ndarray, n: int, cap: int,
                 report: GraphReport | None, fields: tuple[str, ...], starts: list[int]):
        timed = seconds[claim] >= 0  # a claim without a time is in no graph
        claim, value = claim[timed], value[timed]
        when = seconds[claim]
        by_value = np.lexsort((when, value))
        claim, value, when = claim[by_value], value[by_value], when[by_value]
        m = len(value)
        first_of_value = np.ones(m, dtype=bool)
        first_of_value[1:] = value[1:] != value[:-1]
        first_of_second = first_of_value.copy()
        first_of_second[1:] |= when[1:] != when[:-1]
        index = np.arange(m)
        value_start = np.maximum.accumulate(np.where(first_of_value, index, 0))
        second_start = np.maximum.accumulate(np.where(first_of_second, index, 0))
        rank = second_start - value_start  # claims with the value in earlier seconds
        links = rank < cap
        if report is not None:
            report.over_shared_links += int(m - links.sum())
            totals = np.diff(np.append(np.flatnonzero(first_of_value), m))
            busy = value[first_of_value][totals >= cap]
            fields_of = np.searchsorted(np.asarray(starts), busy, side="right") - 1
            for f, count in zip(*np.unique(fields_of, return_counts=True)):
                name = fields[int(f)]
                report.over_shared_values[name] = report.over_shared_values.get(name, 0) + int(count)
        claim, value, when, rank = claim[links], value[links], when[links], rank[links]
        n_values = int(value.max()) + 1 if len(value) else 0
        # Per value (already in value, time order): its linking claims and their times.
        self.value_start = _ints(np.searchsorted(value, np.arange(n_values + 1)))
        self.value_claims = _ints(claim)
        self.value_times = _ints(when)
        # Per claim: the values it links through and its rank in each.
        by_claim = np.argsort(claim, kind="stable")
        self.claim_start = _ints(np.searchsorted(claim[by_claim], np.arange(n + 1)))
        self.claim_values = _ints(value[by_claim])
        self.claim_ranks = _ints(rank[by_claim])
        # Per value, the first claim added that linked through it (-1 until then).
        self.first_member = array("i" if n < 2**31 else "q", [-1]) * n_values


class _Graph:
    """The union-find of claims linked so far, with per-component aggregates (size, claimants, report
    and confirmation times). A claim alone in its component keeps no aggregates: they are its own."""

    def __init__(self, links: _Links, seconds: np.ndarray, people: np.ndarray, confirmed: np.ndarray):
        self.links = links
        n = len(seconds)
        self.seconds, self.person, self.confirmation = _ints(seconds), _ints(people), _ints(confirmed)
        self.parent = _ints(np.arange(n))
        self.size: dict[int, int] = {}  # root -> claims, for components of more than one claim
        self.people: dict[int, set] = {}
        self.times: dict[int, list[int]] = {}
        self.confirmed: dict[int, list[int]] = {}

    def find(self, c: int) -> int:
        parent = self.parent
        root = c
        while parent[root] != root:
            root = parent[root]
        while parent[c] != root:
            parent[c], c = root, parent[c]
        return root

    def _aggregates(self, r: int) -> tuple[int, set, list[int], list[int]]:
        """A root's size, claimants, sorted report times and sorted confirmation times."""
        if r in self.size:
            return self.size[r], self.people[r], self.times[r], self.confirmed[r]
        person, moment = self.person[r], self.confirmation[r]
        return 1, ({person} if person >= 0 else set()), [self.seconds[r]], ([moment] if moment >= 0 else [])

    def _through(self, c: int) -> list[int]:
        """The values claim `c` links through to claims of earlier seconds."""
        links = self.links
        lo, hi = links.claim_start[c], links.claim_start[c + 1]
        return [links.claim_values[k] for k in range(lo, hi) if links.claim_ranks[k] > 0]

    def describe(self, c: int, t: int, recent: int) -> dict[str, float]:
        """The graph features of claim `c`, reported at `t`, before it (and its second) is added."""
        links = self.links
        through = self._through(c)
        roots = {self.find(links.first_member[v]) for v in through}
        if not roots:
            return {"ring_claims": 0.0, "ring_claimants": 0.0, "ring_claims_90d": 0.0, "ring_claims_2hop": 0.0,
                    "ring_fraud_share": np.nan}
        parts = [self._aggregates(r) for r in roots]
        claims = sum(p[0] for p in parts)
        people = parts[0][1] if len(parts) == 1 else set().union(*(p[1] for p in parts))
        person = self.person[c]
        others = len(people) - (1 if person >= 0 and person in people else 0)
        last_90 = sum(len(p[2]) - bisect_left(p[2], t - recent) for p in parts)
        frauds = sum(bisect_left(p[3], t) for p in parts)
        return {"ring_claims": float(claims), "ring_claimants": float(others), "ring_claims_90d": float(last_90),
                "ring_claims_2hop": float(self._two_hops(c, t, claims)), "ring_fraud_share": frauds / claims}

    def _two_hops(self, c: int, t: int, component: int) -> int:
        """Earlier claims within two links: those sharing a value with the claim, and those sharing
        a value with one of them (never more than the component holds)."""
        links = self.links
        starts, members, times = links.value_start, links.value_claims, links.value_times
        near: set[int] = set()
        lo, hi = links.claim_start[c], links.claim_start[c + 1]
        for k in range(lo, hi):
            rank = links.claim_ranks[k]
            if rank:
                begin = starts[links.claim_values[k]]
                near.update(members[begin:begin + rank])  # the value's claims of earlier seconds
        if len(near) == component:
            return component
        far = set(near)
        for d in near:
            for k in range(links.claim_start[d], links.claim_start[d + 1]):
                w = links.claim_values[k]
                begin, end = starts[w], starts[w + 1]
                far.update(members[begin:bisect_left(times, t, begin, end)])
        return len(far)

    def add(self, c: int) -> None:
        """Add claim `c` (reported no earlier than any claim here): it joins the components of the
        claims added before it that link through a value it links through. The largest absorbs the
        others, whose sorted times merge into its own (a sort of two sorted runs, linear)."""
        links, first = self.links, self.links.first_member
        roots = set()
        for k in range(links.claim_start[c], links.claim_start[c + 1]):
            v = links.claim_values[k]
            member = first[v]
            if member < 0:
                first[v] = c
            else:
                roots.add(self.find(member))
        if not roots:
            return
        base = max(roots, key=lambda r: self.size.get(r, 1))
        size, people, times, confirmed = self._aggregates(base)
        if base not in self.size:
            self.people[base], self.times[base], self.confirmed[base] = people, times, confirmed
        for r in roots:
            if r == base:
                continue
            other = self._aggregates(r)
            self.parent[r] = base
            size += other[0]
            people.update(other[1])
            times.extend(other[2])
            times.sort()
            confirmed.extend(other[3])
            confirmed.sort()
            if r in self.size:
                del self.size[r], self.people[r], self.times[r], self.confirmed[r]
        self.parent[c] = base
        self.size[base] = size + 1
        if self.person[c] >= 0:
            people.add(self.person[c])
        times.append(self.seconds[c])
        if self.confirmation[c] >= 0:
            insort(confirmed, self.confirmation[c])
