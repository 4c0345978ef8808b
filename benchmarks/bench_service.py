"""Benchmark: our BentoML service beside `mlflow models serve` for the same registered model.

One run on this machine: trains a model on generated claims into a private registry, starts both
servers, then measures single-claim latency (ours: /score with explanations and persistence;
MLflow: /invocations, scores only) and batch throughput with batches of 256 (ours with and
without explanations; MLflow scores only), and single claims sent by 1 and by 8 clients at once (ours with
its group commit, serving/grouping.py, with it off, and the same scorer behind BentoML's adaptive
batching, benchmarks/adaptive_service.py; against MLflow). Last, /score with and without a shadow
challenger (serving/shadow.py), side by side: the same service on stores of their own, one of them
with a `challenger` alias (a second version of the same model, so it costs what the champion costs)
scored off the answer's path. Requests go in turn, so both meet the same
machine (it is shared, and its speed drifts); throughput is taken from the median batch. Two in
three benchmark claims reuse the claimant, policy, provider, payee, phone and address of a
training claim, so our history features count real earlier claims. Prints medians and
percentiles; not a test.
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
from concurrent.futures import ThreadPoolExecutor
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


def claims_as_json(n: int, seed: int, book=None) -> list[dict]:
    """Fresh claims (new ids) in the wire format, from the generator. With `book` (the training
    claims), two in three take their claimant, policy, provider, payee, phone and address from a
    claim of the book, so history features count real earlier claims as they would in production."""
    from features.schema import ENTITY_FIELDS
    from models.pyfunc import load_bundle, wire_format
    from training.generate import generate_claims

    bundle = load_bundle("models:/claim-triage@champion")
    frame = generate_claims(max(n, 100), seed=seed)  # the generator makes 100 claims at the least
    frame = frame.iloc[np.sort(np.random.default_rng(seed).permutation(len(frame))[:n])].reset_index(drop=True)
    frame["claim_id"] = [f"BENCH-{seed}-{i}" for i in range(len(frame))]
    if book is not None:
        known = np.flatnonzero(np.arange(n) % 3 != 0)
        donors = book.iloc[np.random.default_rng(seed).integers(0, len(book), len(known))]
        for field in ENTITY_FIELDS:
            frame.loc[frame.index[known], field] = donors[field].to_numpy()
    wire = wire_format(frame, bundle)
    records = wire.astype(object).where(wire.notna(), None).to_dict(orient="records")
    return [{k: v for k, v in r.items() if v is not None} for r in records]


def timed_post(client: httpx.Client, url: str, body) -> float:
    start = time.perf_counter()
    client.post(url, json=body).raise_for_status()
    return time.perf_counter() - start


def interleaved(client: httpx.Client, rounds: list[list[tuple[str, object]]]) -> list[np.ndarray]:
    """Each round posts one body to each target in turn, so all targets meet the same machine:
    this one is shared, and its speed drifts over minutes. Returns each target's seconds."""
    times = [[] for _ in rounds[0]]
    for round_ in rounds:
        for k, (url, body) in enumerate(round_):
            times[k].append(timed_post(client, url, body))
    return [np.array(t) for t in times]



