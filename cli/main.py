"""`claimtriage`: the command line for data scientists and operators.

It sits above training/ and serving/ (the only package that imports both): each command imports
what it runs when it runs."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings
from pathlib import Path

from tqdm import tqdm

from cli import (compare_command, monitor_command, profile_command, retrain_command, score_bulk_command,
                 send_command)
from models.config import ConfigError, load_config
from training.from_mapping import carried_mapping, mapping_extras, with_training_overrides

TRAINING_STAGES = ("validation", "cross-validation", "features", "fraud model", "eligibility model", "anomaly detector",
                   "decision policy", "evaluation", "registry")
HEADLINE_METRICS = ("test_fraud_roc_auc", "oracle_fraud_roc_auc", "test_fraud_pr_auc", "oracle_fraud_pr_auc",
                    "test_approval_roc_auc", "oracle_approval_roc_auc", "test_fraud_brier",
                    "test_auto_approve_rate", "test_auto_approve_precision", "test_siu_fraud_recall",
                    "test_anomaly_recall")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="claimtriage", description=__doc__)
    parser.add_argument("--config", help="configuration file (default: claimtriage.toml or $CLAIMTRIAGE_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="write synthetic claims with labels and ground truth")
    gen.add_argument("--claims", type=int, default=200_000, help="number of claims (default 200000)")
    gen.add_argument("--seed", type=int, default=0)
    target = gen.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", help="output file, .parquet or .csv")
    target.add_argument("--extract", metavar="DIR",
                        help="write the claims as another insurer's extract (CSV) with the mapping that reads it")
    gen.add_argument("--lacking", default="claimant_id,report_date,claim_amount",
                     help="with --extract: canonical fields the extract does not have (comma-separated; "
                          "default claimant_id,report_date,claim_amount; '' for none)")
    gen.add_argument("--scenario", default="", metavar="NAME[:KEY=VALUE...][,...]",
                     help="drift to apply (README, Monitoring): later:days=365, inflation:factor=1.3:loss_types=a+b, "
                          "fraud:odds=3, ring:claims=40:members=10; with --next-month, to that month only")
    gen.add_argument("--next-month", metavar="PATH",
                     help="with --out: also write the month reported after the book (same policies and people), "
                          "shifted by --scenario; --claims counts both")

    train = sub.add_parser("train", help="train, evaluate and register a new model version")
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="claims file (.parquet or .csv) with is_fraud and paid_as_filed labels")
    source.add_argument("--synthetic", type=int, metavar="N", help="train on N freshly generated claims")
    train.add_argument("--mapping", help="dataset mapping (YAML) from the extract's columns to the claim record")
    train.add_argument("--seed", type=int, default=0, help="seed for --synthetic")
    train.add_argument("--no-promote", action="store_true",
                       help="do not make this version champion even when there is none yet")
    train.add_argument("--engine", choices=("local", "spark"), default="local",
                       help="spark: validate and count history features of --data (a file, a directory of "
                            "part files or a table) on Apache Spark; the fit stays on this machine")
    train.add_argument("--master", default=None, help="Spark master URL (default: what spark-submit set, else local[*])")
    train.add_argument("--sample-claims", type=int, default=None, metavar="N",
                       help="with --engine spark: fit on a stratified sample of N claims when the book has more "
                            "(default 2,000,000)")

    val = sub.add_parser("validate", help="check a claims file against the canonical schema")
    val.add_argument("--data", required=True)
    val.add_argument("--mapping", help="dataset mapping (YAML), as for train")
    val.add_argument("--json", action="store_true", help="print the machine-readable report")

    serve = sub.add_parser("serve", help="serve the champion over HTTP (BentoML); trains one first if there is none")
    serve.add_argument("--host", help="address to listen on (default from claimtriage.toml: 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default from claimtriage.toml: 3000)")
    serve.add_argument("--model", help="model URI to serve instead, e.g. models:/claim-triage/3 or "
                                       "models:/claim-triage@challenger")

    promote = sub.add_parser("promote", help="make a registered version the champion if it is not worse")
    promote.add_argument("version")
    promote.add_argument("--force", action="store_true", help="promote even if worse (recorded as a tag)")
    promote.add_argument("--reason", default="", help="why, recorded with --force")
    promote.add_argument("--live", action="store_true", help="first print the version's live comparison with the "
                                                             "champion in its shadow (`claimtriage compare`)")
    export = sub.add_parser("export-labels",
                            help="write every claim with a recorded outcome, as stored, with its training labels")
    export.add_argument("--out", required=True, help="output file, .parquet or .csv; train on it with --data")
    keys = sub.add_parser("keys", help="API keys for the claims system (scoring, feedback, the queue API)")
    keys_sub = keys.add_subparsers(dest="action", required=True)
    keys_sub.add_parser("create", help="create a key; its text is printed once").add_argument("name")
    keys_sub.add_parser("revoke", help="revoke a key by name").add_argument("name")
    keys_sub.add_parser("list", help="list keys (names and dates; the keys themselves are not kept)")
    adjusters = sub.add_parser("adjusters", help="adjusters' logins for the review page")
    adj_sub = adjusters.add_subparsers(dest="action", required=True)
    add = adj_sub.add_parser("add", help="add an adjuster (or reset a password); prints a generated password")
    add.add_argument("username")
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    adj_sub.add_parser("remove", help="disable an adjuster and end their sessions").add_argument("username")
    adj_sub.add_parser("list", help="list adjusters")

    ledger = sub.add_parser("ledger", help="the tamper-evident decision ledger")
    ledger_sub = ledger.add_subparsers(dest="action", required=True)
    verify = ledger_sub.add_parser("verify", help="walk the hash chain and check every decision, outcome, case and "
                                                  "scored claim against it")
    verify.add_argument("--anchor", action="append", default=[], metavar="SEQ:HASH",
                        help="a (seq, hash) kept outside the database, from `ledger head`; repeatable")
    ledger_sub.add_parser("head", help="print the last entry's SEQ:HASH, to keep outside the database")
    for module in COMMAND_MODULES:
        module.add_parser(sub)
    return parser


def quiet_mlflow() -> None:
    """Keep MLflow's advice for other kinds of project out of our users' terminals."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    for message in ("Add type hints to the `predict` method", "The specified dataset source",
                    "Hint: Inferred schema contains integer"):
        warnings.filterwarnings("ignore", message=f".*{message}")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("mlflow.utils.environment").setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    quiet_mlflow()
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config)
        run = COMMANDS.get(args.command) or next(m.run for m in COMMAND_MODULES if m.NAME == args.command)
        return run(args, config)
    except (ConfigError, ValueError, RuntimeError, FileNotFoundError) as err:  # AccessError is a ValueError
        print(f"claimtriage {args.command}: {err}", file=sys.stderr)
        return 2


