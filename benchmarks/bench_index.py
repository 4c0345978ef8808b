"""Benchmark: the in-memory history index (serving/history_index.py) at the size of a real book.

For each book size (default 1M and 10M generated claims), the index of a baseline revision (the
layout of Python lists and tuples, loaded from git: default b89f8fb) and the current one, side by
side: start-up time, memory a claim, and what a scoring transaction pays.

- The book: `training.generate.generate_claims` in chunks of `--chunk` claims, chunk k with seed k
  (its own claimants, policies, providers and accounts) and claim ids renamed to stay unique; one
  10M frame at once would need tens of GB. Chunks are kept as rows in `--cache` between runs.
- Built from rows directly, as `HistoryIndex.from_rows` gets them from the store's SELECT
  ((claim_id, seq, report time as SQLite's text, *INDEXED_FIELDS)); reading them from SQLite
  comes on top. The time to feed the rows alone is measured and taken off the build time.
- Each layout in its own process: RSS after the build (and the peak, VmHWM), by claim; by
  tracemalloc in another process (the baseline only up to `--trace-old-max`: tracing its ~100
  million objects at 10M would take more memory than the machine has).
- Per claim: `history()` for a batch of 256 claims and the claim graph's walk for the same batch
  (each batch put and rolled back), and one claim put, counted and rolled back on its own. The
  probes are the book's newest claims under new claim ids, so they meet their history.
- With tracemalloc, also what each claim stored online costs (new claimants, accounts and phones).
- `--store N`: instead, a real SQLite store of N generated claims (seed 0), and the service's start-up
  with each layout: `ClaimStore.history_index()`, the SELECT of every claim and the build.

Usage: `python benchmarks/bench_index.py [--claims 1000000 10000000] [--baseline REV] [--store N]`.
Not a test.
"""

from __future__ import annotations

import argparse
import gc
import json
import pickle
import statistics
import subprocess
import sys
import time
import tracemalloc
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from features.graph import GraphSettings  # noqa: E402
from features.history import history_feature_requirements  # noqa: E402
from serving import graph_history, history_index  # noqa: E402
from training.generate import generate_claims  # noqa: E402

COUNTED = sorted(history_feature_requirements())
# The graph's features both revisions compute (the walk costs the same whichever are asked for).
WALKED = ["ring_claims", "ring_claimants", "ring_claims_90d", "ring_claims_2hop", "ring_fraud_share"]
BATCH, BATCHES, SINGLES, ONLINE = 256, 8, 2_000, 20_000


def chunk_rows(cache: Path, seed: int, size: int) -> tuple[list, ...]:
    """One chunk of the book as the store's columns, generated once and kept in `cache`."""
    path = cache / f"chunk-{seed}-{size}.pickle"
    if not path.exists():
        frame = generate_claims(size, seed=seed)
        reported = frame["report_date"].where(frame["report_date"].notna(), frame["loss_date"])
        columns = ([f"C{seed:03d}-{i:09d}" for i in range(len(frame))], list(range(seed * size + 1, (seed + 1) * size + 1)),
                   [None if t is None else t.strftime("%Y-%m-%d %H:%M:%S.%f")
                    for t in reported.astype(object).where(reported.notna(), None)],
                   *[frame[field].astype(object).where(frame[field].notna(), None).tolist()
                     for field in history_index.INDEXED_FIELDS])
        cache.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(columns, protocol=5))
    return pickle.loads(path.read_bytes())


