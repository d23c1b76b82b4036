"""Tag and sentiment quality of a model on both test sets, with 95% bootstrap intervals.

    python benchmarks/bench_quality.py --corpus-dir ../shared/data/pool [--model DIR] [--bootstrap 1000]

- `round-1 test split`: the 661 test comments of `training/labels/real_labels.jsonl`, labeled in
  the same round and by the same labelers as the training data;
- `independent test set`: `training/labels/independent_test.jsonl`, 2,000 comments never labeled
  before, labeled blind twice and adjudicated (see training/labels/README.md), joined with
  `independent_test_escalate.jsonl` (the same comments' escalate labels). Reporting only.

Each is printed as a whole and per source; intervals resample comments with replacement. Where a
set has escalate labels and the model an escalate head, the escalate recall, precision and F1 at
the model's operating point follow, against the targets recall >= 0.85 and F1 >= 0.75.
Nothing here chooses anything: it only reports.
"""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LABELS = ROOT / "training" / "labels"
TEST_SETS = {
    "round-1 test split": [LABELS / "real_labels.jsonl"],
    "independent test set": [LABELS / "independent_test.jsonl", LABELS / "independent_test_escalate.jsonl"],
}
ESCALATE_TARGETS = {"recall": 0.85, "f1": 0.75}


def _cell(entry: dict | None) -> str:
    return "n/a" if not entry else f"{entry['value']:.3f} [{entry['low']:.3f}, {entry['high']:.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model directory (default: the model `kesheng tag` uses)")
    parser.add_argument("--corpus-dir", default=None, help="the public corpora ($KESHENG_CORPUS_DIR)")
    parser.add_argument("--bootstrap", type=int, default=1000)
    args = parser.parse_args()

    from kesheng.stores.registry import load_model
    from kesheng.training.compare import score_intervals
    from kesheng.training.corpus import load_corpus_labels, source_of

    model = load_model(args.model)
    print(f"model {model.meta_.get('model_version')} ({model.model_type}); 95% bootstrap intervals over {args.bootstrap} resamples")
    for name, paths in TEST_SETS.items():
        data = load_corpus_labels([str(p) for p in paths], args.corpus_dir, model.taxonomy_, "test")
        predictions = model.predict(data.texts)
        groups = {"all": list(range(len(data)))}
        for i, row_id in enumerate(data.ids):
            groups.setdefault(source_of(row_id), []).append(i)
        print(f"\n{name} ({' + '.join(p.name for p in paths)}, {len(data)} comments)")
        print(f"  {'part':<10}{'n':>6}  {'tag macro-F1':<24}{'sentiment macro-F1':<24}" + "".join(f"{t:<24}" for t in model.taxonomy_.names))
        for group, rows in groups.items():
            scores = score_intervals(data.subset(rows), [predictions[i] for i in rows], args.bootstrap)
            tags = "".join(f"{_cell(scores['tags'].get(t)):<24}" for t in model.taxonomy_.names)
            print(f"  {group:<10}{len(rows):>6}  {_cell(scores.get('macro_f1')):<24}{_cell(scores.get('sentiment_macro_f1')):<24}{tags}")
        if not data.has_escalate:
            continue
        if not model.has_escalate:
            print("  escalate: n/a (this model has no escalate head)")
            continue
        print(f"  escalate at threshold {model.escalate_threshold:.4f}:")
        print(f"  {'part':<10}{'n':>6}{'positives':>10}  {'recall':<24}{'precision':<24}{'F1':<24}")
        overall = None
        for group, rows in groups.items():
            e = score_intervals(data.subset(rows), [predictions[i] for i in rows], args.bootstrap).get("escalate")
            if e:
                print(f"  {group:<10}{e['labeled']:>6}{e['positives']:>10}  {_cell(e['recall']):<24}{_cell(e['precision']):<24}{_cell(e['f1']):<24}")
                overall = overall or e
        if overall:
            verdict = ", ".join(
                f"{k} {overall[k]['value']:.3f} {'meets' if overall[k]['value'] >= t else 'misses'} >= {t}" for k, t in ESCALATE_TARGETS.items()
            )
            print(f"  targets (all): {verdict}")


if __name__ == "__main__":
    main()
