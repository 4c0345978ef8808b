"""Benchmark: `claimtriage score-bulk` on a whole generated book, the local engine against Spark.

For each book size (default 1M and 10M generated claims), each engine (local: pandas in one process;
spark: `--master local[2]`) and each setting of `--explain`, one run of the installed CLI as a
subprocess, so that each run is measured alone, start-up (imports, model, JVM) included:

- The book: `training.generate.generate_claims` in chunks of 500,000 claims, chunk k with seed k (its
  own claimants, policies, providers and accounts) and claim ids prefixed with the chunk's number to
  stay unique; one 10M frame at once would need tens of GB. Each chunk is one Parquet part file,
  without the ground truth a claims system does not have (labels, ring ids, the generator's
  probabilities), kept under `--work` between runs.
- The model: trained once on 50,000 generated claims (seed 99) in its own home and MLflow registry
  under `--work`, and reused by later runs.
- Wall time and claims a second; the peak of the resident memory of the whole process tree (the
  CLI, Spark's JVM and its Python workers), sampled every 0.5 s. Forked workers share pages with
  their parent, so the sum over-counts Spark's memory somewhat.
- CPU time of the tree (user + system): the larger of what the kernel reports for the CLI and the
  descendants it reaped, and the sum of each process's last sample (a JVM the CLI does not wait for
  escapes the first; the second misses the last half second). CPU seconds per million claims, and
  claims a second per busy core, are what a cluster extrapolation starts from.
- Stage timings from the CLI's progress lines on stderr.
- Identity: the local and Spark outputs for the same book and setting compared with
  `bulk.io.compare_outputs` (scores and rejected rows exactly; summaries except the engine), then deleted.

Results go to `--work`/results-N.json. The machine may be shared: timings are noisy.

Usage: `python benchmarks/bench_bulk.py [--claims 1000000 10000000] [--explain both|no|yes]
[--engines local spark] [--keep]`. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bulk.io import compare_outputs  # noqa: E402
from training.generate import generate_claims  # noqa: E402

CLI = ROOT / ".venv" / "bin" / "claimtriage"
CHUNK = 500_000
TRAINING_CLAIMS, TRAINING_SEED = 50_000, 99
SPARK_MASTER = "local[2]"
SAMPLE_EVERY = 0.5  # seconds between samples of the process tree
ORPHANS_WATCHED = 60  # seconds the tree is still watched after the CLI exits
GROUND_TRUTH = ("is_fraud", "paid_as_filed", "is_injected_anomaly", "ring_id")
STAGE = re.compile(r"^score-bulk: ([^:]+)")


def book(work: Path, claims: int) -> Path:
    """The book of `claims` generated claims as Parquet part files, made once and kept."""
    folder = work / f"book-{claims}"
    folder.mkdir(parents=True, exist_ok=True)
    for k, start in enumerate(range(0, claims, CHUNK)):
        path = folder / f"part-{k:05d}.parquet"
        if path.exists():
            continue
        started = time.perf_counter()
        frame = generate_claims(min(CHUNK, claims - start), seed=k)
        frame = frame.drop(columns=[c for c in frame.columns if c in GROUND_TRUTH or c.startswith("true_")])
        frame["claim_id"] = f"C{k:03d}-" + frame["claim_id"].str.slice(1)
        partial = path.with_name(f".{path.name}.partial")  # a stopped run leaves no half part file
        frame.to_parquet(partial, index=False)
        os.replace(partial, path)
        print(f"book-{claims}: part {k} ({len(frame):,} claims) generated in {time.perf_counter() - started:.0f} s",
              flush=True)
    return folder


def model_home(work: Path) -> dict[str, str]:
    """A home whose champion is trained on 50,000 generated claims: the environment that selects it."""
    home = work / "home"
    home.mkdir(parents=True, exist_ok=True)
    env = {key: value for key, value in os.environ.items() if key not in ("CLAIMTRIAGE_CONFIG", "CLAIMTRIAGE_DATABASE_URL")}
    env.update(CLAIMTRIAGE_HOME=str(home), MLFLOW_TRACKING_URI=f"sqlite:///{home / 'mlflow.db'}",
               MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false")
    if not _champion(env["MLFLOW_TRACKING_URI"]):
        # Cross-validation is for choosing settings; a benchmark's model needs to score, not to be tuned.
        (home / "claimtriage.toml").write_text("[training]\ncv_below_rows = 0\n")
        started = time.perf_counter()
        subprocess.run([str(CLI), "train", "--synthetic", str(TRAINING_CLAIMS), "--seed", str(TRAINING_SEED)],
                       env=env, cwd=home, check=True, stdout=subprocess.DEVNULL)
        print(f"model trained on {TRAINING_CLAIMS:,} claims in {time.perf_counter() - started:.0f} s", flush=True)
    return env


def _champion(uri: str) -> bool:
    """Whether the registry at `uri` has a registered model with a champion."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    return any("champion" in (m.aliases or {}) for m in client.search_registered_models())


