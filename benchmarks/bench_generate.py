"""Benchmark: generating 1,000,000 synthetic claims (target: under a minute on 2 cores).

Prints the median of a few runs; not a test, since the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import statistics
import time

from training.generate import generate_claims


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--claims", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    times = []
    for seed in range(args.repeats):
        start = time.perf_counter()
        frame = generate_claims(args.claims, seed=seed)
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    print(f"generate {len(frame):,} claims: median {median:.1f} s over {args.repeats} runs "
          f"({len(frame) / median:,.0f} claims/s; runs: {', '.join(f'{t:.1f}' for t in times)})")


if __name__ == "__main__":
    main()
