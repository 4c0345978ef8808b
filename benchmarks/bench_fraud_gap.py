"""Benchmark: where the fraud model's gap to the oracle lies, on generated books, side by side.

For each seed (default 0, 1, 2) and book size (default 200,000 claims), on the test period (the
newest 15%, the split training uses), fraud PR-AUC and ROC-AUC as a share of the oracle's
(`true_fraud_prob`, the probability the labels were drawn from) for:

- ours: the fraud model fitted exactly as `training.fit.fit_bundle` fits it (the repository's
  claimtriage.toml), once with `reweight_rare_class` as configured and once flipped;
- noise-free oracle: the oracle without the generator's N(0, 0.3) log-odds noise, the best any model
  could do from what the claims show plus the two hidden facts below;
- the oracle's terms, as features: the generator's own terms (`training.generate.fraud_terms`) given
  to a logistic regression (the right form: the oracle is linear in them) and to LightGBM with ours'
  settings (the trees' ceiling: what trees learn from this many frauds when handed every term). Two
  of those terms are hidden from any real model: whether a claim is a ring's, and whether a shared
  identity is a family's or a fleet's;
- ours told terms: ours, same settings, given the two hidden terms as two more features (what
  perfect ring detection and a perfect tell of ordinary sharing would add), then every term;
- LightGBM stumps on the terms: trees of one split, which add up one function per term, this
  oracle's own form (ours needs deeper trees: the red flags are interactions of raw fields).

Separately, the ring claims: their median percentile in ours' ranking and the oracle's. With
`--explain-cost`, on the first book: the whole bundle fitted both ways and the reasons of its three
models (models.explain.Explainer, what the service runs) timed side by side, alternating, for one
claim and for 256, medians of 30: the up-weighting changes the fraud model's tree count.

    python benchmarks/bench_fraud_gap.py [--seeds 0 1 2] [--claims 200000] [--json OUT] [--explain-cost] [--ours-only]

Not a test: it prints the table and writes JSON; the machine may be shared (timings are not the point).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import training.generate as generate  # noqa: E402
from features.validation import validate_claims  # noqa: E402
from models.config import load_config  # noqa: E402
from training.data import split_claims  # noqa: E402
from training.fit import Extras, booster_params, fit_builder, fit_fraud  # noqa: E402

CONFIG = load_config(ROOT / "claimtriage.toml")

TERM = "_oracle_term_"


def book_with_terms(claims: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A generated book and, row for row, the oracle's terms and noise-free log-odds (ground truth)."""
    draw_labels = generate.draw_labels

    def capturing(rng, frame, hidden):
        draw_labels(rng, frame, hidden)
        for name, values in generate.fraud_terms(frame, hidden).items():  # sorted with the book
            frame[TERM + name] = np.asarray(values, dtype=float)

    generate.draw_labels = capturing
    try:
        book = generate.generate_claims(claims, seed=seed)
    finally:
        generate.draw_labels = draw_labels
    columns = [c for c in book.columns if c.startswith(TERM)]
    terms = book[columns].rename(columns=lambda c: c[len(TERM):])
    book = book.drop(columns=columns)
    terms["clean_logit"] = generate.FRAUD_BASE_LOGIT + generate.FRAUD_SIGNAL_SCALE * generate.fraud_signal(terms)
    noise = np.log(book["true_fraud_prob"] / (1 - book["true_fraud_prob"])).to_numpy() - terms["clean_logit"].to_numpy()
    if np.abs(noise).max() > 2.0:  # N(0, 0.3) noise: more means the terms no longer are the generator's
        raise RuntimeError(f"the oracle's terms do not reproduce its probabilities (largest gap {np.abs(noise).max():.2f})")
    return book, terms


def ratios(y: np.ndarray, score: np.ndarray, oracle: np.ndarray) -> dict[str, float]:
    """PR-AUC and ROC-AUC of `score` as shares of the oracle's on the same claims."""
    return {"pr": average_precision_score(y, score) / average_precision_score(y, oracle),
            "roc": roc_auc_score(y, score) / roc_auc_score(y, oracle)}


def ours(claims: pd.DataFrame, split, builder, matrix: np.ndarray, reweight: bool) -> tuple[np.ndarray, int]:
    """Test-period fraud margins of the fraud model fitted as fit_bundle fits it (on `builder`'s matrix of
    all claims), and its tree count."""
    cfg = dataclasses.replace(CONFIG.training, reweight_rare_class=reweight)
    model = fit_fraud(matrix, claims["is_fraud"].to_numpy(dtype=bool), split, builder, cfg)
    return model.margin(matrix[split.test]), model.booster.num_trees()


