"""`claimtriage profile`: give a registered version a reference profile from a claims file, for
versions trained before profiles were kept (training keeps one with every new version)."""

from __future__ import annotations

import argparse

NAME = "profile"


def add_parser(sub) -> None:
    cmd = sub.add_parser(NAME, help="build and keep a version's reference profile (for drift) from a claims file")
    cmd.add_argument("--version", required=True, help="the registered version to profile")
    cmd.add_argument("--data", required=True,
                     help="claims file (.parquet or .csv): the version's training file, whose test period "
                          "is profiled as training does, or with --whole-file claims it never saw")
    cmd.add_argument("--mapping", help="dataset mapping (YAML), as for train")
    cmd.add_argument("--whole-file", action="store_true",
                     help="profile every claim in the file (claims the version was not trained on)")


def run(args: argparse.Namespace, config) -> int:
    from mlflow import MlflowClient

    from models.pyfunc import load_bundle
    from monitoring.profile import PROFILE_DIR, log_profile, model_version, profile_claims
    from training import registry

    client: MlflowClient = registry.configure(config)
    name = config.registry.model_name
    found = model_version(client, args.version, name)
    bundle = load_bundle(f"models:/{name}/{found.version}")
    claims, n_invalid = _valid_claims(args, bundle)
    reference, words = _reference(claims, config, args.whole_file)
    about = {"run_id": found.run_id, "reference": f"{words} of {args.data}"}
    profile = profile_claims(bundle, reference, about, history=claims, seed=config.training.seed)
    replaced = bool(client.list_artifacts(found.run_id, PROFILE_DIR))
    log_profile(client, found.run_id, profile)
    print(f"{name} version {found.version}: reference profile of {len(reference):,} claims ({words}) kept with "
          f"run {found.run_id}" + (", replacing the one it had" if replaced else "")
          + (f"; {n_invalid:,} invalid claims left out" if n_invalid else ""))
    return 0


def _valid_claims(args, bundle):
    """The file's claims, read as the version reads them (through the mapping when given), and how
    many were invalid (reported, never profiled)."""
    from features.validation import validate_claims
    from training.data import read_claims

    if args.mapping:
        from cli.main import mapped

        frame = mapped(args)[1]
    else:
        frame = read_claims(args.data)
    # The fraud label, where the file has it, is read as training reads it: a file without dates is
    # split stratified on it, as training split it.
    labels = ("is_fraud",) if "is_fraud" in frame.columns else ()
    report = validate_claims(frame, fields=bundle.claim_fields, labels=labels)
    if report.n_invalid == report.n_rows:
        raise ValueError(f"{args.data}: no valid claims to profile:\n{report.summary()}")
    return report.claims, report.n_invalid


def _reference(claims, config, whole_file: bool):
    """The claims to profile: by default the test period of the split training makes."""
    if whole_file:
        return claims, "every valid claim"
    from training.data import split_claims

    cfg = config.training
    if "is_fraud" not in claims.columns:
        claims = claims.assign(is_fraud=False)  # a file without dates is split stratified on it
    split = split_claims(claims, cfg.validation_share, cfg.test_share, cfg.seed)
    return claims.loc[split.test], "test period"