def _generate(args, config) -> int:
    from training.generate import write_claims
    from training.scenarios import generate_with_scenarios, parse_scenarios

    if args.extract and (args.scenario or args.next_month):
        raise ValueError("--scenario and --next-month apply to --out, not to --extract")
    if args.extract:
        from training.extracts import write_extract

        lacking = tuple(name.strip() for name in args.lacking.split(",") if name.strip())
        data, mapping = write_extract(args.extract, args.claims, args.seed, lacking)
        print(f"wrote {args.claims:,} generated claims as another insurer's extract, lacking "
              f"{', '.join(lacking) or 'nothing'}:\n  {data}\n  {mapping}\n"
              f"train on it with: claimtriage train --data {data} --mapping {mapping}")
        return 0

    started = time.perf_counter()
    with tqdm(total=2, desc="generate", unit="step", file=sys.stderr) as bar:
        frame, month = generate_with_scenarios(args.claims, args.seed, parse_scenarios(args.scenario),
                                               next_month=bool(args.next_month))
        bar.update()
        write_claims(frame, args.out)
        if month is not None:
            write_claims(month, args.next_month)
            print(f"wrote {len(month):,} claims of the next month to {args.next_month} "
                  f"(fraud {month['is_fraud'].mean():.2%})")
        bar.update()
    print(f"wrote {len(frame):,} claims to {args.out} in {time.perf_counter() - started:.1f} s "
          f"(fraud {frame['is_fraud'].mean():.2%}, paid as filed {frame['paid_as_filed'].mean():.2%})")
    return 0