def trained_home(prefix: str, train_claims: int, **extra_env: str):
    """A private home (registry, claim store, BentoML home) made the process's own, with a champion
    trained on `train_claims` generated claims (seed 0) and an API key named "benchmark":
    (home, the environment for servers, the generated claims, the key)."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    env = {**os.environ, "CLAIMTRIAGE_HOME": str(home), "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
           "CLAIMTRIAGE_DATABASE_URL": f"sqlite:///{home / 'claims.db'}", "BENTOML_DO_NOT_TRACK": "true",
           "BENTOML_HOME": str(home / "bentoml"), **extra_env}
    os.environ.update(env)
    os.chdir(home)
    from models.config import load_config
    from serving.store import ClaimStore
    from training.generate import generate_claims
    from training.train import run_training

    print(f"training on {train_claims:,} synthetic claims in {home} ...", flush=True)
    book = generate_claims(train_claims, seed=0)
    run_training(book, load_config(), source="benchmark")
    store = ClaimStore(load_config().database_url)
    return home, env, book, store.access.create_key(store.engine, "benchmark")

def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train-claims", type=int, default=200_000)
    parser.add_argument("--singles", type=int, default=300)
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--clients", default="1,8", help="numbers of concurrent clients sending single claims")
    parser.add_argument("--concurrent-rounds", type=int, default=4)
    parser.add_argument("--keep", action="store_true", help="keep the temporary registry and claim store")
    parser.add_argument("--only-shadow", action="store_true", help="only /score with and without a challenger")
    parser.add_argument("--only-detectors", action="store_true",
                        help="only /score of the champion (anomaly detector \"tails\") beside the same training with "
                             "the isolation forest (\"forest\")")
    parser.add_argument("--only-weighting", action="store_true",
                        help="only /score of the champion (fraud not up-weighted) beside the same training with "
                             "reweight_rare_class = true")
    args = parser.parse_args()
    # mlflow starts uvicorn by name: the environment's own bin folder must come first.
    home, env, book, key = trained_home("claimtriage-bench-", args.train_claims,
                                        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    from serving.store import ClaimStore
    # The same service with its group commit off, on a claim store of its own (seeded at its start).
    (home / "alone.toml").write_text("[serving]\nmax_group_claims = 1\n")
    alone_url = f"sqlite:///{home / 'claims-alone.db'}"
    alone_store = ClaimStore(alone_url)
    alone_key = alone_store.access.create_key(alone_store.engine, "benchmark")
    ours_port, alone_port, adaptive_port, theirs_port = free_port(), free_port(), free_port(), free_port()
    bin_dir = Path(sys.executable).parent

    def serve(service: str, port: int, **extra: str) -> subprocess.Popen:
        """A BentoML service of this project, with its own BENTOML_HOME (metrics are kept there)."""
        return subprocess.Popen([sys.executable, "-m", "bentoml", "serve", service, "--host", "127.0.0.1",
                                 "--port", str(port), "--working-dir", str(ROOT)],
                                env={**env, "BENTOML_HOME": str(home / f"bentoml-{port}"), **extra},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    if args.only_detectors or args.only_weighting:
        (compare_detectors if args.only_detectors else compare_weighting)(args, home, book, serve)
        return
    ours = serve("serving.service:ClaimTriage", ours_port)
    alone = serve("serving.service:ClaimTriage", alone_port, CLAIMTRIAGE_CONFIG=str(home / "alone.toml"),
                  CLAIMTRIAGE_DATABASE_URL=alone_url)
    # The same scorer behind BentoML's adaptive batching (benchmarks/adaptive_service.py), on its own store.
    adaptive = serve("benchmarks.adaptive_service:AdaptiveBatching", adaptive_port,
                     CLAIMTRIAGE_DATABASE_URL=f"sqlite:///{home / 'claims-adaptive.db'}")
    theirs = subprocess.Popen([str(bin_dir / "mlflow"), "models", "serve", "-m", "models:/claim-triage@champion",
                               "--env-manager", "local", "-h", "127.0.0.1", "-p", str(theirs_port), "-w", "1"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shadowed = None
    try:
        wait_ready(f"http://127.0.0.1:{ours_port}/readyz", ours)
        wait_ready(f"http://127.0.0.1:{alone_port}/readyz", alone)
        wait_ready(f"http://127.0.0.1:{adaptive_port}/readyz", adaptive)
        wait_ready(f"http://127.0.0.1:{theirs_port}/ping", theirs)
        # Only now a challenger: the servers above have loaded theirs (none); this one loads it.
        shadowed_port, shadowed_url = free_port(), f"sqlite:///{home / 'claims-shadowed.db'}"
        shadowed_store = ClaimStore(shadowed_url)
        shadowed_key = shadowed_store.access.create_key(shadowed_store.engine, "benchmark")
        challenger = register_challenger()
        shadowed = serve("serving.service:ClaimTriage", shadowed_port, CLAIMTRIAGE_DATABASE_URL=shadowed_url)
        wait_ready(f"http://127.0.0.1:{shadowed_port}/readyz", shadowed)
        about = httpx.get(f"http://127.0.0.1:{shadowed_port}/model", timeout=30,
                          headers={"Authorization": f"Bearer {shadowed_key}"}).json()
        if (about["challenger"] or {}).get("version") != challenger:
            raise RuntimeError(f"the shadowed server has no challenger version {challenger}: {about['challenger']}")
        report_shadow(args, f"http://127.0.0.1:{ours_port}", key, f"http://127.0.0.1:{shadowed_port}", shadowed_key,
                      book)
        time.sleep(2)  # the challenger's last claims
        with shadowed_store.engine.connect() as conn:
            written = conn.exec_driver_sql("SELECT count(*) FROM shadow_decisions").scalar_one()
        print(f"shadow rows written by challenger version {challenger}: {written:,}")
        if args.only_shadow:
            return
        report(args, f"http://127.0.0.1:{ours_port}", f"http://127.0.0.1:{theirs_port}", key, book)
        for clients in (int(n) for n in args.clients.split(",")):
            report_concurrent(args, clients, [
                ("ours /score, group commit", f"http://127.0.0.1:{ours_port}/score", key, "claim"),
                ("ours /score, each claim alone", f"http://127.0.0.1:{alone_port}/score", alone_key, "claim"),
                ("same scorer, BentoML adaptive batching", f"http://127.0.0.1:{adaptive_port}/score_listed", key,
                 "list"),
                ("mlflow /invocations (scores only)", f"http://127.0.0.1:{theirs_port}/invocations", key, "mlflow")],
                book)
    finally:
        for process in (ours, alone, adaptive, theirs, *([shadowed] if shadowed else [])):
            process.terminate()
            process.wait(timeout=30)
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)


def compare_detectors(args, home: Path, book, serve) -> None:
    """/score of the champion beside a version trained on the same claims with the isolation forest as
    its anomaly detector (issue #15: the detector may not grow /score's p99 by more than 10%)."""
    compare_training(args, home, book, serve, "anomaly_detector", "forest", "tails",
                     "/score by anomaly detector, same claims, same fraud and eligibility training",
                     "issue #15: p99 may not grow by more than 10%")


def compare_weighting(args, home: Path, book, serve) -> None:
    """/score of the champion (fraud not up-weighted: more, shallower-stopping trees) beside a version
    trained on the same claims with the rare class up-weighted, the release before."""
    compare_training(args, home, book, serve, "reweight_rare_class", True, False,
                     "/score by fraud up-weighting, same claims (the fraud model's tree count differs)",
                     "the configured one (false) may cost at most 10% of p99")


def compare_training(args, home: Path, book, serve, field: str, other, configured, title: str, target: str) -> None:
    """/score of the champion (trained with `[training] field = configured`) beside a version trained on
    the same claims with `field = other`, each served by alias on a claim store of its own; the other
    one first, so the ratio reads configured / other."""
    from dataclasses import replace

    from mlflow import MlflowClient

    from models.config import load_config
    from serving.store import ClaimStore
    from training.train import run_training

    config = load_config()
    if getattr(config.training, field) != configured:
        raise SystemExit(f"claimtriage.toml sets [training] {field} = {getattr(config.training, field)!r}, "
                         f"not {configured!r}: this comparison assumes the configured value")
    client = MlflowClient()
    name = config.registry.model_name
    versions = {"configured": client.get_model_version_by_alias(name, config.registry.champion_alias).version,
                "other": run_training(book, replace(config, training=replace(config.training, **{field: other})),
                                      source="benchmark").version}
    servers, targets = [], []
    try:
        for alias, value in (("other", other), ("configured", configured)):
            client.set_registered_model_alias(name, alias, versions[alias])
            (home / f"{alias}.toml").write_text(f'[serving]\nmodel_alias = "{alias}"\n')
            url = f"sqlite:///{home / f'claims-{alias}.db'}"
            store = ClaimStore(url)
            port = free_port()
            servers.append(serve("serving.service:ClaimTriage", port, CLAIMTRIAGE_CONFIG=str(home / f"{alias}.toml"),
                                 CLAIMTRIAGE_DATABASE_URL=url))
            wait_ready(f"http://127.0.0.1:{port}/readyz", servers[-1])
            targets.append((f"{field} = {value!r} (version {versions[alias]})",
                            f"http://127.0.0.1:{port}", store.access.create_key(store.engine, "benchmark")))
        report_pair(args, title, targets[0], targets[1], target, book)
    finally:
        for process in servers:
            process.terminate()
            process.wait(timeout=30)
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)