HIDDEN = ("ring", "shared_identity")  # the oracle's two terms no model sees, as fraud_terms computes them


def ours_told(claims: pd.DataFrame, split, builder, matrix: np.ndarray, terms: pd.DataFrame,
              told: tuple[str, ...]) -> np.ndarray:
    """Test-period fraud margins of ours (same settings and constraints) given some of the oracle's terms
    as more features, each constrained to raise the risk (a term with a negative weight would need the
    opposite; all of them rise)."""
    names = [f"term_{name}" for name in told]
    wider_builder = SimpleNamespace(feature_names_=builder.feature_names_ + names,
                                    categorical_indices_=builder.categorical_indices_)
    cfg = dataclasses.replace(CONFIG.training, fraud_rises_with=tuple(CONFIG.training.fraud_rises_with) + tuple(names))
    wider = np.column_stack([matrix] + [terms[name].to_numpy(dtype=float) for name in told])
    model = fit_fraud(wider, claims["is_fraud"].to_numpy(dtype=bool), split, wider_builder, cfg)
    return model.margin(wider[split.test])


def on_terms(terms: pd.DataFrame, y: np.ndarray, split) -> dict[str, np.ndarray]:
    """Test-period scores of a logistic regression and of LightGBM (ours' settings) on the oracle's terms."""
    x = terms[list(generate.FRAUD_WEIGHTS)].to_numpy()
    logistic = LogisticRegression(C=100.0, max_iter=5000).fit(x[split.train], y[split.train])
    cfg = CONFIG.training
    params = booster_params(cfg, 1.0)
    booster = lgb.train(params, lgb.Dataset(x[split.train], y[split.train]), num_boost_round=cfg.max_trees,
                        valid_sets=[lgb.Dataset(x[split.validation], y[split.validation])],
                        callbacks=[lgb.early_stopping(cfg.early_stopping_rounds, verbose=False)])
    # Stumps (one split a tree) add up one function per term: this oracle's form. Early stopping on
    # log-loss, as AUC barely moves between the many small steps.
    stumps = lgb.train(params | {"max_depth": 1, "num_leaves": 2, "learning_rate": 0.1, "metric": "binary_logloss"},
                       lgb.Dataset(x[split.train], y[split.train]), num_boost_round=3000,
                       valid_sets=[lgb.Dataset(x[split.validation], y[split.validation])],
                       callbacks=[lgb.early_stopping(100, verbose=False)])
    return {"logistic regression on the terms": logistic.decision_function(x[split.test]),
            "LightGBM on the terms": booster.predict(x[split.test], raw_score=True),
            "LightGBM stumps on the terms": stumps.predict(x[split.test], raw_score=True)}


def measure(claims_n: int, seed: int, ours_only: bool = False) -> dict:
    started = time.perf_counter()
    book, terms = book_with_terms(claims_n, seed)
    ring = book["ring_id"].notna().to_numpy()
    claims = validate_claims(book, require_labels=True).claims
    if len(claims) != len(book) or not (claims["claim_id"].to_numpy() == book["claim_id"].to_numpy()).all():
        raise RuntimeError("validation changed the generated book's rows")
    config = CONFIG.training
    split = split_claims(claims, config.validation_share, config.test_share, config.seed)
    builder, matrix = fit_builder(claims, split, config, Extras())  # the same whatever the class weights
    y = claims["is_fraud"].to_numpy(dtype=bool)
    oracle = claims["true_fraud_prob"].to_numpy()[split.test]
    y_test = y[split.test]
    rows, trees = {}, {}
    for reweight in (config.reweight_rare_class,) + (() if ours_only else (not config.reweight_rare_class,)):
        name = f"ours, reweight_rare_class={str(reweight).lower()}" + (" (configured)" if reweight == config.reweight_rare_class else "")
        score, trees[name] = ours(claims, split, builder, matrix, reweight)
        rows[name] = ratios(y_test, score, oracle)
        if reweight == config.reweight_rare_class:
            rank = pd.Series(score).rank(pct=True).to_numpy()
            oracle_rank = pd.Series(oracle).rank(pct=True).to_numpy()
            ring_test = ring[split.test]
            rings = {"ring claims in test": int(ring_test.sum()),
                     "ring median percentile, ours": float(np.median(rank[ring_test])),
                     "ring median percentile, oracle": float(np.median(oracle_rank[ring_test])),
                     "PR-AUC ratio outside rings": ratios(y_test[~ring_test], score[~ring_test], oracle[~ring_test])["pr"]}
    rows["noise-free oracle"] = ratios(y_test, terms["clean_logit"].to_numpy()[split.test], oracle)
    if not ours_only:
        for name, told in (("ours told the two hidden terms", HIDDEN), ("ours told every term", tuple(generate.FRAUD_WEIGHTS))):
            rows[name] = ratios(y_test, ours_told(claims, split, builder, matrix, terms, told), oracle)
        for name, score in on_terms(terms, y, split).items():
            rows[name] = ratios(y_test, score, oracle)
    return {"claims": claims_n, "seed": seed, "test_claims": int(split.test.sum()), "test_frauds": int(y_test.sum()),
            "training_frauds": int(y[split.train].sum()), "oracle_pr_auc": average_precision_score(y_test, oracle),
            "oracle_roc_auc": roc_auc_score(y_test, oracle), "ratios": rows, "trees": trees, "rings": rings,
            "seconds": round(time.perf_counter() - started, 1), "_claims": claims, "_split": split}


