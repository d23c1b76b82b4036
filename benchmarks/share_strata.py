"""Pooled against stratified share correction when a survey's mix of comments differs from the
labeled rows the error rates were measured on: the choice is made here, not on the independent set.

    python benchmarks/share_strata.py --corpus-dir ../shared/data/pool

The model's training run is cross-fitted over the randomly drawn labeled comments (round 6's
random reviews and the STC-3 complaint threads of rounds 1-3, as `kesheng.training.share_rates`
measures them), so each comment is predicted by a run that never saw it. The comments are split
in two halves by id: rates are measured on one half (pooled, and per kind of comment,
`kesheng.nlp.strata`), surveys of 1,000 comments are drawn from the other half with STC-3 threads
making 0% to 100% of them, and each survey's shares are estimated by both methods with the
report's code. Printed: per mix, how often the 95% interval covers the true share and the mean
absolute error of the raw, pooled and stratified estimates, over every tag, both halves and the
repeats. Nothing here touches the independent test set.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MEASURED = [str(ROOT / "training/labels/round6_random.jsonl"), str(ROOT / "training/labels/real_labels.jsonl") + ":stc3-"]
MIXES = (0.0, 0.1, 0.22, 0.4, 1.0)  # the share of STC-3 threads in a simulated survey


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "training/configs/default.json"))
    parser.add_argument("--model", default=str(ROOT / "models/default_model"))
    parser.add_argument("--corpus-dir", default=None, help="the public corpora ($KESHENG_CORPUS_DIR)")
    parser.add_argument("--surveys", type=int, default=10, help="surveys drawn per mix and half")
    parser.add_argument("--size", type=int, default=1000, help="comments per survey")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from kesheng.analysis.shares import ShareCell, estimate_share, estimate_stratified_share, rates_from_metrics
    from kesheng.models import load_model
    from kesheng.nlp.strata import comment_stratum
    from kesheng.training.config import TrainConfig
    from kesheng.training.evaluate import share_rates
    from kesheng.training.share_rates import cross_fitted_predictions

    config = TrainConfig.from_file(args.config)
    if args.corpus_dir:
        config.corpus_dir = args.corpus_dir
    model = load_model(args.model)
    rows, predictions = cross_fitted_predictions(config, model, MEASURED)
    names = list(rows.taxonomy.names)
    complete = np.flatnonzero((rows.tags >= 0).all(axis=1))
    half = np.array([int(hashlib.sha256(rows.ids[i].encode()).hexdigest(), 16) % 2 for i in range(len(rows))])
    thread = np.array([row_id.startswith("stc3-") for row_id in rows.ids])
    kinds = np.array([comment_stratum(text) for text in rows.texts], dtype=object)
    tagged = np.array([[name in p.tags for name in names] for p in predictions], dtype=np.int64)
    print(f"{len(rows):,} cross-fitted comments ({int(thread.sum()):,} STC-3 threads); surveys of {args.size:,}, {args.surveys} per mix and half")
    rng = np.random.default_rng(0)
    results = {mix: {"covered": {"pooled": 0, "stratified": 0}, "error": {"raw": [], "pooled": [], "stratified": []}, "n": 0} for mix in MIXES}
    for side in (0, 1):
        measured = np.flatnonzero(half != side)
        rates = rates_from_metrics({"share_correction": share_rates(rows.subset(measured.tolist()), [predictions[i] for i in measured], "half")})
        survey_pool = np.intersect1d(np.flatnonzero(half == side), complete)
        threads, singles = survey_pool[thread[survey_pool]], survey_pool[~thread[survey_pool]]
        for mix in MIXES:
            for _ in range(args.surveys):
                n_threads = min(int(round(args.size * mix)), len(threads))
                survey = np.concatenate([rng.choice(threads, n_threads, replace=False), rng.choice(singles, args.size - n_threads, replace=False)])
                for j, name in enumerate(names):
                    truth = rows.tags[survey, j].mean()
                    count = int(tagged[survey, j].sum())
                    pooled = estimate_share(count, len(survey), rates.tags[name])
                    cells = [
                        ShareCell(int(tagged[survey[kinds[survey] == key], j].sum()), int((kinds[survey] == key).sum()), rates.strata[key].tags[name] if key in rates.strata else None)
                        for key in sorted(set(kinds[survey].tolist()))
                    ]
                    stratified = estimate_stratified_share(cells)
                    record = results[mix]
                    record["n"] += 1
                    record["error"]["raw"].append(abs(count / len(survey) - truth))
                    for method, estimate in (("pooled", pooled), ("stratified", stratified)):
                        record["covered"][method] += estimate.ci_low <= truth <= estimate.ci_high
                        record["error"][method].append(abs(estimate.estimate - truth))
    print(f"{'STC-3 share':<12}{'pooled covers':>15}{'stratified covers':>19}{'MAE raw':>9}{'pooled':>8}{'stratified':>12}")
    totals = {"pooled": 0, "stratified": 0, "n": 0}
    for mix, record in results.items():
        n = record["n"]
        totals["n"] += n
        for method in ("pooled", "stratified"):
            totals[method] += record["covered"][method]
        mae = {k: 100 * float(np.mean(v)) for k, v in record["error"].items()}
        print(f"{mix:<12.0%}{record['covered']['pooled'] / n:>15.1%}{record['covered']['stratified'] / n:>19.1%}{mae['raw']:>9.2f}{mae['pooled']:>8.2f}{mae['stratified']:>12.2f}")
    print(f"all mixes: intervals covering the truth, pooled {totals['pooled'] / totals['n']:.1%}, stratified {totals['stratified'] / totals['n']:.1%} (nominal 95%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