def _train(args, config) -> int:
    from training.data import read_claims
    from training.fit import Extras
    from training.train import run_training

    extras, partial, carried, mapping_notes, engine = Extras(), False, None, [], None
    if args.engine == "spark" and (args.mapping or args.synthetic is not None):
        raise ValueError("--engine spark reads --data in the canonical claim record (--mapping and --synthetic "
                         "are for the local engine)")
    if args.engine != "spark" and (args.master or args.sample_claims):
        raise ValueError("--master and --sample-claims apply to --engine spark")
    if args.synthetic is not None:
        from training.generate import generate_claims

        if args.mapping:
            raise ValueError("--mapping applies to --data, not to --synthetic")
        print(f"generating {args.synthetic:,} synthetic claims (seed {args.seed})")
        frame, source = generate_claims(args.synthetic, seed=args.seed), f"synthetic:{args.synthetic}:seed{args.seed}"
    elif args.mapping:
        mapping, frame, raw, mapping_notes = mapped(args)
        extras, partial = mapping_extras(mapping), True
        carried = carried_mapping(args.mapping, mapping, raw)
        config = with_training_overrides(config, mapping.training, args.mapping)
        source = f"{Path(args.data).resolve()} via {Path(args.mapping).resolve()}"
    elif args.engine == "spark":
        from bulk.spark_training import DEFAULT_SAMPLE_CLAIMS, training_frame

        frame, engine = training_frame(args.data, config.training.graph, args.sample_claims or DEFAULT_SAMPLE_CLAIMS,
                                       config.training.seed, args.master)
        source = args.data if "://" in args.data or not Path(args.data).exists() else str(Path(args.data).resolve())
        print(f"spark: {engine['book_valid_claims']:,} valid claims of {engine['book_rows']:,} rows; fitting on "
              f"{engine['sample_claims']:,} ({engine['sample_share']:.2%}, stratified by is_fraud)")
    else:
        frame, source = read_claims(args.data), str(Path(args.data).resolve())
    with tqdm(total=len(TRAINING_STAGES), desc="train", unit="step", file=sys.stderr) as bar:
        def progress(stage: str) -> None:
            bar.set_postfix_str(stage)
            bar.n = TRAINING_STAGES.index(stage) + 1 if stage in TRAINING_STAGES else bar.n
            bar.refresh()

        result = run_training(frame, config, source, progress, promote=not args.no_promote, extras=extras,
                              partial=partial, mapping=carried, source_notes=mapping_notes, engine=engine)
        bar.n = bar.total
    print_result(result, config)
    return 0


def mapped(args):
    """The extract through its mapping; mapping errors stop here, before any training."""
    from features.mapping import apply_mapping, load_mapping, read_source

    mapping = load_mapping(args.mapping)
    raw = read_source(args.data, mapping)
    notes: list[str] = []  # what the mapping changed on purpose (values set missing, dates moved a year)
    return mapping, apply_mapping(raw, mapping, notes), raw, notes


def print_result(result, config) -> None:
    for note in result.notes:
        print(f"note: {note}")
    if result.n_invalid:
        print(f"{result.n_invalid} invalid claims were left out (see validation/report.txt in the run)")
    print(f"run {result.run_id}: registered {config.registry.model_name} version {result.version}")
    for key in HEADLINE_METRICS:
        if key in result.metrics:
            print(f"  {key:32s} {result.metrics[key]:.4f}")
    cv = sorted(k[: -len("_mean")] for k in result.metrics if k.startswith("cv_") and k.endswith("_mean"))
    if cv:
        print("cross-validated (mean ± standard deviation over folds):")
        for key in cv:
            print(f"  {key:32s} {result.metrics[key + '_mean']:.4f} ± {result.metrics[key + '_std']:.4f}")
    if result.promotion:
        print(result.promotion.summary())
    else:
        print(f"not promoted: run `claimtriage promote {result.version}` to challenge the champion")


def _validate(args, config) -> int:
    from features.schema import CLAIM_FIELDS, LABEL_FIELDS
    from features.validation import validate_claims
    from training.data import read_claims

    if args.mapping:
        _, frame, _, notes = mapped(args)
        for note in notes:
            print(f"note: {note}")
        # Labels are checked as training checks them: is_fraud always, paid_as_filed where mapped.
        labels = tuple(name for name in LABEL_FIELDS if name == "is_fraud" or name in frame.columns)
        report = validate_claims(frame, fields=[f for f in CLAIM_FIELDS if f.name in frame.columns], labels=labels)
    else:
        report = validate_claims(read_claims(args.data))
    print(report.to_json() if args.json else report.summary())
    return 0 if report.ok else 1


def _promote(args, config) -> int:
    from training.registry import promote

    if args.live:
        from cli.compare_command import print_live

        print_live(args.version, config)
    print(promote(args.version, config, force=args.force, reason=args.reason).summary())
    return 0