def explain_cost(claims: pd.DataFrame, split, repeats: int = 30) -> dict:
    """Median milliseconds to explain 1 and 256 test claims with the bundle fitted with and without up-weighting."""
    from models.explain import Explainer
    from training.fit import fit_bundle

    config = CONFIG
    fitted = {}
    for reweight in (False, True):
        cfg = dataclasses.replace(config, training=dataclasses.replace(config.training, reweight_rare_class=reweight))
        bundle = fit_bundle(claims, split, cfg).bundle
        fitted[reweight] = (bundle.fraud.booster.num_trees(), Explainer(bundle),
                            bundle.builder.transform(claims.loc[split.test]))
    times = {reweight: {1: [], 256: []} for reweight in fitted}
    rng = np.random.default_rng(0)
    for k in range(repeats):
        for reweight in ((False, True) if k % 2 else (True, False)):
            _, explainer, matrix = fitted[reweight]
            for n in (1, 256):
                rows = matrix[rng.integers(0, len(matrix), n)]
                started = time.perf_counter()
                explainer.reasons(rows)
                times[reweight][n].append(time.perf_counter() - started)
    return {f"reweight_rare_class={str(reweight).lower()}": {
        "fraud_trees": fitted[reweight][0], "ms_1_claim": 1e3 * float(np.median(times[reweight][1])),
        "ms_256_claims": 1e3 * float(np.median(times[reweight][256]))} for reweight in fitted}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--claims", type=int, nargs="+", default=[200_000])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--explain-cost", action="store_true")
    parser.add_argument("--ours-only", action="store_true",
                        help="only ours as configured (and the noise-free oracle): for books of millions")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores; test period = newest 15%; each figure a share of the oracle's on the same claims",
          flush=True)
    results = []
    for claims_n in args.claims:
        for seed in args.seeds:
            found = measure(claims_n, seed, args.ours_only)
            book = found.pop("_claims"), found.pop("_split")
            if args.explain_cost and not results:
                first_book = book
            results.append(found)
            print(f"\n{claims_n:,} claims, seed {seed}: {found['training_frauds']:,} training frauds, "
                  f"{found['test_frauds']:,} of {found['test_claims']:,} test claims; oracle PR-AUC "
                  f"{found['oracle_pr_auc']:.3f}, ROC-AUC {found['oracle_roc_auc']:.3f} ({found['seconds']:.0f} s)")
            for name, r in found["ratios"].items():
                tree_count = f"  ({found['trees'][name]} trees)" if name in found["trees"] else ""
                print(f"  {name:48} PR-AUC {r['pr']:6.1%}  ROC-AUC {r['roc']:6.2%}{tree_count}")
            print("  " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                   for k, v in found["rings"].items()), flush=True)
    if args.explain_cost:
        cost = explain_cost(*first_book)
        print(f"\nreasons of the three models, {args.claims[0]:,} claims seed {args.seeds[0]} (medians of 30):")
        for name, c in cost.items():
            print(f"  {name:28} fraud trees {c['fraud_trees']:4}  1 claim {c['ms_1_claim']:6.2f} ms  "
                  f"256 claims {c['ms_256_claims']:7.1f} ms")
        results.append({"explain_cost": cost})
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
