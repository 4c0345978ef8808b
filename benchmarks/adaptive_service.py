"""For the benchmark only: the same scorer behind BentoML's adaptive batching, to compare with the
service's own group commit (serving/grouping.py).

A batchable BentoML endpoint takes a list in each request, and BentoML's dispatcher merges the
lists of concurrent requests into one call; so each client here sends a list of one claim. No API
key is checked (the service checks one per request; here that only favours this side).
"""

from __future__ import annotations

import bentoml

from serving.schemas import Claim


@bentoml.service(name="claim-triage-adaptive-batching", traffic={"timeout": 60}, workers=1)
class AdaptiveBatching:
    def __init__(self) -> None:
        from serving.loading import load_scorer

        self.scorer, _ = load_scorer()

    @bentoml.api(route="/score_listed", batchable=True, max_batch_size=32, max_latency_ms=1000)
    def score_listed(self, claims: list[Claim]) -> list[dict]:  # type: ignore[valid-type]
        """Claims as the group commit scores them, one answer each, in order."""
        return self.scorer.score_each([claim.model_dump(exclude_unset=True) for claim in claims])