def book_rows(cache: Path, claims: int, chunk: int):
    """The book's rows, a chunk at a time (only one chunk's Python objects alive at once)."""
    for seed in range(-(-claims // chunk)):
        yield from zip(*chunk_rows(cache, seed, chunk))


def probes(cache: Path, claims: int, chunk: int, count: int, prefix: str, seed: int | None = None) -> list[dict]:
    """Claims to score: the book's newest under new ids, or (`seed`) claims of entities never seen."""
    from datetime import datetime

    columns = chunk_rows(cache, -(-claims // chunk) - 1 if seed is None else seed, chunk)
    rows = list(zip(*columns))[-count:]
    return [{"claim_id": f"{prefix}{i}", "report_date": datetime.fromisoformat(row[2]),
             **{field: value for field, value in zip(history_index.INDEXED_FIELDS, row[3:]) if value is not None}}
            for i, row in enumerate(rows)]


def baseline(rev: str) -> tuple[types.ModuleType, types.ModuleType]:
    """The history index and the graph walk over it as they were at `rev`."""
    def module(path: str, name: str) -> types.ModuleType:
        source = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, check=True, capture_output=True,
                                text=True).stdout
        found = types.ModuleType(name)
        exec(compile(source, f"{rev}:{path}", "exec"), found.__dict__)
        return found

    old_index = module("serving/history_index.py", "baseline_history_index")
    current, sys.modules["serving.history_index"] = sys.modules["serving.history_index"], old_index
    try:  # its graph walk imports the index module of its own revision
        return old_index, module("serving/graph_history.py", "baseline_graph_history")
    finally:
        sys.modules["serving.history_index"] = current


def rss_mb() -> tuple[float, float]:
    """This process's resident memory now and at its peak, in MB."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def transactions(index, graph, batches: list[list[dict]], singles: list[dict]) -> dict:
    """Microseconds a claim: history and graph walk of batches, and one claim put and counted alone."""
    settings = GraphSettings()
    counting, walking = [], []
    for batch in batches:
        index.begin()
        for claim in batch:
            index.put(claim)
        started = time.process_time()
        index.history(batch, COUNTED)
        counting.append((time.process_time() - started) / len(batch) * 1e6)
        started = time.process_time()
        graph.graph_history(graph.IndexLookup(index), batch, WALKED, settings)
        walking.append((time.process_time() - started) / len(batch) * 1e6)
        index.end(False)
    single = []
    for claim in singles:
        started = time.process_time()
        index.begin()
        index.put(claim)
        index.history([claim], COUNTED)
        index.end(False)
        single.append((time.process_time() - started) * 1e6)
    return {"history_us": statistics.median(counting), "graph_us": statistics.median(walking),
            "put_history_us": statistics.median(single)}


def measure(args) -> dict:
    """One layout, one size, in this process (`--one`): what the docstring says, as JSON."""
    index_module, graph = baseline(args.baseline) if args.one == "old" else (history_index, graph_history)
    cache = Path(args.cache)
    newest = probes(cache, args.claims[0], args.chunk, BATCH * BATCHES + SINGLES, "NEW-")
    fresh = probes(cache, args.claims[0], args.chunk, ONLINE, "ONLINE-", seed=900) if args.trace else []
    started = time.process_time()
    for _ in book_rows(cache, args.claims[0], args.chunk):
        pass
    feeding = time.process_time() - started
    gc.collect()
    rss_before, _ = rss_mb()
    if args.trace:
        tracemalloc.start()
    started = time.process_time()
    index = index_module.HistoryIndex.from_rows(book_rows(cache, args.claims[0], args.chunk))
    built = time.process_time() - started - feeding
    gc.collect()
    found = {"layout": args.one, "claims": len(index.claims), "build_s": built, "feed_s": feeding}
    if args.trace:
        traced, peak = tracemalloc.get_traced_memory()
        found.update(traced_bytes=traced / len(index.claims), traced_peak_bytes=peak / len(index.claims))
        for start in range(0, len(fresh), BATCH):  # stored online, committed
            index.begin()
            for claim in fresh[start:start + BATCH]:
                index.put(claim)
            index.end(True)
        found["online_bytes"] = (tracemalloc.get_traced_memory()[0] - traced) / len(fresh)
        tracemalloc.stop()
        return found
    rss, peak = rss_mb()
    found.update(rss_bytes=(rss - rss_before) * 2 ** 20 / len(index.claims), rss_mb=rss - rss_before, peak_rss_mb=peak)
    batches = [newest[i * BATCH:(i + 1) * BATCH] for i in range(BATCHES)]
    found.update(transactions(index, graph, batches, newest[BATCH * BATCHES:]))
    return found


def store_startup(args) -> dict | None:
    """The start-up of a service on a SQLite store of `args.store` claims (kept in the cache), each
    layout in its own process (`--one`): the store's `history_index()`, its SELECT and the build."""
    from serving import store as store_module

    path = Path(args.cache) / f"store-{args.store}.db"
    if args.one:
        if args.one == "old":
            store_module.HistoryIndex = baseline(args.baseline)[0].HistoryIndex  # the class the store builds
        gc.collect()
        before = rss_mb()[0]
        started, cpu = time.perf_counter(), time.process_time()
        index = store_module.ClaimStore(f"sqlite:///{path}").history_index()
        return {"layout": args.one, "claims": len(index.claims), "wall_s": time.perf_counter() - started,
                "cpu_s": time.process_time() - cpu, "rss_mb": rss_mb()[0] - before}
    if not path.exists():
        started = time.perf_counter()
        store_module.ClaimStore(f"sqlite:///{path}").seed(generate_claims(args.store, seed=0))
        print(f"store of {args.store:,} generated claims seeded in {time.perf_counter() - started:.0f} s")
    for layout in args.layouts:
        command = [sys.executable, __file__, "--store", str(args.store), "--one", layout, "--cache", args.cache,
                   "--baseline", args.baseline]
        found = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        print(f"{layout}: start-up {found['wall_s']:.1f} s ({found['cpu_s']:.1f} s CPU), RSS +{found['rss_mb']:.0f} MB "
              f"for {found['claims']:,} claims", flush=True)
    return None


def run(args, layout: str, claims: int, trace: bool) -> dict:
    command = [sys.executable, __file__, "--one", layout, "--claims", str(claims), "--chunk", str(args.chunk),
               "--cache", args.cache, "--baseline", args.baseline, *(["--trace"] if trace else [])]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--claims", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--chunk", type=int, default=1_000_000)
    parser.add_argument("--baseline", default="b89f8fb", help="git revision of the layout to compare with")
    parser.add_argument("--cache", default="/tmp/bench_index_cache")
    parser.add_argument("--trace-old-max", type=int, default=1_000_000)
    parser.add_argument("--layouts", nargs="+", choices=("old", "new"), default=["old", "new"])
    parser.add_argument("--store", type=int, help="measure a real SQLite store's start-up instead")
    parser.add_argument("--one", choices=("old", "new"), help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.store:
        found = store_startup(args)
        if found:
            print(json.dumps(found))
        return
    if args.one:
        print(json.dumps(measure(args)))
        return
    print(f"baseline {args.baseline}; chunks of {args.chunk:,} generated claims; rows fed from memory")
    print(f"{'claims':>11} {'layout':6} {'build s':>8} {'RSS MB':>8} {'RSS B/claim':>11} {'peak RSS MB':>11} "
          f"{'traced B/claim':>14} {'trace peak':>10} {'online B/claim':>14} {'history us':>10} {'graph us':>8} "
          f"{'put+history us':>14}")
    for claims in args.claims:
        for layout in args.layouts:
            found = run(args, layout, claims, trace=False)
            traced = run(args, layout, claims, trace=True) if layout == "new" or claims <= args.trace_old_max else {}
            print(f"{found['claims']:>11,} {layout:6} {found['build_s']:8.1f} {found['rss_mb']:8.0f} "
                  f"{found['rss_bytes']:11.0f} {found['peak_rss_mb']:11.0f} {traced.get('traced_bytes', float('nan')):14.0f} "
                  f"{traced.get('traced_peak_bytes', float('nan')):10.0f} {traced.get('online_bytes', float('nan')):14.0f} "
                  f"{found['history_us']:10.1f} {found['graph_us']:8.1f} {found['put_history_us']:14.1f}", flush=True)


if __name__ == "__main__":
    main()