class TreeWatch:
    """Peak resident memory and CPU time of a process and all its descendants, sampled in a thread."""

    def __init__(self, pid: int):
        self.root = psutil.Process(pid)
        self.cpu: dict[int, float] = {}   # pid -> user + system seconds at its last sample
        self.peak_rss = 0
        self.seen: dict[int, psutil.Process] = {}
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeWatch:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join()

    def _run(self) -> None:
        while not self.done.is_set():
            self._sample()
            time.sleep(SAMPLE_EVERY)
        # After the CLI exits, its orphans (a JVM still shutting down) are watched until they end too.
        until = time.perf_counter() + ORPHANS_WATCHED
        while self._sample() and time.perf_counter() < until:
            time.sleep(SAMPLE_EVERY)

    def _sample(self) -> int:
        try:
            for child in [self.root, *self.root.children(recursive=True)]:
                self.seen.setdefault(child.pid, child)
        except psutil.NoSuchProcess:
            pass
        rss, alive = 0, 0
        for pid, process in list(self.seen.items()):
            try:
                with process.oneshot():
                    if process.status() == psutil.STATUS_ZOMBIE:
                        continue
                    rss += process.memory_info().rss
                    times = process.cpu_times()
                    self.cpu[pid] = times.user + times.system
                alive += 1
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        self.peak_rss = max(self.peak_rss, rss)
        return alive