def register_challenger() -> str:
    """A second version of the champion's model under the `challenger` alias: a challenger that costs
    exactly what the champion costs to score."""
    from mlflow import MlflowClient

    from models.config import load_config

    registry = load_config().registry
    client = MlflowClient()
    champion = client.get_model_version_by_alias(registry.model_name, registry.champion_alias)
    copy = client.create_model_version(registry.model_name, champion.source, run_id=champion.run_id)
    client.set_registered_model_alias(registry.model_name, registry.challenger_alias, copy.version)
    return str(copy.version)


def report_shadow(args, plain: str, plain_key: str, shadowed: str, shadowed_key: str, book) -> None:
    """/score with and without a shadow challenger (issue #14's target: p99 at most 1.25 times)."""
    report_pair(args, "/score with and without a shadow challenger", ("without a challenger", plain, plain_key),
                ("with a challenger in the shadow", shadowed, shadowed_key), "target: p99 at most 1.25x", book)


def report_pair(args, title: str, first: tuple[str, str, str], second: tuple[str, str, str], target: str,
                book=None) -> None:
    """Single claims to two servers' /score, in turn, who goes first alternating (each server its own
    store, so each claim is new to both): p50 and p99 of each, and their ratio second/first.
    `first` and `second`: (label, base URL, API key)."""
    claims = claims_as_json(args.singles + 20, seed=404, book=book)
    auth = lambda key: {"Authorization": f"Bearer {key}"}  # noqa: E731
    (first_label, first_url, first_key), (second_label, second_url, second_key) = first, second
    with httpx.Client(timeout=120, headers=auth(first_key)) as one, \
            httpx.Client(timeout=120, headers=auth(second_key)) as two:
        for warm in claims[:20]:
            one.post(f"{first_url}/score", json=warm)
            two.post(f"{second_url}/score", json=warm)
        times = [[], []]
        for i, claim in enumerate(claims[20:]):
            order = [(0, one, first_url), (1, two, second_url)]
            for k, client, base in order if i % 2 == 0 else order[::-1]:
                times[k].append(timed_post(client, f"{base}/score", claim) * 1000)
    first_ms, second_ms = (np.array(t) for t in times)
    pct = lambda a, q: float(np.percentile(a, q))  # noqa: E731
    print(f"\n{title} ({len(first_ms)} single claims each, in turn)")
    print(f"{'':44s} {'p50 ms':>8s} {'p99 ms':>8s}")
    print(f"{first_label:44s} {pct(first_ms, 50):8.1f} {pct(first_ms, 99):8.1f}")
    print(f"{second_label:44s} {pct(second_ms, 50):8.1f} {pct(second_ms, 99):8.1f}")
    print(f"ratio second/first: p50 {pct(second_ms, 50) / pct(first_ms, 50):.2f}x, "
          f"p99 {pct(second_ms, 99) / pct(first_ms, 99):.2f}x ({target})")


