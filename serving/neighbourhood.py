"""A claim's neighbourhood for the case page: the claims within two hops through shared identities.

The flat ring list shows only the claims sharing an identity with this one; a ring that links
through a chain (A shares a phone with B, B an account with C) shows only B. Here the claims one
hop away are asked for their own links, so C appears too, with the edges that connect them all.

Bounded for a page: at most `MAX_NODES` other claims, and of each claim's links the newest
`FAN_OUT` on each identity. An identity shared by many claims (a busy provider, a call-centre
phone) says little about any one of them and would fill the drawing, so links through one come
after every other link: claims are kept strongest path first (through identities shared by at
most `BUSY_LINK` claims), then nearest (one hop before two), then through the rarest identity,
then newest. Claims linked only weakly are asked for their own links only where the drawing has
room left for what they would bring. The page says how many were left out ("or more" where some
claim had more links than were taken, or was not asked).

`neighbourhood` builds the graph from a one-hop function (the store's ring, on either store);
`ring_layout` places it for the page's SVG, the same way every time.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Callable, Iterable

from serving.clock import as_datetime
from serving.history_index import RING_FIELDS, micros

MAX_NODES = 40  # other claims drawn: beyond this a drawing stops being read
FAN_OUT = 100  # claims taken per identity of each claim: enough to tell a busy identity from a rare one
BUSY_LINK = 20  # an identity shared by more claims than this links weakly (a busy provider, a call centre)
SHOWN = ("claim_id", "claimant_id", "claim_amount", "report_date", "loss_type")

# claim_id -> the other claims sharing an identity with it, each with the identity fields it shares
# (e.g. ("C2", ["claimant_phone"])), newest first; at least the newest `fan_out` + 1 on each identity.
OneHop = Callable[[str], list[tuple[str, list[str]]]]
# claim ids -> per id, its `SHOWN` and RING_FIELDS values: read once per hop, not per link.
Details = Callable[[list[str]], dict[str, dict]]
# claim ids -> per id, its marks: "confirmed_fraud" and/or "open_siu".
Marks = Callable[[list[str]], dict[str, set[str]]]


def neighbourhood(claim: dict, one_hop: OneHop, details: Details, marks: Marks | None = None,
                  max_nodes: int = MAX_NODES, fan_out: int = FAN_OUT) -> dict:
    """The claim and up to `max_nodes` claims within two hops of it, with the identities linking
    them and each claim's marks: {"nodes", "edges", "left_out", "at_least"}. Nodes come centre
    first, then in the order kept. `one_hop` is called for the claim and at most `max_nodes` of
    its neighbours; `details` twice (the claims one hop away, then two); `marks` once."""
    if max_nodes < 0 or fan_out < 1:
        raise ValueError(f"max_nodes must be >= 0 and fan_out >= 1, not {max_nodes} and {fan_out}")
    walk = _Walk(claim, one_hop, fan_out)
    first = walk.ask(claim["claim_id"])
    walk.values.update(details([other for other, _ in first]))
    weights = _identity_weights(first)
    hop1 = {other: _candidate(other, walk.values.get(other, {}), 1, _strength(shares, weights), shares)
            for other, shares in first}
    hop2 = _second_hop(walk, sorted(hop1.values(), key=_rank), max_nodes)
    walk.values.update(details(list(hop2)))
    for other, found in hop2.items():
        found["about"], found["t"] = walk.values.get(other, {}), _moment(walk.values.get(other, {}).get("report_date"))
    ranked = sorted([*hop1.values(), *hop2.values()], key=_rank)
    kept = ranked[:max_nodes]
    nodes = [_node(claim["claim_id"], claim, 0, [])] + [_node(node["claim_id"], node["about"], node["hop"],
                                                             node["shares"], node.get("via")) for node in kept]
    found_marks = marks([node["claim_id"] for node in nodes]) if marks else {}
    for node in nodes:
        node["marks"] = sorted(found_marks.get(node["claim_id"], ()))
    return {"nodes": nodes, "edges": _edges(nodes, walk), "left_out": len(ranked) - len(kept),
            "at_least": walk.truncated}


class _Walk:
    """The one-hop answers of one neighbourhood: each claim's identity values, which of them some
    answer gave as a link, and whether any answer was cut (or a claim left unasked)."""

    def __init__(self, claim: dict, one_hop: OneHop, fan_out: int) -> None:
        self.centre, self.one_hop, self.fan_out = claim["claim_id"], one_hop, fan_out
        self.values: dict[str, dict] = {self.centre: claim}
        self.linking: set[tuple[str, object]] = set()
        self.truncated = False

    def ask(self, claim_id: str) -> list[tuple[str, list[str]]]:
        links, more = _per_identity(self.one_hop(claim_id), {self.centre, claim_id}, self.fan_out)
        mine = self.values.get(claim_id, {})
        self.linking.update((field, mine.get(field)) for _, shares in links for field in shares)
        self.truncated |= more
        return links


def _second_hop(walk: _Walk, hop1: list[dict], max_nodes: int) -> dict[str, dict]:
    """The claims two hops away, asking the one-hop claims (strongest first) for their links. A
    weakly linked one is asked only if its claims could be drawn: if the claims one hop away and
    those two strong hops away leave room."""
    hop2: dict[str, dict] = {}
    known = {walk.centre} | {node["claim_id"] for node in hop1}
    for k, parent in enumerate(hop1):
        room = len(hop1) + sum(not _weak(node) for node in hop2.values()) < max_nodes
        if k == max_nodes or (_weak(parent) and not room):
            walk.truncated = True  # the rest are not asked for their own links
            break
        links = walk.ask(parent["claim_id"])
        weights = _identity_weights(links)
        for other, shares in links:
            if other in known:
                continue
            strength = max(parent["strength"], _strength(shares, weights))  # a path is as weak as its weakest link
            # Its `via`: the first one-hop claim to bring it, the strongest; drawn if it is, and the
            # hub of the star of each identity they share (see `_edges`), so an edge joins them.
            found = hop2.setdefault(other, _candidate(other, {}, 2, strength, shares) | {"via": parent["claim_id"]})
            found["strength"] = min(found["strength"], strength)
    return hop2


def _edges(nodes: list[dict], walk: _Walk) -> list[dict]:
    """Per identity linking several drawn claims, an edge from the nearest of them (the centre, else
    the strongest one hop away) to each other: a star, not every pair (eight claims on one account
    would be 28 lines). Edges with the same ends merge, their identities in RING_FIELDS order."""
    order = {node["claim_id"]: k for k, node in enumerate(nodes)}
    hops = {node["claim_id"]: node["hop"] for node in nodes}
    groups: dict[tuple[str, object], list[str]] = {}
    for field in [*RING_FIELDS, *sorted({field for field, _ in walk.linking} - set(RING_FIELDS))]:
        for node in nodes:
            value = walk.values.get(node["claim_id"], {}).get(field)
            if value is not None and (field, value) in walk.linking:
                groups.setdefault((field, value), []).append(node["claim_id"])
    pairs: dict[tuple[str, str], list[str]] = {}
    for (field, _), members in groups.items():
        hub = min(members, key=lambda claim_id: (hops[claim_id], order[claim_id]))
        for other in members:
            if other != hub:
                pairs.setdefault((hub, other), []).append(field)
    return [{"source": a, "target": b, "shares": shares}
            for (a, b), shares in sorted(pairs.items(), key=lambda pair: (order[pair[0][0]], order[pair[0][1]]))]


def newest_first(claims: Iterable[dict]) -> list[dict]:
    """Claims newest report first, then by claim_id, undated last: the order of the store's ring."""
    return sorted(claims, key=lambda c: (-_moment(c.get("report_date")), c["claim_id"]))


