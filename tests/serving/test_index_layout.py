"""The history index's compact layout: values changed online (their own arrays over the build's
slices) answer as an index built afresh from the same claims, through every edge of that layout."""

import random
from datetime import datetime, timedelta

import numpy as np

from features.history import history_feature_requirements
from serving.history_index import INDEXED_FIELDS, HistoryIndex
from serving.index_layout import Interned
from tests.serving.test_history_index import index_state

NAMES = sorted(history_feature_requirements())
START = datetime(2024, 3, 1, 9, 30)


def random_row(rng: random.Random, claim_id: str) -> tuple:
    """A claims row as the store gives it: few values per field (many shared, some absent), a few
    moments (some the same second, some exactly 90 or 365 days apart), now and then no moment, no
    claimant, or neither claimant nor policy (no person)."""
    values = []
    for field in INDEXED_FIELDS:
        choice = rng.randrange(5)
        values.append(None if choice == 4 and field != "policy_id" else f"{field[:3]}-{choice}")
    if rng.random() < 0.1:
        values[0] = values[1] = None
    moment = None if rng.random() < 0.1 else START + timedelta(days=rng.choice([0, 0, 1, 90, 365, 400]),
                                                             microseconds=rng.choice([0, 0, 7]))
    return (claim_id, None, moment, *values)


def as_claim(row: tuple) -> dict:
    claim = {"claim_id": row[0], "report_date": row[2]}
    claim.update((field, value) for field, value in zip(INDEXED_FIELDS, row[3:]) if value is not None)
    return {k: v for k, v in claim.items() if v is not None}


def answers(index: HistoryIndex, probes: list[dict]) -> dict:
    """The probes' history features (None where missing) and rings, the probes put in a transaction
    rolled back after."""
    index.begin()
    for probe in probes:
        index.put(probe)
    found = index.history(probes, NAMES)
    rings = [index.ring(probe["claim_id"], 10, INDEXED_FIELDS) for probe in probes]
    index.end(False)
    return {**{name: [None if np.isnan(v) else v for v in values] for name, values in found.items()}, "rings": rings}


def test_claims_put_replaced_caught_up_and_rolled_back_answer_as_a_fresh_build():
    """From a built index, random transactions (kept or rolled back) and other processes' rows
    replace claims and add new ones, moving them between values, times and persons. After each
    step the index holds what one built from the surviving rows holds, and answers the same."""
    rng = random.Random(16)
    stored = {f"C{i}": random_row(rng, f"C{i}") for i in range(60)}
    index = HistoryIndex.from_rows(stored.values())
    made = len(stored)
    for step in range(120):
        batch = {}
        for _ in range(rng.randint(1, 4)):
            claim_id = f"C{rng.randrange(made)}" if rng.random() < 0.6 else f"C{made}"
            made += claim_id == f"C{made}"
            batch[claim_id] = random_row(rng, claim_id)
        if rng.random() < 0.3:  # another process's rows
            index.catch_up([(row[0], step + 1, *row[2:]) for row in batch.values()])
            stored.update(batch)
        else:
            index.begin()
            for row in batch.values():
                index.put(as_claim(row))
            kept = rng.random() < 0.7
            index.end(kept)
            if kept:
                stored.update(batch)
        fresh = HistoryIndex.from_rows(stored.values())
        assert index_state(index) == index_state(fresh), step
        probes = [as_claim(random_row(rng, f"P{k}")) for k in range(3)] + [as_claim(random_row(rng, "C1"))]
        assert answers(index, probes) == answers(fresh, probes), step


def test_a_value_whose_last_claim_goes_leaves_nothing_behind():
    """A value built with one claim, and one first seen online: once their claims are replaced (or
    rolled back) neither is counted, listed nor linked."""
    built = ("C1", None, START, "CLA-1", "POL-1", None, "PAY-BUILT", None, None)
    index = HistoryIndex.from_rows([built, ("C2", None, START, "CLA-2", "POL-2", None, "PAY-2", None, None)])
    index.begin()
    index.put(as_claim(("C3", None, START, "CLA-3", "POL-3", None, "PAY-ONLINE", None, None)))
    index.end(False)
    index.begin()
    index.put(as_claim(("C1", None, START, "CLA-1", "POL-1", None, "PAY-2", None, None)))
    index.end(True)
    for view in (index.times, index.members, index.first):
        assert not {"PAY-BUILT", "PAY-ONLINE"} & set(view["payee_account"])
    assert "C3" not in index.claims and len(index.claims) == 2
    probe = {"claim_id": "P", "report_date": START + timedelta(days=1), "claimant_id": "CLA-9", "payee_account": "PAY-BUILT"}
    assert answers(index, [probe])["payee_account_other_claimants"] == [0.0]
    assert index.ring("C2", 10) == [("C1", ["payee_account"])]


def test_a_claim_given_twice_in_the_rows_keeps_its_last_row():
    index = HistoryIndex.from_rows([("C1", 1, START, "CLA-A", "POL-A", None, None, None, None),
                                    ("C1", 2, START + timedelta(days=2), "CLA-B", "POL-B", None, None, None, None)])
    assert dict(index.claims) == {"C1": (index.claims["C1"][0], "CLA-B", "POL-B", None, None, None, None)}
    assert "CLA-A" not in index.times["claimant_id"] and index.seen == 2


class Colliding(str):
    """A string whose hash every other one shares."""

    def __hash__(self) -> int:
        return 7


def test_strings_with_the_same_hash_are_told_apart():
    words = [Colliding(word) for word in ("payee", "phone", "address", "provider")]
    interned = Interned.build(words)
    for number, word in enumerate(words):
        assert interned.number(word) == number and interned.text(number) == word
    assert interned.number(Colliding("policy")) is None
    assert interned.add(Colliding("policy")) == 4 and interned.number(Colliding("policy")) == 4


def test_an_empty_index_counts_nothing_and_takes_claims():
    index = HistoryIndex()
    claim = {"claim_id": "C1", "report_date": START, "claimant_id": "CLA-1", "payee_account": "PAY-1"}
    assert answers(index, [claim])["claimant_claims_90d"] == [0.0]
    index.begin()
    index.put(claim)
    index.end(True)
    later = dict(claim, claim_id="C2", claimant_id="CLA-2", report_date=START + timedelta(days=1))
    assert answers(index, [later])["payee_account_other_claimants"] == [1.0]
    assert answers(index, [dict(later, report_date=None)])["claimant_claims_90d"] == [None]