def report(args, ours: str, theirs: str, key: str, book) -> None:
    singles = claims_as_json(args.singles + 20, seed=101, book=book)
    batch_claims = claims_as_json(BATCH * (args.batches + 1) * 3, seed=202, book=book)
    chunks = [batch_claims[i:i + BATCH] for i in range(0, len(batch_claims), BATCH)]
    # Our service requires an API key (mlflow's has no authentication; the header costs it nothing).
    with httpx.Client(timeout=120, headers={"Authorization": f"Bearer {key}"}) as client:
        for warm in singles[:20]:  # first requests load code paths and caches
            client.post(f"{ours}/score", json=warm)
            client.post(f"{theirs}/invocations", json={"dataframe_records": [warm]})
        client.post(f"{ours}/score_batch", json={"claims": chunks[0], "explain": True})
        client.post(f"{ours}/score_batch", json={"claims": chunks[1], "explain": False})
        client.post(f"{theirs}/invocations", json={"dataframe_records": chunks[2]})
        ours_single, theirs_single = (t * 1000 for t in interleaved(client, [
            [(f"{ours}/score", c), (f"{theirs}/invocations", {"dataframe_records": [c]})] for c in singles[20:]]))
        n = args.batches
        explained, scores, theirs_scores = interleaved(client, [
            [(f"{ours}/score_batch", {"claims": chunks[3 + 3 * i], "explain": True}),
             (f"{ours}/score_batch", {"claims": chunks[4 + 3 * i], "explain": False}),
             (f"{theirs}/invocations", {"dataframe_records": chunks[5 + 3 * i]})] for i in range(n)])
    pct = lambda a, q: float(np.percentile(a, q))  # noqa: E731
    rate = lambda seconds: BATCH / statistics.median(seconds)  # noqa: E731
    print(f"\nmachine: {os.cpu_count()} cores; one worker each; requests interleaved ours/mlflow; "
          f"{args.singles} single claims, {n} batches of {BATCH} per row; 2 in 3 claims reuse the "
          f"entities of a training claim (real history)")
    print(f"{'single claim over HTTP':44s} {'p50 ms':>8s} {'p99 ms':>8s}")
    print(f"{'ours /score (explanations + persistence)':44s} {pct(ours_single, 50):8.1f} {pct(ours_single, 99):8.1f}")
    print(f"{'mlflow /invocations (scores only)':44s} {pct(theirs_single, 50):8.1f} {pct(theirs_single, 99):8.1f}")
    print(f"{'batch of 256 (median batch)':44s} {'claims/s':>8s}")
    print(f"{'ours /score_batch, explanations of 3 models':44s} {rate(explained):8.0f}")
    print(f"{'ours /score_batch, scores only':44s} {rate(scores):8.0f}")
    print(f"{'mlflow /invocations, scores only':44s} {rate(theirs_scores):8.0f}")
    print(f"ratio ours/mlflow, scores only: {rate(scores) / rate(theirs_scores):.2f}x; "
          f"single-claim median ratio ours/mlflow: {statistics.median(ours_single) / statistics.median(theirs_single):.2f}x")


