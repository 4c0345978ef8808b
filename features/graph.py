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

Offline, the claims are taken in report order, a second at a time (claims of the same second never
see each other), keeping the components in a union-find with each component's claims, claimants,
report times and confirmation times. Online the service's history index answers the same questions
(serving/graph_history.py); tests hold the two side by side.
"""

from __future__ import annotations

import functools
from bisect import bisect_left, bisect_right, insort
from collections import Counter
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
    values, starts = _identity_codes(pool, settings, report)
    graph = _Graph(settings.max_claims_per_identity, report, settings.link_fields, starts)
    order = np.argsort(seconds, kind="stable")
    order = order[seconds[order] >= 0]
    first_target = targets.start
    is_target = np.zeros(n, dtype=bool)
    is_target[targets] = True
    columns = {name: out[name] for name in wanted}
    recent = RECENT_DAYS * SECONDS_PER_DAY
    seconds_list, people_list, confirmed_list = seconds.tolist(), people.tolist(), confirmed.tolist()
    i = 0
    while i < len(order):
        t = seconds_list[order[i]]
        j = i
        while j < len(order) and seconds_list[order[j]] == t:
            j += 1
        group = order[i:j].tolist()
        for c in group:
            if is_target[c]:
                found = graph.describe(values[c], t, people_list[c], recent)
                for name, column in columns.items():
                    column[c - first_target] = found[name]
        graph.add_second([(c, values[c], t, people_list[c], confirmed_list[c]) for c in group])
        i = j
    return out


def _identity_codes(pool: pd.DataFrame, settings: GraphSettings, report: GraphReport | None) -> tuple[list[list[int]], list[int]]:
    """Per claim, its identity values as integer keys (each field's values numbered after the previous
    field's), leaving out values that link nothing; and where each field's keys start."""
    n = len(pool)
    columns, starts, offset = [], [], 0
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
        columns.append(np.where(codes >= 0, codes + offset, -1))
        offset += len(uniques)
    if not columns:
        return [[] for _ in range(n)], starts
    stacked = np.column_stack(columns).tolist()
    return [[v for v in row if v >= 0] for row in stacked], starts


class _Graph:
    """The union-find of claims linked so far, with per-component aggregates, and per identity value
    its claims count and the claims that linked through it."""

    def __init__(self, cap: int, report: GraphReport | None, fields: tuple[str, ...], starts: list[int]):
        self.cap = cap
        self.report = report
        self.fields = fields
        self.starts = starts  # where each field's value keys start
        self.count: dict = {}  # value -> claims with it so far
        self.linked: dict = {}  # value -> claims that linked through it (rank below the cap)
        self.links_of: dict[int, list] = {}  # claim -> values it linked through
        self.parent: dict[int, int] = {}
        self.size: dict[int, int] = {}
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

    def _join(self, c: int, roots: set[int]) -> None:
        """Make claim `c` (just added, reported no earlier than any claim here) one component with
        `roots`: the largest absorbs the others, whose sorted times merge into its own (a sort of
        two sorted runs, linear)."""
        base = max(roots, key=self.size.__getitem__)
        times, confirmed, people = self.times[base], self.confirmed[base], self.people[base]
        for r in roots:
            if r == base:
                continue
            self.parent[r] = base
            self.size[base] += self.size.pop(r)
            people.update(self.people.pop(r))
            times.extend(self.times.pop(r))
            times.sort()
            confirmed.extend(self.confirmed.pop(r))
            confirmed.sort()
        self.parent[c] = base
        self.size[base] += 1
        people.update(self.people.pop(c))
        times.append(self.times.pop(c)[0])
        for moment in self.confirmed.pop(c):
            insort(confirmed, moment)
        del self.size[c]

    def linkable(self, keys: list) -> list:
        """The values a claim reported now would link through (fewer than `cap` claims so far)."""
        return [v for v in keys if self.count.get(v, 0) < self.cap]

    def describe(self, keys: list, t: int, person: int, recent: int) -> dict[str, float]:
        """The graph features of a claim reported at `t` with these identity values, before it is added."""
        through = [v for v in self.linkable(keys) if v in self.linked]
        roots = {self.find(self.linked[v][0]) for v in through}
        claims = sum(self.size[r] for r in roots)
        if not roots:
            return {"ring_claims": 0.0, "ring_claimants": 0.0, "ring_claims_90d": 0.0, "ring_claims_2hop": 0.0,
                    "ring_fraud_share": np.nan}
        people = self.people[next(iter(roots))] if len(roots) == 1 else set().union(*(self.people[r] for r in roots))
        others = len(people) - (1 if person >= 0 and person in people else 0)
        last_90 = sum(len(self.times[r]) - bisect_left(self.times[r], t - recent) for r in roots)
        frauds = sum(bisect_left(self.confirmed[r], t) for r in roots)
        return {"ring_claims": float(claims), "ring_claimants": float(others), "ring_claims_90d": float(last_90),
                "ring_claims_2hop": float(self._two_hops(through, claims)), "ring_fraud_share": frauds / claims}

    def _two_hops(self, through: list, component: int) -> int:
        """Earlier claims within two links: those sharing a value with the claim, and those sharing
        a value with one of them (never more than the component holds)."""
        near: set[int] = set()
        for v in through:
            near.update(self.linked[v])
        if len(near) == component:
            return component
        far = set(near)
        for d in near:
            for w in self.links_of.get(d, ()):
                far.update(self.linked[w])
        return len(far)

    def add_second(self, claims: list[tuple[int, list, int, int, int]]) -> None:
        """Add the claims reported in one second, (claim, values, t, person, confirmed) each. Each
        links through the values that had fewer than `cap` claims before that second: claims of one
        second have the same rank, so ties never decide which of them links."""
        before = {v: self.count.get(v, 0) for _, keys, _, _, _ in claims for v in keys}
        added = Counter(v for _, keys, _, _, _ in claims for v in keys)
        for c, keys, t, person, confirmed in claims:
            self.parent[c] = c
            self.size[c] = 1
            self.people[c] = {person} if person >= 0 else set()
            self.times[c] = [t]
            self.confirmed[c] = [confirmed] if confirmed >= 0 else []
            through = [v for v in keys if before[v] < self.cap]
            roots = set()
            for v in through:
                members = self.linked.get(v)
                if members is None:
                    self.linked[v] = [c]
                else:
                    roots.add(self.find(members[0]))
                    members.append(c)
            if roots:
                self._join(c, roots)
            if through:
                self.links_of[c] = through
            if self.report is not None and len(through) < len(keys):
                self.report.over_shared_links += len(keys) - len(through)
        for v in before:
            self.count[v] = before[v] + added[v]
            if self.report is not None and before[v] < self.cap <= self.count[v]:
                name = self.fields[bisect_right(self.starts, v) - 1]
                self.report.over_shared_values[name] = self.report.over_shared_values.get(name, 0) + 1
