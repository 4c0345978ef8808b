"""Benchmark: the service under hostile traffic (issue #13), on a real server of its own.

Trains a model on generated claims into a private registry, starts `bentoml serve`, then:
1. /score latency from one client, idle and while another client sends maximal bad requests in a
   loop (an 8 MB batch whose last claim has a key twice, one claim of 700,000 fields, a 256 KB claim
   of 20,000 fields, 1,001 claims, a body over the limit), in alternating rounds so both meet the
   same machine (it is shared, and its speed drifts): medians of the rounds' p50 and p99, and ratios;
2. the worker's memory and the number of metric series before and after 50,000 requests to
   distinct made-up paths (/cases/<random id>, /<random>/<random>), sent over keep-alive
   connections by an asyncio client.
Prints the numbers; not a test (tests/serving/test_edge.py holds the service to loose bounds).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: the project's packages
    sys.path.insert(0, str(ROOT))

from benchmarks.bench_service import claims_as_json, free_port, trained_home, wait_ready  # noqa: E402


def hostile_requests(max_body_bytes: int = 262_144, max_batch_body_bytes: int = 8_388_608,
                     max_batch: int = 1000) -> list[tuple[str, str, bytes, int]]:
    """(name, path, body, the status it must get): the largest bad requests the limits let through
    to the JSON checks, and one the size limit stops at once."""
    pad = "p" * ((max_batch_body_bytes - 2_000) // max_batch - 200)
    claims = [f'{{"claim_id": "H-{i}", "claim_amount": 100.0, "region": "{pad}"}}' for i in range(max_batch - 1)]
    claims.append('{"claim_id": "H-last", "claim_amount": 100.0, "claim_amount": 1e9}')
    duplicate_last = ('{"claims": [' + ", ".join(claims) + '], "explain": true}').encode()
    fields = (max_batch_body_bytes - 100) // len('"f0000000": 0, ')
    one_wide_claim = ('{"claims": [{' + ", ".join(f'"f{i:07d}": 0' for i in range(fields)) + "}]}").encode()
    single_fields = (max_body_bytes - 100) // len('"f000000": 0, ')
    wide_single = ("{" + ", ".join(f'"f{i:06d}": 0' for i in range(single_fields)) + "}").encode()
    too_many = json.dumps({"claims": [{}] * (max_batch + 1)}).encode()
    assert len(duplicate_last) <= max_batch_body_bytes and len(one_wide_claim) <= max_batch_body_bytes
    assert len(wide_single) <= max_body_bytes
    return [("8 MB batch, a key twice in its last claim", "/score_batch", duplicate_last, 400),
            (f"one claim of {fields:,} fields in a batch", "/score_batch", one_wide_claim, 422),
            (f"/score: a {len(wide_single) // 1024} KB claim of {single_fields:,} fields", "/score",
             wide_single, 422),
            (f"{max_batch + 1:,} claims", "/score_batch", too_many, 413),
            ("a body over the limit", "/score", b"x" * (max_body_bytes + 1), 413)]


class HostileLoop:
    """An attacker, in a process of its own (so it takes nothing from the measuring client's
    interpreter), sending hostile_requests() in turn, over and over, until stopped. Afterwards,
    `statuses` counts its answers by status and `wrong` lists those that were not as expected."""

    def __init__(self, base: str, headers: dict):
        context = multiprocessing.get_context("spawn")
        self._stop, self._found = context.Event(), context.Queue()
        self._process = context.Process(target=_attack, args=(base, headers, self._stop, self._found), daemon=True)
        self.statuses: dict[int, int] = {}
        self.wrong: list[str] = []

    def __enter__(self) -> "HostileLoop":
        ready = self._found
        self._process.start()
        assert ready.get(timeout=120) == "ready"
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self.statuses, self.wrong = self._found.get(timeout=120)
        self._process.join(timeout=60)


def _attack(base: str, headers: dict, stop, found) -> None:
    requests = hostile_requests()
    statuses, wrong = {}, []
    with httpx.Client(timeout=120, headers={**headers, "content-type": "application/json"}) as client:
        found.put("ready")
        while not stop.is_set():
            for name, path, body, status in requests:
                got = client.post(base + path, content=body).status_code
                statuses[got] = statuses.get(got, 0) + 1
                if got != status:
                    wrong.append(f"{name}: {got}, not {status}")
    found.put((statuses, wrong))


def score_latencies(base: str, headers: dict, claims: list[dict]) -> np.ndarray:
    """Milliseconds for each claim sent alone to /score, one after another over one connection."""
    seconds = []
    with httpx.Client(timeout=120, headers=headers) as client:
        for claim in claims:
            start = time.perf_counter()
            client.post(base + "/score", json=claim).raise_for_status()
            seconds.append(time.perf_counter() - start)
    return np.array(seconds) * 1000


def idle_and_hostile(base: str, headers: dict, claims: list[dict], rounds: int) -> dict[str, list[np.ndarray]]:
    """Per round, /score latencies with the service idle, then while a HostileLoop runs."""
    per = len(claims) // (2 * rounds)
    found = {"idle": [], "hostile": [], "attack rate": []}
    for r in range(rounds):
        part = claims[2 * r * per:(2 * r + 2) * per]
        found["idle"].append(score_latencies(base, headers, part[:per]))
        with HostileLoop(base, headers) as loop:
            start = time.perf_counter()
            found["hostile"].append(score_latencies(base, headers, part[per:]))
            seconds = time.perf_counter() - start
        found["attack rate"].append(sum(loop.statuses.values()) / seconds)
        if loop.wrong:
            raise AssertionError(f"hostile requests answered otherwise than expected: {loop.wrong[:5]}")
    return found


def distinct_paths(base: str, n: int, connections: int = 8, headers: dict | None = None) -> float:
    """Send `n` GET requests to distinct made-up paths over keep-alive connections; the seconds taken."""
    host = base.split("//", 1)[1]
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())

    async def one_connection(paths: list[str]) -> None:
        reader, writer = await asyncio.open_connection(*host.split(":"))
        for path in paths:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            await reader.readexactly(length)
        writer.close()

    async def all_connections() -> None:
        paths = [f"/cases/{uuid.uuid4().hex}" if i % 2 else f"/{uuid.uuid4().hex[:8]}/{uuid.uuid4().hex}"
                 for i in range(n)]
        await asyncio.gather(*(one_connection(paths[k::connections]) for k in range(connections)))

    start = time.perf_counter()
    asyncio.run(all_connections())
    return time.perf_counter() - start


def worker_rss(server_pid: int) -> int:
    """Resident memory, in bytes, of the server's worker (the process that serves requests)."""
    import psutil

    workers = [p for p in psutil.Process(server_pid).children(recursive=True)
               if "_bentoml_impl.worker" in " ".join(p.cmdline())]
    assert len(workers) == 1, workers
    return workers[0].memory_info().rss


