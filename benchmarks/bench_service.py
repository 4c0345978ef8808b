"""Benchmark: our BentoML service beside `mlflow models serve` for the same registered model.

One run on this machine: trains a model into a private registry (or uses --tracking-uri), starts
both servers, then measures single-claim latency (ours: /score with explanations and
persistence; MLflow: /invocations, scores only) and batch throughput with batches of 256 (ours
with and without explanations; MLflow scores only). Prints medians and percentiles; not a test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BATCH = 256


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, process: subprocess.Popen, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server for {url} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready after {seconds} s")


def claims_as_json(n: int, seed: int) -> list[dict]:
    """Fresh claims (new ids) in the wire format, from the generator."""
    from models.pyfunc import load_bundle, wire_format
    from training.generate import generate_claims

    bundle = load_bundle("models:/claim-triage@champion")
    frame = generate_claims(n, seed=seed)
    frame["claim_id"] = [f"BENCH-{seed}-{i}" for i in range(len(frame))]
    wire = wire_format(frame, bundle)
    records = wire.astype(object).where(wire.notna(), None).to_dict(orient="records")
    return [{k: v for k, v in r.items() if v is not None} for r in records]


def latency(client: httpx.Client, url: str, bodies: list) -> np.ndarray:
    times = []
    for body in bodies:
        start = time.perf_counter()
        reply = client.post(url, json=body)
        times.append(time.perf_counter() - start)
        reply.raise_for_status()
    return np.array(times) * 1000


def throughput(client: httpx.Client, url: str, bodies: list, claims_per_body: int) -> float:
    start = time.perf_counter()
    for body in bodies:
        client.post(url, json=body).raise_for_status()
    return len(bodies) * claims_per_body / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train-claims", type=int, default=200_000)
    parser.add_argument("--singles", type=int, default=300)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--keep", action="store_true", help="keep the temporary registry and claim store")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="claimtriage-bench-"))
    env = {**os.environ, "CLAIMTRIAGE_HOME": str(home), "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
           "CLAIMTRIAGE_DATABASE_URL": f"sqlite:///{home / 'claims.db'}", "BENTOML_DO_NOT_TRACK": "true",
           # mlflow starts uvicorn by name: the environment's own bin folder must come first.
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    os.environ.update(env)
    os.chdir(home)
    from models.config import load_config
    from training.generate import generate_claims
    from training.train import run_training

    print(f"training on {args.train_claims:,} synthetic claims in {home} ...", flush=True)
    run_training(generate_claims(args.train_claims, seed=0), load_config(), source="benchmark")
    from serving.store import ClaimStore

    store = ClaimStore(load_config().database_url)
    key = store.access.create_key(store.engine, "benchmark")
    ours_port, theirs_port = free_port(), free_port()
    bin_dir = Path(sys.executable).parent
    ours = subprocess.Popen([sys.executable, "-m", "bentoml", "serve", "serving.service:ClaimTriage", "--host",
                             "127.0.0.1", "--port", str(ours_port), "--working-dir", str(ROOT)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    theirs = subprocess.Popen([str(bin_dir / "mlflow"), "models", "serve", "-m", "models:/claim-triage@champion",
                               "--env-manager", "local", "-h", "127.0.0.1", "-p", str(theirs_port), "-w", "1"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(f"http://127.0.0.1:{ours_port}/readyz", ours)
        wait_ready(f"http://127.0.0.1:{theirs_port}/ping", theirs)
        report(args, f"http://127.0.0.1:{ours_port}", f"http://127.0.0.1:{theirs_port}", key)
    finally:
        for process in (ours, theirs):
            process.terminate()
            process.wait(timeout=30)
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)


def report(args, ours: str, theirs: str, key: str) -> None:
    singles = claims_as_json(args.singles + 20, seed=101)
    batch_claims = claims_as_json(BATCH * args.batches * 3, seed=202)
    chunks = [batch_claims[i:i + BATCH] for i in range(0, len(batch_claims), BATCH)]
    # Our service requires an API key (mlflow's has no authentication; the header costs it nothing).
    with httpx.Client(timeout=120, headers={"Authorization": f"Bearer {key}"}) as client:
        for warm in singles[:20]:  # first requests load code paths and caches
            client.post(f"{ours}/score", json=warm)
            client.post(f"{theirs}/invocations", json={"dataframe_records": [warm]})
        ours_single = latency(client, f"{ours}/score", singles[20:])
        theirs_single = latency(client, f"{theirs}/invocations", [{"dataframe_records": [c]} for c in singles[20:]])
        n = args.batches
        ours_explained = throughput(client, f"{ours}/score_batch",
                                    [{"claims": c, "explain": True} for c in chunks[:n]], BATCH)
        ours_scores = throughput(client, f"{ours}/score_batch",
                                 [{"claims": c, "explain": False} for c in chunks[n:2 * n]], BATCH)
        theirs_scores = throughput(client, f"{theirs}/invocations",
                                   [{"dataframe_records": c} for c in chunks[2 * n:]], BATCH)
    pct = lambda a, q: float(np.percentile(a, q))  # noqa: E731
    print(f"\nmachine: {os.cpu_count()} cores; one worker each; {args.singles} single claims, "
          f"{n} batches of {BATCH} per row")
    print(f"{'single claim over HTTP':44s} {'p50 ms':>8s} {'p99 ms':>8s}")
    print(f"{'ours /score (explanations + persistence)':44s} {pct(ours_single, 50):8.1f} {pct(ours_single, 99):8.1f}")
    print(f"{'mlflow /invocations (scores only)':44s} {pct(theirs_single, 50):8.1f} {pct(theirs_single, 99):8.1f}")
    print(f"{'batch of 256':44s} {'claims/s':>8s}")
    print(f"{'ours /score_batch, explanations of 3 models':44s} {ours_explained:8.0f}")
    print(f"{'ours /score_batch, scores only':44s} {ours_scores:8.0f}")
    print(f"{'mlflow /invocations, scores only':44s} {theirs_scores:8.0f}")
    print(f"ratio ours/mlflow, scores only: {ours_scores / theirs_scores:.2f}x; "
          f"single-claim median ratio ours/mlflow: {statistics.median(ours_single) / statistics.median(theirs_single):.2f}x")


if __name__ == "__main__":
    main()