def run_cli(engine: str, explain: bool, data: Path, out: Path, env: dict[str, str]) -> dict:
    """One `claimtriage score-bulk` run as a subprocess, measured: see the module's docstring."""
    command = [str(CLI), "score-bulk", "--data", str(data), "--out", str(out), "--engine", engine,
               *(["--master", SPARK_MASTER] if engine == "spark" else []), *(["--explain"] if explain else [])]
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=env["CLAIMTRIAGE_HOME"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    lines: list[tuple[float, str]] = []
    reader = threading.Thread(target=lambda: lines.extend((time.perf_counter() - started, line.rstrip("\n"))
                                                          for line in process.stderr), daemon=True)
    reader.start()
    with TreeWatch(process.pid) as watch:
        stdout = process.stdout.read()
        # wait4, not wait: the kernel's CPU times of the CLI and every descendant it reaped.
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
    reader.join()
    reaped = usage.ru_utime + usage.ru_stime
    sampled = sum(watch.cpu.values())
    found = {"engine": engine, "explain": explain, "returncode": process.returncode, "seconds": seconds,
             "cpu_seconds": max(reaped, sampled), "cpu_reaped_s": reaped, "cpu_sampled_s": sampled,
             "peak_rss_gb": watch.peak_rss / 2 ** 30, "processes": len(watch.seen),
             "stages": stage_seconds(lines, seconds), "stdout": stdout.strip()}
    if process.returncode != 0:
        found["stderr_tail"] = [line for _, line in lines[-30:]]
    return found


def stage_seconds(lines: list[tuple[float, str]], total: float) -> dict[str, float]:
    """Seconds from each stage's first progress line to the next stage's ("start": before the first)."""
    starts = [(0.0, "start")]
    for at, line in lines:
        match = STAGE.match(line)
        # Spark's stage lines ("validate: spark stage 56, tasks: ...") carry their step's name first.
        if match and match.group(1) != starts[-1][1]:
            starts.append((at, match.group(1)))
    ends = [at for at, _ in starts[1:]] + [total]
    return {name: round(end - at, 1) for (at, name), end in zip(starts, ends)}


def identity(local_out: Path, spark_out: Path) -> str:
    """IDENTICAL, or where the two engines' outputs differ (`claimtriage score-bulk --compare`)."""
    return "; ".join(compare_outputs(local_out, spark_out)) or "IDENTICAL"


def measure(work: Path, claims: int, engines: list[str], settings: list[bool], env: dict[str, str],
            keep: bool = False) -> dict:
    """Every engine and setting on the book of `claims` claims; outputs compared, then deleted unless `keep`."""
    data = book(work, claims)
    runs, identities = [], {}
    for explain in settings:
        outs = {}
        for engine in engines:
            out = work / f"out-{claims}-{engine}-{'explain' if explain else 'scores'}"
            shutil.rmtree(out, ignore_errors=True)
            found = run_cli(engine, explain, data, out, env)
            found["claims"] = claims
            if found["returncode"] == 0:
                found["claims_scored"] = json.loads((out / "summary.json").read_text())["claims_scored"]
                outs[engine] = out
            runs.append(found)
            print(row(found) if found["returncode"] == 0 else
                  f"{engine} explain={explain} FAILED ({found['returncode']}):\n  " + "\n  ".join(found["stderr_tail"]),
                  flush=True)
            print(f"  stages (s): {found['stages']}", flush=True)
        if len(outs) == 2:
            identities["explain" if explain else "scores"] = identity(outs["local"], outs["spark"])
            print(f"local vs spark, explain={explain}: {identities['explain' if explain else 'scores']}", flush=True)
        for out in outs.values() if not keep else ():
            shutil.rmtree(out)
    return {"claims": claims, "spark_master": SPARK_MASTER, "cores": os.cpu_count(), "runs": runs,
            "identity": identities}


HEADER = (f"{'engine':6} {'explain':7} {'claims':>10} {'seconds':>8} {'claims/s':>9} {'peak GB':>7} "
          f"{'CPU s':>7} {'cores':>5} {'claims/s/core':>13} {'CPU s per 1M':>12}")


def row(run: dict) -> str:
    cpu = run["cpu_seconds"]
    return (f"{run['engine']:6} {'yes' if run['explain'] else 'no':7} {run['claims']:>10,} {run['seconds']:8.0f} "
            f"{run['claims'] / run['seconds']:9,.0f} {run['peak_rss_gb']:7.2f} {cpu:7.0f} {cpu / run['seconds']:5.2f} "
            f"{run['claims'] / cpu:13,.0f} {cpu / run['claims'] * 1e6:12.0f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--claims", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--explain", choices=("both", "no", "yes"), default="both")
    parser.add_argument("--engines", nargs="+", choices=("local", "spark"), default=["local", "spark"])
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_bulk"))
    parser.add_argument("--keep", action="store_true",
                        help="keep the outputs under --work (to compare runs made apart with score-bulk --compare)")
    args = parser.parse_args()
    settings = {"both": [False, True], "no": [False], "yes": [True]}[args.explain]
    env = model_home(args.work)
    print(f"{os.cpu_count()} cores; spark on {SPARK_MASTER}; each run a fresh `claimtriage score-bulk` process\n"
          + HEADER, flush=True)
    for claims in args.claims:
        found = measure(args.work, claims, args.engines, settings, env, args.keep)
        (args.work / f"results-{claims}.json").write_text(json.dumps(found, indent=2) + "\n")
        print(f"\n{claims:,} claims\n{HEADER}")
        print("\n".join(row(run) for run in found["runs"] if run["returncode"] == 0))
        for setting, verdict in found["identity"].items():
            print(f"local vs spark ({setting}): {verdict}")
        print(flush=True)


if __name__ == "__main__":
    main()
