"""Corrected problem shares against the truth, on the team's independent test set.

    python benchmarks/bench_shares.py --corpus-dir ../shared/data/pool [--model DIR]

Tags the 2,000 comments of `training/labels/independent_test.jsonl` (random, blind, never used for
training, thresholds or the error rates) with the model, as `kesheng tag` would, builds the report
from the tagged file, and prints per tag: the true share (the adjudicated labels), the raw share
(comments the model tagged), the corrected estimate with its 95% interval for both methods (ACC,
the report's default, and PACC), and whether the interval covers the truth; then the mean absolute
error of raw and corrected shares. The error rates come from the model directory (metrics.json
`share_correction`; for the bundled model cross-fitted on randomly drawn labeled comments, per kind
of comment, `kesheng.training.share_rates`); nothing here is tuned on this set.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
INDEPENDENT = ROOT / "training" / "labels" / "independent_test.jsonl"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model directory (default: the model `kesheng tag` uses)")
    parser.add_argument("--corpus-dir", default=None, help="the public corpora ($KESHENG_CORPUS_DIR)")
    args = parser.parse_args()

    from kesheng.analysis.report import ReportOptions, build_report
    from kesheng.serve.batch import TagFileOptions, tag_file
    from kesheng.stores.registry import load_model, resolve_model
    from kesheng.training.corpus import load_corpus_labels

    model = load_model(args.model)
    labeled = load_corpus_labels([INDEPENDENT], args.corpus_dir, model.taxonomy_, "test")
    work = Path(tempfile.mkdtemp(prefix="kesheng-shares-"))
    source = work / "independent.csv"
    with open(source, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text"])
        writer.writerows(zip(labeled.ids, labeled.texts))
    tag_file(model, source, work / "tagged.csv", TagFileOptions())
    reports = {
        method: build_report(work / "tagged.csv", ReportOptions(text_column="text", share_method=method, model_dir=str(resolve_model(args.model))))
        for method in ("acc", "pacc")
    }
    acc = reports["acc"]
    if acc.share_rates is None:
        print("the model stores no share-correction rates: run `kesheng evaluate --store-rates` first")
        return 1
    print(f"model {model.meta_['model_version']}; independent test set: {len(labeled):,} comments ({acc.scored:,} with text)")
    print(f"error rates measured on: {acc.share_rates.measured_on}")
    print(f"{'tag':<15}{'true':>8}{'raw':>8}   {'ACC [95% interval]':<26}{'covers':>7}   {'PACC [95% interval]':<26}{'covers':>7}")
    errors = {"raw": [], "acc": [], "pacc": []}
    covered = {"acc": 0, "pacc": 0}
    names = list(model.taxonomy_.names)
    for j, name in enumerate(names):
        known = labeled.tags[:, j] >= 0
        truth = float(labeled.tags[known, j].mean())
        cells = []
        for method in ("acc", "pacc"):
            e = reports[method].estimates[name]
            inside = e.ci_low <= truth <= e.ci_high
            covered[method] += inside
            errors[method].append(abs(e.estimate - truth))
            cells.append(f"{e.estimate:6.1%} [{e.ci_low:6.1%}, {e.ci_high:6.1%}]   {'yes' if inside else 'NO':>7}")
        raw = acc.estimates[name].raw
        errors["raw"].append(abs(raw - truth))
        print(f"{name:<15}{truth:8.1%}{raw:8.1%}   " + "   ".join(cells))
    print(f"mean absolute error: raw {np.mean(errors['raw']) * 100:.2f} points, ACC {np.mean(errors['acc']) * 100:.2f}, PACC {np.mean(errors['pacc']) * 100:.2f}")
    print(f"intervals covering the true share: ACC {covered['acc']} of {len(names)}, PACC {covered['pacc']} of {len(names)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