def _per_identity(links: list[tuple[str, list[str]]], skip: set[str], fan_out: int) -> tuple[list, bool]:
    """The links (newest first) of the first `fan_out` claims on each identity, so that a busy one
    (a provider with thousands of claims) cannot push out the claim sharing a phone; and whether
    any identity had more."""
    taken: Counter = Counter()
    kept = []
    for other, shares in links:
        if other in skip:
            continue
        if any(taken[field] < fan_out for field in shares):
            kept.append((other, shares))
        taken.update(shares)
    return kept, any(n > fan_out for n in taken.values())


def _identity_weights(links: list[tuple[str, list[str]]]) -> Counter:
    """Per identity field, how many of one claim's links share it: the claims on that identity."""
    return Counter(field for _, shares in links for field in shares)


def _strength(shares: Iterable[str], weights: Counter) -> int:
    """A link is as strong as the rarest identity it shares: the fewest claims on it."""
    return min(weights[field] for field in shares)


def _candidate(claim_id: str, about: dict, hop: int, strength: int, shares: list[str]) -> dict:
    return {"claim_id": claim_id, "about": about, "hop": hop, "shares": list(shares), "strength": strength,
            "t": _moment(about.get("report_date"))}


def _moment(value) -> int:
    moment = as_datetime(value)
    return -1 if moment is None else micros(moment)  # no report date: oldest


