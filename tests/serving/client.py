"""Calling the served service from tests: claims as JSON, requests with the tests' API key, and a
`claimtriage serve` of a test's own."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pandas as pd
import pytest

from models.pyfunc import wire_format


def as_json(frame: pd.DataFrame, bundle) -> list[dict]:
    """Claims as the claims system sends them: the wire format, absent fields left out."""
    wire = wire_format(frame, bundle)
    records = wire.astype(object).where(wire.notna(), None).to_dict(orient="records")
    return [{k: v for k, v in r.items() if v is not None} for r in records]


def browser_tools():
    """Playwright's sync API and Debian's chromium for a real-browser test, or the test is skipped saying why."""
    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed: `make test` installs it")
    return sync_api, chromium


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


class Server:
    """`claimtriage serve --model URI` as a user runs it, on a port of its own."""

    def __init__(self, home: Path, env: dict, model: str, port: int, wait_until_ready, key: str | None = None):
        self.port = port
        self.log = home / f"serve-{self.port}.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cli", "serve", "--model", model, "--port", str(self.port)],
            cwd=Path(__file__).resolve().parents[2], env=env, stdout=self.log.open("w"), stderr=subprocess.STDOUT)
        self.base = f"http://127.0.0.1:{self.port}"
        wait_until_ready(self.process, self.base, self.log)
        printed = self.log.read_text()
        self.key = key or printed.split("API key (Authorization: Bearer ...): ")[1].split()[0]
        self.auth = {"Authorization": f"Bearer {self.key}"}

    def post(self, path: str, body) -> httpx.Response:
        return httpx.post(self.base + path, json=body, headers=self.auth, timeout=60)

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.base + path, headers=self.auth, timeout=60)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