def report_concurrent(args, clients: int, targets: list[tuple[str, str, str, str]], book) -> None:
    """Single claims from `clients` clients at once, each client sending its next claim when
    answered: claims/s and latency per target. Rounds go to the targets in turn (rotating which
    goes first); each round sends fresh claims."""
    per_round = max(clients * 40, 160)
    claims = claims_as_json(per_round * len(targets) * args.concurrent_rounds + 20, seed=300 + clients, book=book)
    rates: list[list[float]] = [[] for _ in targets]
    latencies: list[list[float]] = [[] for _ in targets]
    position = 20
    with ThreadPoolExecutor(clients) as pool:
        for _, url, key, shape in targets:  # warm each server's code paths
            for warm in claims[:clients]:
                _post_one(url, key, warm, shape)
        for r in range(args.concurrent_rounds):
            order = list(range(len(targets)))
            order = order[r % len(order):] + order[:r % len(order)]
            for k in order:
                _, url, key, shape = targets[k]
                chunk = claims[position:position + per_round]
                position += per_round
                start = time.perf_counter()
                seconds = list(pool.map(lambda part: _post_many(url, key, part, shape),
                                        [chunk[i::clients] for i in range(clients)]))
                rates[k].append(len(chunk) / (time.perf_counter() - start))
                latencies[k] += [t for part in seconds for t in part]
    print(f"\n{clients} clients at once, each sending single claims ({args.concurrent_rounds} rounds of "
          f"{per_round} claims per row; median round)")
    print(f"{'':44s} {'claims/s':>8s} {'p50 ms':>8s} {'p99 ms':>8s}")
    for (name, *_), rate, lat in zip(targets, rates, latencies):
        ms = np.array(lat) * 1000
        print(f"{name:44s} {statistics.median(rate):8.0f} {np.percentile(ms, 50):8.1f} {np.percentile(ms, 99):8.1f}")
    grouped = statistics.median(rates[0])
    print("ratio of the group commit's claims/s to: " + "; ".join(
        f"{name} {grouped / statistics.median(rate):.2f}x" for (name, *_), rate in zip(targets[1:], rates[1:])))


def _body(claim: dict, shape: str):
    """A claim as each server takes it: the claim itself, a list of one, or a pandas-style frame."""
    return {"claim": claim, "list": {"claims": [claim]}, "mlflow": {"dataframe_records": [claim]}}[shape]


def _post_one(url: str, key: str, claim: dict, shape: str) -> None:
    httpx.post(url, json=_body(claim, shape), timeout=120,
               headers={"Authorization": f"Bearer {key}"}).raise_for_status()


def _post_many(url: str, key: str, claims: list[dict], shape: str) -> list[float]:
    """One client: each claim in turn over one connection; the seconds each took."""
    seconds = []
    with httpx.Client(timeout=120, headers={"Authorization": f"Bearer {key}"}) as client:
        for claim in claims:
            seconds.append(timed_post(client, url, _body(claim, shape)))
    return seconds

if __name__ == "__main__":
    main()