def _weak(node: dict) -> bool:
    return node["strength"] > BUSY_LINK


def _rank(node: dict) -> tuple:
    """Strong paths first, then nearer, then through rarer identities, then newer, then by id."""
    return _weak(node), node["hop"], node["strength"], -node["t"], node["claim_id"]


def _node(claim_id: str, about: dict, hop: int, shares: list[str], via: str | None = None) -> dict:
    return {name: about.get(name) for name in SHOWN} | {"claim_id": claim_id, "hop": hop, "shares": list(shares),
                                                         "via": via}


# --- the drawing ------------------------------------------------------------------------------

RING_GAP = 150.0  # between the centre, the inner circle and the outer circle, in SVG units
NODE_ROOM = 30.0  # the arc between neighbouring nodes on a circle
LABEL_ROOM = 110.0  # beyond the outer circle, for the labels
LABEL_GAP = 16.0  # from a node's centre to its label


def ring_layout(graph: dict) -> dict:
    """Where each node, edge and label goes: the claim in the centre, one-hop claims on an inner
    circle (claims linked to each other side by side), two-hop claims on the outer circle close
    around the one-hop claim that brought them (its sector as wide as they need), so edges stay
    short. Labels run outward along the radius, so neighbours' labels do not overlap.
    Deterministic: the same graph, the same drawing."""
    hop1 = _side_by_side([node for node in graph["nodes"] if node["hop"] == 1], graph["edges"])
    inner = max(RING_GAP, len(hop1) * NODE_ROOM / (2 * math.pi))
    radii = (0.0, inner, inner + RING_GAP)
    size = 2 * (radii[2] + LABEL_ROOM)
    children: dict[str, list[dict]] = {node["claim_id"]: [] for node in hop1}
    for node in graph["nodes"]:
        if node["hop"] == 2:
            children[node["via"]].append(node)
    places: dict[str, tuple[float, float]] = {graph["nodes"][0]["claim_id"]: (0.0, 0.0)}
    # Each one-hop claim needs the arc of one node on the inner circle, or of its claims on the
    # outer; the room left over is shared out evenly (or, where there is none, all is shrunk alike).
    needs = [max(NODE_ROOM / radii[1], len(children[node["claim_id"]]) * NODE_ROOM / radii[2]) for node in hop1]
    spare = (2 * math.pi - sum(needs)) / max(1, len(hop1))
    shrink = min(1.0, 2 * math.pi / sum(needs)) if needs else 1.0
    start = -math.pi / 2  # the first (strongest) neighbour at the top
    for node, need in zip(hop1, needs):
        sector = need * shrink + max(0.0, spare)
        middle = start + sector / 2
        places[node["claim_id"]] = (radii[1], middle)
        mine = children[node["claim_id"]]
        span = min(len(mine) * NODE_ROOM / radii[2], sector)  # close together, around the claim that links them
        for k, child in enumerate(mine):
            places[child["claim_id"]] = (radii[2], middle - span / 2 + span * (k + 0.5) / len(mine))
        start += sector
    centre, drawn = size / 2, []
    for node in graph["nodes"]:
        radius, angle = places[node["claim_id"]]
        x, y = _point(centre, radius, angle)
        label = {"x": x, "y": y + 30, "anchor": "middle", "rotate": 0.0} if radius == 0 else \
            _along(centre, radius + LABEL_GAP, angle)
        drawn.append(node | {"x": x, "y": y, "label": label})
    at = {node["claim_id"]: node for node in drawn}
    lines = []
    for edge in graph["edges"]:
        a, b = at[edge["source"]], at[edge["target"]]
        lines.append(edge | {"x1": a["x"], "y1": a["y"], "x2": b["x"], "y2": b["y"], "label": _edge_label(a, b)})
    kinds = list(dict.fromkeys(field for edge in graph["edges"] for field in edge["shares"]))  # for the legend
    return {"size": size, "nodes": drawn, "edges": lines, "kinds": kinds, "left_out": graph["left_out"],
            "at_least": graph["at_least"]}


