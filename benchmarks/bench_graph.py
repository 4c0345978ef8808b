"""Benchmark: what the claim graph (features/graph.py, serving/graph_history.py) costs.

One run on this machine, on a generated book (default 200,000 claims): the offline pass over the
whole book (union-find in report order) against the other history features of the same book, and its
peak memory (tracemalloc, a second pass); the online walk per claim from the in-memory history index
(single claims and batches of 256 new claims, each put in a transaction that is rolled back), side by
side with the other history features counted for the same claims; and the index's memory per claim (the graph needs each
value's claims and times for every identity: measured as the index built with the graph's lists
against without, by tracemalloc). Prints medians and percentiles; not a test.

Usage: `python benchmarks/bench_graph.py [--claims 200000] [--seed 0]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from features.graph import GRAPH_FEATURES, GraphReport, GraphSettings, graph_features  # noqa: E402
from features.history import history_feature_requirements, history_features  # noqa: E402
from serving.history_index import HistoryIndex  # noqa: E402
from serving.store import ClaimStore  # noqa: E402
from training.generate import generate_claims  # noqa: E402

COUNTED = sorted(history_feature_requirements())


def records(frame) -> list[dict]:
    plain = frame.astype(object).where(frame.notna(), None)
    return [{k: (v.to_pydatetime() if hasattr(v, "to_pydatetime") else v) for k, v in row.items() if v is not None}
            for row in plain.to_dict(orient="records")]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--claims", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    book = generate_claims(args.claims, seed=args.seed)
    settings = GraphSettings()
    print(f"book: {len(book):,} generated claims, seed {args.seed}; graph links {', '.join(settings.link_fields)}, "
          f"cap {settings.max_claims_per_identity}")

    # Offline: the whole book, graph and the other history features side by side.
    started = time.perf_counter()
    report = GraphReport()
    offline = graph_features(book, settings=settings, report=report)
    graph_s = time.perf_counter() - started
    started = time.perf_counter()
    history_features(book, names=COUNTED)
    counted_s = time.perf_counter() - started
    print(f"offline: graph {graph_s:.1f} s ({graph_s / len(book) * 1e6:.1f} us a claim), other history features "
          f"{counted_s:.1f} s; identities ignored: {report.as_dict()}")
    # Its memory: the same pass again under tracemalloc (which slows it, so not timed), the peak above
    # what the book already holds.
    tracemalloc.start()
    graph_features(book, settings=settings)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"  offline graph memory: peak {peak / 1e6:.0f} MB ({peak / len(book):.0f} bytes a claim)")
    sizes = offline["ring_claims"]
    print(f"  components as met: median {statistics.median(sizes):.0f} earlier claims, max {sizes.max():.0f}")

    # Online: the newest 1% of the book scored against the rest.
    cut = len(book) - max(256 * 4, len(book) // 100)
    history, new = book.iloc[:cut], records(book.iloc[cut:].drop(columns=["fraud_confirmed_at"], errors="ignore"))
    with tempfile.TemporaryDirectory() as tmp:
        store = ClaimStore(f"sqlite:///{Path(tmp) / 'claims.db'}")
        store.seed(history)
        started = time.perf_counter()
        store.history_index()
        print(f"index built in {time.perf_counter() - started:.1f} s for {cut:,} claims")
        for label, names in (("graph", list(GRAPH_FEATURES)), ("other history", COUNTED)):
            single = []
            for claim in new[:400]:
                started = time.perf_counter()
                store.history_features([claim], names, settings)
                single.append((time.perf_counter() - started) * 1e3)
            batches = []
            for start in range(0, 4 * 256, 256):
                started = time.perf_counter()
                store.history_features(new[start:start + 256], names, settings)
                batches.append((time.perf_counter() - started) * 1e3)
            print(f"online {label:13s}: one claim median {statistics.median(single):.2f} ms, p99 "
                  f"{percentile(single, 0.99):.2f} ms (each in its own rolled-back transaction); batch of 256 "
                  f"median {statistics.median(batches):.0f} ms")
        with store.engine.connect() as conn:
            rows = list(store._index_rows(conn))
    tracemalloc.start()
    index = HistoryIndex.from_rows(rows)
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del index
    # Each identity's claims are one slice of an int32 array in report order (serving/history_index.py):
    # what the graph reads costs 4 bytes a claim and identity; benchmarks/bench_index.py sizes the index.
    print(f"index memory: {held / len(rows):.0f} bytes a claim ({len(rows):,} claims)")

if __name__ == "__main__":
    main()
