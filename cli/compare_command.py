"""`claimtriage compare`: the shadow challenger against the champion on the live claims both scored:
agreement of decisions (a confusion matrix), the decision-mix difference, and quality of both on the
claims whose outcome is recorded. Exit 0, with a message, when the challenger has no shadow rows yet."""

from __future__ import annotations

import argparse
import json

NAME = "compare"


def add_parser(sub) -> None:
    compare = sub.add_parser(NAME, help="the shadow challenger against the champion on live claims: agreement, "
                                        "decision mix, quality on labelled claims")
    compare.add_argument("--since", help="only claims scored from this day (YYYY-MM-DD) or moment (ISO, UTC) on")
    compare.add_argument("--version", help="the challenger's version (default: the one the challenger alias names)")
    compare.add_argument("--json", action="store_true", help="print the figures as JSON")


def run(args: argparse.Namespace, config) -> int:
    from cli.monitor_command import moment
    from monitoring.compare import summary

    since = None if args.since is None else moment(args.since, "--since", whole_day=False)
    version = challenger_version(args.version, config)
    comparison = live_comparison_of(version, config, since)
    if comparison is None:
        return 0
    print(json.dumps(comparison, indent=2) if args.json else summary(comparison))
    return 0


def challenger_version(requested: str | None, config) -> str:
    """The version to compare: the one asked for, else the challenger alias's; errors name what exists."""
    from mlflow.exceptions import MlflowException

    from training import registry

    client = registry.configure(config)
    if requested is not None:
        return str(registry.registered_version(client, config, requested).version)
    name, alias = config.registry.model_name, config.registry.challenger_alias
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        raise ValueError(f"{name} has no {alias!r} alias ({registry.what_is_registered(client, config)}): give "
                         "--version, or make one with `claimtriage retrain`") from None


def live_comparison_of(version: str, config, since=None) -> dict | None:
    """The live comparison of challenger `version` with the champion, or None (said) without shadow rows."""
    from monitoring.compare import live_comparison
    from serving.compare_reads import shadow_pairs, shadowed_versions
    from serving.store import ClaimStore

    store = ClaimStore(config.database_url)
    try:
        pairs = shadow_pairs(store, version, since)
        if pairs.empty:
            others = [v for v in shadowed_versions(store) if v != version]
            print(f"no shadow decisions of version {version}{'' if since is None else f' since {since:%Y-%m-%d %H:%M}'}"
                  f" in {config.database_url} yet: the service scores the version the challenger alias names in the "
                  "champion's shadow from its next start"
                  + (f" (versions with shadow decisions: {', '.join(others)})" if others else ""))
            return None
    finally:
        store.engine.dispose()
    settings = config.monitoring
    return live_comparison(pairs, settings.min_labels, settings.confidence_z, settings.reliability_bins)


def print_live(version: str, config) -> None:
    """The live comparison of `version` as text, for `retrain` and `promote --live`; or why there is none."""
    from monitoring.compare import summary

    live = live_comparison_of(version, config)
    if live is not None:
        print("live, in the champion's shadow:\n" + summary(live))