def _side_by_side(hop1: list[dict], edges: list[dict]) -> list[dict]:
    """The one-hop claims in their order, but each followed by those linked to it (and theirs), so
    that the links between them are short chords of the circle, not lines across it."""
    position = {node["claim_id"]: k for k, node in enumerate(hop1)}
    linked: dict[str, list[str]] = {claim_id: [] for claim_id in position}
    for edge in edges:
        if edge["source"] in position and edge["target"] in position:
            linked[edge["source"]].append(edge["target"])
            linked[edge["target"]].append(edge["source"])
    order: list[dict] = []
    placed: set[str] = set()
    for node in hop1:
        waiting = [node["claim_id"]]
        while waiting:
            claim_id = waiting.pop(0)
            if claim_id in placed:
                continue
            placed.add(claim_id)
            order.append(hop1[position[claim_id]])
            waiting += sorted(linked[claim_id], key=position.__getitem__)
    return order


def _point(centre: float, radius: float, angle: float) -> tuple[float, float]:
    return centre + radius * math.cos(angle), centre + radius * math.sin(angle)


def _along(centre: float, radius: float, angle: float) -> dict:
    """A label starting `radius` out along `angle`, reading outward, turned to stay upright."""
    x, y = _point(centre, radius, angle)
    degrees = math.degrees(angle)
    if math.cos(angle) < -1e-9:  # the left half: turned half round, anchored at its end
        return {"x": x, "y": y, "anchor": "end", "rotate": math.remainder(degrees + 180, 360)}
    return {"x": x, "y": y, "anchor": "start", "rotate": math.remainder(degrees, 360)}


def _edge_label(a: dict, b: dict) -> dict:
    """An edge's label along it, two-thirds of the way out (clear of the inner labels), upright."""
    inner, outer = (a, b) if a["hop"] <= b["hop"] else (b, a)
    share = 0.5 if inner["hop"] == outer["hop"] else 0.62
    x = inner["x"] + (outer["x"] - inner["x"]) * share
    y = inner["y"] + (outer["y"] - inner["y"]) * share
    degrees = math.degrees(math.atan2(outer["y"] - inner["y"], outer["x"] - inner["x"]))
    if abs(degrees) > 90:  # turned half round to stay upright
        degrees = math.remainder(degrees + 180, 360)
    return {"x": x, "y": y, "rotate": degrees}

