"""`claimtriage retrain`: train the next challenger on the training data plus the outcomes recorded
since (`claimtriage export-labels`; their labels are newer and win), register it, point the
challenger alias at it (never the champion), and print how it compares: offline, the promotion
gate's comparison; live, once the service has scored it in the champion's shadow."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

NAME = "retrain"


def add_parser(sub) -> None:
    retrain = sub.add_parser(NAME, help="train on the training data plus exported outcomes and make the new "
                                        "version the challenger (never the champion)")
    retrain.add_argument("--data", required=True, help="the training claims (.parquet or .csv) with labels")
    retrain.add_argument("--outcomes", help="claims with outcomes from `claimtriage export-labels`; their labels win "
                                            "over the training file's")
    retrain.add_argument("--mapping", help="dataset mapping (YAML) from --data's columns to the claim record")


def run(args: argparse.Namespace, config) -> int:
    import pandas as pd
    from tqdm import tqdm

    from cli.compare_command import print_live
    from cli.main import TRAINING_STAGES, mapped, print_result
    from training.data import read_claims
    from training.fit import Extras
    from training.from_mapping import carried_mapping, mapping_extras, with_training_overrides
    from training.retrain import retrain

    extras, partial, carried, notes = Extras(), False, None, []
    if args.mapping:
        mapping, frame, raw, notes = mapped(args)
        extras, partial = mapping_extras(mapping), True
        carried = carried_mapping(args.mapping, mapping, raw)
        config = with_training_overrides(config, mapping.training, args.mapping)
    else:
        frame = read_claims(args.data)
    outcomes = read_claims(args.outcomes) if args.outcomes else pd.DataFrame(columns=["claim_id", "is_fraud"])
    source = str(Path(args.data).resolve()) + (f" + outcomes {Path(args.outcomes).resolve()}" if args.outcomes else "")
    with tqdm(total=len(TRAINING_STAGES), desc="retrain", unit="step", file=sys.stderr) as bar:
        def progress(stage: str) -> None:
            bar.set_postfix_str(stage)
            bar.n = TRAINING_STAGES.index(stage) + 1 if stage in TRAINING_STAGES else bar.n
            bar.refresh()

        done = retrain(frame, outcomes, config, source, progress, extras=extras, partial=partial, mapping=carried,
                       source_notes=notes)
        bar.n = bar.total
    print_result(done.result, config)
    version = done.result.version
    print(f"{config.registry.challenger_alias} -> version {version} ({config.registry.champion_alias} unchanged)")
    print(done.offline_summary(config.registry.champion_alias))
    print_live(version, config)
    return 0
