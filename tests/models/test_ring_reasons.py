"""The claim's ring told in one sentence, from whichever graph features the model reads."""

import math

import pytest

from models.reasons import reason_sentence, ring_sentence


@pytest.mark.parametrize("values, expected", [
    ({"ring_claims": 7, "ring_claimants": 4, "ring_claims_90d": 5, "ring_fraud_share": 2 / 7},
     "Linked to 7 earlier claims by 4 other claimants, 5 of them in the previous 90 days; "
     "2 confirmed as fraud before this claim"),
    ({"ring_claims": 1, "ring_claimants": 0, "ring_claims_90d": 0, "ring_fraud_share": 0.0},
     "Linked to 1 earlier claim by 0 other claimants, 0 of them in the previous 90 days; "
     "none confirmed as fraud before this claim"),
    ({"ring_claims": 3, "ring_fraud_share": 1.0}, "Linked to 3 earlier claims; 3 confirmed as fraud before this claim"),
    ({"ring_claims": 7, "ring_claimants": 4, "ring_claims_90d": 5, "phone_other_claimants": 1.0,
      "payee_account_other_claimants": 2.0, "address_other_claimants": 0.0},
     "Linked to 7 earlier claims by 4 other claimants through a shared phone and account, 5 of them in the "
     "previous 90 days"),
    ({"ring_claims": 2, "ring_claimants": 1, "phone_other_claimants": 1.0, "payee_account_other_claimants": 1.0,
      "address_other_claimants": 1.0},
     "Linked to 2 earlier claims by 1 other claimant through a shared phone, account and address"),
    ({"ring_claims": 4, "ring_claimants": 0, "address_other_claimants": math.nan},
     "Linked to 4 earlier claims by 0 other claimants"),
    ({"ring_claims": 0, "ring_claimants": 0, "ring_fraud_share": math.nan},
     "No earlier claim is linked to this one through a shared claimant, policy, account, phone or address"),
    ({"ring_claims_2hop": 12.0}, "12 earlier claims within two links of this one"),
])
def test_the_ring_sentence_says_size_people_recency_and_confirmed_fraud(values, expected):
    assert ring_sentence(values) == expected


def test_each_graph_feature_has_a_sentence_of_its_own():
    assert reason_sentence("ring_claimants", "", 3.0, None) == "3 other claimants among the linked earlier claims"
    assert reason_sentence("ring_fraud_share", "", 0.25, None) == \
        "25% of the linked earlier claims already confirmed as fraud"
    assert reason_sentence("ring_fraud_share", "", math.nan, None) == "No earlier claim is linked to this one"


def test_the_strongest_graph_feature_of_a_claim_tells_the_whole_ring_once(fitted_run):
    """In real explanations: the first graph feature among a model's reasons says the ring in one
    sentence from all of the claim's graph values; the others keep their own sentences."""
    import numpy as np

    from features.graph import GRAPH_FEATURES
    from models.explain import Explainer

    explainer = Explainer(fitted_run.bundle)
    names = explainer.names
    ring = [j for j, name in enumerate(names) if name in GRAPH_FEATURES]
    assert ring, "the fitted bundle reads the claim graph"
    matrix = fitted_run.matrix
    linked = matrix[np.flatnonzero(matrix[:, names.index("ring_claimants")] >= 2)[:200]]
    told = shared = 0
    for row, per_model in zip(linked, explainer.reasons(linked, top=len(names))):
        for reasons in per_model.values():
            graph = [r for r in reasons if r.feature in GRAPH_FEATURES]
            if not graph:
                continue
            told_values = {name: row[j] for j, name in enumerate(names) if j in ring or name.endswith("_other_claimants")}
            assert graph[0].text == ring_sentence(told_values)
            assert all(r.text == reason_sentence(r.feature, "", r.value, None) for r in graph[1:]
                       if r.feature != "ring_fraud_share" or r.value is not None)
            told += 1
            shared += "through a shared" in graph[0].text
    assert told > 0 and shared > 0  # linked through other claimants: the identities are named
