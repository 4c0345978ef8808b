"""`claimtriage score-bulk`: a whole book of claims scored by a registered version, in one process
(`--engine local`, pandas) or on Apache Spark (`--engine spark`, local mode or any cluster).

Every row is validated; invalid rows go to the output's `rejected/` with their reasons, valid ones
to `scores/` with decision, scores, rule hits and (with --explain) the top reasons. Each claim's
history features count the input's claims reported strictly before it: the input is its own history.
"""

from __future__ import annotations

import argparse
import sys
import time

NAME = "score-bulk"
ENGINES = ("local", "spark")


def add_parser(sub) -> None:
    cmd = sub.add_parser(NAME, help="score a whole book of claims (a file, a directory of part files or, on "
                                    "Spark, a table) with a registered version; invalid rows are set aside "
                                    "with their reasons")
    cmd.add_argument("--data", help="claims: a .parquet or .csv file, a directory of part files, or (Spark only) "
                                    "a table name")
    cmd.add_argument("--out", help="output directory: scores/, rejected/ and summary.json (written whole or not at all)")
    cmd.add_argument("--model", default=None, help="model URI (default models:/NAME@champion from claimtriage.toml)")
    cmd.add_argument("--explain", action="store_true", help="also write each model's top reasons per claim (slower)")
    cmd.add_argument("--engine", choices=ENGINES, default="local",
                     help="local: pandas in this process; spark: Apache Spark (pip install 'claimtriage[spark]')")
    cmd.add_argument("--master", default=None,
                     help="Spark master URL (default: what spark-submit set, else local[*]); Spark engine only")
    cmd.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    cmd.add_argument("--compare", nargs=2, metavar=("OUT1", "OUT2"),
                     help="instead of scoring: whether two outputs hold the same scores, problems and summary "
                          "(exit 1 when they differ)")


def run(args: argparse.Namespace, config) -> int:
    from bulk.io import check_destination, input_files
    from bulk.model import load_model

    if args.compare:
        from bulk.io import compare_outputs

        differences = compare_outputs(*args.compare)
        print("\n".join(differences) if differences else f"identical: {args.compare[0]} and {args.compare[1]}")
        return 1 if differences else 0
    if not args.data or not args.out:
        raise ValueError("--data and --out are required (or --compare OUT1 OUT2)")
    if args.master and args.engine != "spark":
        raise ValueError("--master applies to --engine spark")
    check_destination(args.out, args.overwrite)
    if args.engine == "spark":
        from bulk.spark_session import spark_problem

        problem = spark_problem()
        if problem:
            raise RuntimeError(problem)
    inputs = input_files(args.data) if args.engine == "local" else args.data
    bundle, about = load_model(config, args.model)
    started = time.perf_counter()
    if args.engine == "local":
        from bulk.local import score_local

        summary = score_local(inputs, args.out, bundle, about, args.explain, args.overwrite, _progress())
    else:
        from bulk.spark_engine import score_spark

        summary = score_spark(inputs, args.out, bundle, about, args.explain, args.overwrite, args.master,
                              _progress())
    seconds = time.perf_counter() - started
    print(f"{summary['claims_scored']:,} claims scored by {summary['model']} (version {summary['model_version']}) "
          f"on the {args.engine} engine in {seconds:.1f} s ({summary['claims_read'] / max(seconds, 1e-9):,.0f} "
          f"claims a second), written to {args.out}")
    print("decisions: " + ", ".join(f"{k} {v:,}" for k, v in summary["decisions"].items()))
    if summary["rows_rejected"]:
        print(f"{summary['rows_rejected']:,} rows rejected ({summary['problems']:,} problems): see "
              f"{args.out}/rejected")
    if summary["columns_not_read"]:
        print("columns not read: " + ", ".join(summary["columns_not_read"]))
    return 0


def _progress():
    """Stage changes and scoring progress on stderr, at most every few seconds."""
    last = {"stage": None, "at": 0.0}

    def tell(stage: str, done: int, total: int) -> None:
        now = time.perf_counter()
        if stage == last["stage"] and now - last["at"] < 5 and done < total:
            return
        last.update(stage=stage, at=now)
        counted = f": {done:,} of {total:,}" if total else ""
        print(f"score-bulk: {stage}{counted}", file=sys.stderr, flush=True)

    return tell