def metric_series(base: str, headers: dict) -> list[str]:
    """The samples /metrics lists (one line per series and bucket)."""
    text = httpx.get(base + "/metrics", headers=headers, timeout=30).text
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train-claims", type=int, default=20_000)
    parser.add_argument("--singles", type=int, default=1200, help="/score requests, half idle, half under attack")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--paths", type=int, default=50_000)
    args = parser.parse_args()
    home, env, book, key = trained_home("claimtriage-hostile-", args.train_claims)
    headers = {"Authorization": f"Bearer {key}"}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "bentoml", "serve", "serving.service:ClaimTriage", "--host",
                               "127.0.0.1", "--port", str(port), "--working-dir", str(ROOT)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(f"{base}/readyz", server)
        claims = claims_as_json(args.singles + 20, seed=7, book=book)
        score_latencies(base, headers, claims[:20])  # first requests load code paths and caches
        report_latency(idle_and_hostile(base, headers, claims[20:], args.rounds), args.rounds)
        report_memory(base, headers, server.pid, args.paths)
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(home, ignore_errors=True)


def report_latency(found: dict[str, list[np.ndarray]], rounds: int) -> None:
    p = {(phase, q): statistics.median(float(np.percentile(ms, q)) for ms in found[phase])
         for phase in ("idle", "hostile") for q in (50, 99)}
    print(f"\nmachine: {os.cpu_count()} cores; one worker; /score from one client, {rounds} rounds of idle then "
          f"under attack ({len(found['idle'][0])} claims each); one attacker sending, in turn:")
    for name, path, body, status in hostile_requests():
        print(f"  {name} ({path}, {len(body) / 1e6:.1f} MB) -> {status}")
    print(f"{'/score latency (median of rounds)':40s} {'p50 ms':>8s} {'p99 ms':>8s}")
    for phase in ("idle", "hostile"):
        print(f"{phase:40s} {p[phase, 50]:8.1f} {p[phase, 99]:8.1f}")
    print(f"ratio under attack / idle: p50 {p['hostile', 50] / p['idle', 50]:.2f}x, "
          f"p99 {p['hostile', 99] / p['idle', 99]:.2f}x; the attacker's requests answered: "
          f"{statistics.median(found['attack rate']):.0f}/s (median of rounds)")


def report_memory(base: str, headers: dict, server_pid: int, n: int) -> None:
    distinct_paths(base, 2_000)  # the first requests of a kind allocate what every later one reuses
    before, series_before = worker_rss(server_pid), len(metric_series(base, headers))
    seconds = distinct_paths(base, n)
    after, series_after = worker_rss(server_pid), len(metric_series(base, headers))
    print(f"\n{n:,} requests to distinct made-up paths in {seconds:.1f} s ({n / seconds:,.0f}/s, 8 keep-alive "
          f"connections): worker {before / 2**20:,.0f} MB -> {after / 2**20:,.0f} MB "
          f"({(after - before) / 2**20:+.1f} MB); metric series {series_before:,} -> {series_after:,}")


if __name__ == "__main__":
    main()
