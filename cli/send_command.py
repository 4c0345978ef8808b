"""`claimtriage send`: a claims file sent to a running service as the claims system would send it.

For trials and walkthroughs (README, "A drifted month, step by step"), load tests and backfills
through the API: every claim is checked against the claim schema first (invalid ones are listed
with their reasons and not sent), the rest go to /score_batch in batches, and the decisions are
counted. Claims the service refuses are listed too; the exit code is 1 when any claim was not
scored, 0 when all were. With `--outcomes SHARE`, that share of the scored claims that carry
labels (a generated book's `is_fraud`, `paid_as_filed`) then get their outcome through /feedback,
as the claims system reports what a claim came to: confirmed fraud, paid as filed, paid adjusted, or
(payment unknown) not fraud.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter

NAME = "send"
KEY_ENV = "CLAIMTRIAGE_API_KEY"


def add_parser(sub) -> None:
    cmd = sub.add_parser(NAME, help="send a claims file to a running service's /score_batch, as the claims system would")
    cmd.add_argument("--data", required=True, help="claims file (.parquet or .csv) in the canonical record")
    cmd.add_argument("--url", default=None, help="the service (default http://HOST:PORT from claimtriage.toml)")
    cmd.add_argument("--key", default=None, help=f"API key (default ${KEY_ENV})")
    cmd.add_argument("--batch", type=int, default=500, help="claims per request (default 500)")
    cmd.add_argument("--explain", action="store_true", help="ask for the reasons too (slower)")
    cmd.add_argument("--outcomes", type=float, default=0.0, metavar="SHARE",
                     help="then report this share (0-1) of the scored claims' outcomes from their labels, "
                          "through /feedback (default 0: none)")


def run(args: argparse.Namespace, config) -> int:
    import httpx

    from features.schema import CLAIM_FIELDS
    from features.validation import validate_claims
    from models.pyfunc import wire_format
    from training.data import read_claims

    key = args.key or os.environ.get(KEY_ENV)
    if not key:
        raise ValueError(f"--key (or ${KEY_ENV}) is needed: an API key from `claimtriage keys create NAME`")
    if not 1 <= args.batch <= config.serving.max_batch_claims:
        raise ValueError(f"--batch must be 1 to {config.serving.max_batch_claims:,} (serving.max_batch_claims)")
    if not 0.0 <= args.outcomes <= 1.0:
        raise ValueError(f"--outcomes is a share of the claims, 0 to 1, not {args.outcomes}")
    url = (args.url or f"http://{config.serving.host}:{config.serving.port}").rstrip("/")
    frame = read_claims(args.data)
    if args.outcomes and "is_fraud" not in frame.columns:
        raise ValueError(f"--outcomes needs labels: {args.data} has no is_fraud column")
    report = validate_claims(frame, labels=("is_fraud",) if args.outcomes else ())
    if report.n_invalid:
        print(f"not sent, invalid: {report.summary()}", file=sys.stderr)
    wire = wire_format(report.claims, fields=CLAIM_FIELDS)
    claims = [{k: v for k, v in record.items() if v is not None}
              for record in wire.astype(object).where(wire.notna(), None).to_dict(orient="records")]
    decisions, refused = Counter(), []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=300) as client:
        for start in range(0, len(claims), args.batch):
            reply = client.post("/score_batch", json={"claims": claims[start:start + args.batch],
                                                      "explain": args.explain})
            if reply.status_code != 200:
                raise RuntimeError(f"{url}/score_batch answered {reply.status_code}: {reply.text[:300]}")
            for result in reply.json()["results"]:
                if "decision" in result:
                    decisions[result["decision"]] += 1
                else:
                    refused.append(result)
        told = _report_outcomes(client, report.claims, refused, args.outcomes) if args.outcomes else 0
    print(f"sent {len(claims):,} claims to {url}: " + ", ".join(f"{n:,} {d}" for d, n in decisions.most_common())
          + (f"; {told:,} outcomes reported" if args.outcomes else ""))
    for result in refused[:20]:
        print(f"  refused {result.get('claim_id')}: {result.get('errors')}", file=sys.stderr)
    if refused:
        print(f"{len(refused):,} claims refused by the service", file=sys.stderr)
    return 1 if refused or report.n_invalid else 0


def outcome_of(is_fraud: bool, paid_as_filed: bool | None) -> str:
    """The outcome the claims system would report for a claim with these labels (payment unknown:
    "not fraud", which says nothing of it)."""
    if is_fraud:
        return "confirmed_fraud"
    if paid_as_filed is None:
        return "not_fraud"
    return "paid_as_filed" if paid_as_filed else "paid_adjusted"


def _report_outcomes(client, claims, refused: list[dict], share: float) -> int:
    """POST /feedback for `share` of the scored claims (a seeded draw), from their labels."""
    not_scored = {r.get("claim_id") for r in refused}
    scored = claims.loc[~claims["claim_id"].isin(not_scored)]
    chosen = scored.sample(frac=share, random_state=0) if share < 1 else scored
    paid = chosen["paid_as_filed"] if "paid_as_filed" in chosen.columns else [None] * len(chosen)
    for claim_id, is_fraud, paid_as_filed in zip(chosen["claim_id"], chosen["is_fraud"], paid):
        reply = client.post("/feedback", json={"claim_id": claim_id,
                                               "outcome": outcome_of(bool(is_fraud), _known(paid_as_filed))})
        if reply.status_code != 201:
            raise RuntimeError(f"/feedback for claim {claim_id} answered {reply.status_code}: {reply.text[:300]}")
    return len(chosen)


def _known(value) -> bool | None:
    import pandas as pd

    return None if pd.isna(value) else bool(value)
