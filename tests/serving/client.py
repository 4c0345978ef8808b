"""Calling the served service from tests: claims as JSON, and requests with the tests' API key."""

from __future__ import annotations

import httpx
import pandas as pd

from models.pyfunc import wire_format


def as_json(frame: pd.DataFrame, bundle) -> list[dict]:
    """Claims as the claims system sends them: the wire format, absent fields left out."""
    wire = wire_format(frame, bundle)
    records = wire.astype(object).where(wire.notna(), None).to_dict(orient="records")
    return [{k: v for k, v in r.items() if v is not None} for r in records]


def post(service, path: str, body, **kwargs) -> httpx.Response:
    return httpx.post(service["base"] + path, json=body, timeout=30, headers=service["auth"], **kwargs)


def get(service, path: str, **kwargs) -> httpx.Response:
    return httpx.get(service["base"] + path, timeout=30, headers=service["auth"], **kwargs)


def clear_queue(service, keep) -> None:
    """Resolve every open case of the shared server but those of the claims in `keep`, through the
    store's own API (ledger entries included): a test that reads the review page (at most 500 cases,
    nearest deadline first) then finds its own claims, whatever other modules scored before it."""
    from serving.store import ClaimStore

    store = ClaimStore(service["store_url"])
    for case in store.queue(limit=100_000):
        if case["claim_id"] not in keep:
            store.record_outcome(case["claim_id"], "not_fraud", "cleared by a test of the shared server",
                                 "tests", via="api key tests")