def _serve(args, config) -> int:
    """Start BentoML on the registered model; on an empty registry, train a champion first."""
    from training import registry

    client = registry.configure(config)
    if args.model is None and registry.champion_version(client, config) is None:
        n = config.serving.synthetic_claims_if_no_champion
        print(f"no champion in the registry at {config.tracking_uri}: training one on {n:,} generated "
              f"synthetic claims first")
        # Parsed as the command line would be, so every option of `train` has its default.
        _train(_parser().parse_args(["train", "--synthetic", str(n)]), config)
    from serving.loading import StartupError, check_startup
    from serving.store import ClaimStore

    try:
        serving = check_startup(config, args.model)
    except StartupError as err:
        print(f"claimtriage serve: cannot start: {err}", file=sys.stderr)
        return 2
    store = ClaimStore(config.database_url)
    first = store.access.bootstrap(store.engine)
    if first is not None:
        key, username, password = first
        print("first start: credentials created, shown once (manage them with `claimtriage keys` and "
              f"`claimtriage adjusters`):\n  API key (Authorization: Bearer ...): {key}\n"
              f"  adjusters' page login: {username} / {password}", flush=True)
    store.engine.dispose()
    host, port = args.host or config.serving.host, args.port or config.serving.port
    env = dict(os.environ, MLFLOW_TRACKING_URI=config.tracking_uri, CLAIMTRIAGE_HOME=str(config.home),
               CLAIMTRIAGE_DATABASE_URL=config.database_url)
    if args.model:
        env["CLAIMTRIAGE_MODEL_URI"] = args.model
    root = Path(__file__).resolve().parent.parent  # the project: serving/ is found from here
    command = [sys.executable, "-m", "bentoml", "serve", "serving.service:ClaimTriage", "--host", host,
               "--port", str(port), "--working-dir", str(root)]
    print(f"serving {serving} on http://{host}:{port} (API docs at /docs; claim store {config.database_url})",
          flush=True)
    os.execvpe(command[0], command, env)
    return 0  # not reached: the server replaces this process


def _export_labels(args, config) -> int:
    """Outcomes adjusters and the claims system recorded, joined to the stored claims, as training data."""
    from serving.store import ClaimStore
    from training.generate import write_claims

    frame = ClaimStore(config.database_url).labelled_claims()
    if frame.empty:
        print(f"no outcomes recorded yet in {config.database_url}; nothing written", file=sys.stderr)
        return 1
    write_claims(frame, args.out)
    unknown = int(frame["paid_as_filed"].isna().sum())
    print(f"wrote {len(frame):,} claim{'' if len(frame) == 1 else 's'} with outcomes to {args.out}: "
          f"{int(frame['is_fraud'].sum()):,} confirmed fraud"
          + (f"; {unknown:,} 'not fraud' outcomes say nothing of payment, so their paid_as_filed is empty and "
             "training reports and skips them" if unknown else ""))
    return 0


def _keys(args, config) -> int:
    from serving.store import ClaimStore

    store = ClaimStore(config.database_url)
    if args.action == "create":
        key = store.access.create_key(store.engine, args.name)
        print(f"API key {args.name!r} (shown once; send it as 'Authorization: Bearer KEY'):\n{key}")
    elif args.action == "revoke":
        store.access.revoke_key(store.engine, args.name)
        print(f"revoked {args.name!r}; running services stop accepting it within 30 s")
    else:
        for k in store.access.list_keys(store.engine):
            print(f"{k['name']:24s} created {k['created_at']:%Y-%m-%d %H:%M}"
                  + (f"  revoked {k['revoked_at']:%Y-%m-%d %H:%M}" if k["revoked_at"] else "  active"))
    return 0


def _adjusters(args, config) -> int:
    from serving.store import ClaimStore

    store = ClaimStore(config.database_url)
    if args.action == "add":
        given = sys.stdin.readline().rstrip("\n") if args.password_stdin else None
        password = store.access.add_adjuster(store.engine, args.username, given)
        print(f"adjuster {args.username!r} can log in at /login" + ("" if given else f" with password: {password}"))
    elif args.action == "remove":
        store.access.remove_adjuster(store.engine, args.username)
        print(f"adjuster {args.username!r} disabled; their sessions are ended")
    else:
        for a in store.access.list_adjusters(store.engine):
            print(f"{a['username']:24s} " + ("disabled" if a["revoked_at"] else "active"))
    return 0


def _ledger(args, config) -> int:
    from serving.store import ClaimStore

    store = ClaimStore(config.database_url)
    if args.action == "head":
        head = store.ledger_head()
        print("the ledger is empty" if head is None else f"{head[0]}:{head[1]}")
        return 0
    anchors = []
    for text in args.anchor:
        seq, _, digest = text.partition(":")
        if not seq.isdigit() or len(digest) != 64:
            raise ValueError(f"--anchor {text!r}: expected SEQ:HASH as printed by `claimtriage ledger head`")
        anchors.append((int(seq), digest))
    report = store.verify_ledger(anchors)
    print(report.summary())
    return 0 if report.ok else 1


COMMANDS = {"adjusters": _adjusters, "export-labels": _export_labels, "keys": _keys, "ledger": _ledger,
            "generate": _generate, "train": _train, "validate": _validate, "promote": _promote, "serve": _serve}
# Commands with a module of their own: each has NAME, add_parser(subparsers) and run(args, config) -> exit code.
COMMAND_MODULES: tuple = (profile_command, monitor_command, retrain_command, compare_command, send_command,
                          score_bulk_command)

if __name__ == "__main__":
    sys.exit(main())
