"""Which escalate-head settings the dev split prefers: tone features on/off x escalate_c.

    python benchmarks/escalate_features.py --corpus-dir ../shared/data/pool

Each setting fits the baseline on the train split of `training/configs/default.json`'s label
files (no weak rows, no refit: only the escalate head is compared) and scores the escalate head on
dev: average precision, and the precision at the highest threshold whose recall reaches 0.85 and
0.90 (the operating points the issue and the config name). Nothing here touches a test set.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def precision_at_recall(y: np.ndarray, scores: np.ndarray, recall: float) -> float:
    positives = np.sort(scores[y == 1])[::-1]
    threshold = positives[max(int(np.ceil(recall * len(positives))), 1) - 1]
    flagged = scores >= threshold
    return float((flagged & (y == 1)).sum() / flagged.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus-dir", default=None, help="the public corpora ($KESHENG_CORPUS_DIR)")
    args = parser.parse_args()

    from sklearn.metrics import average_precision_score

    from kesheng.models.baseline import TfidfLinearClassifier
    from kesheng.training.config import TrainConfig
    from kesheng.training.corpus import load_corpus_splits
    from kesheng.training.data import LabeledSet, load_labeled

    config = TrainConfig.from_file(ROOT / "training" / "configs" / "default.json")
    splits = load_corpus_splits(config.corpus_labels, args.corpus_dir)
    train = LabeledSet.concat([*(load_labeled(path) for path in config.train_files), splits["train"]])
    dev = splits["dev"]
    labeled = dev.escalate >= 0
    y = dev.escalate[labeled]
    print(f"train {len(train)} comments ({int((train.escalate == 1).sum())} escalate positives of {int((train.escalate >= 0).sum())} labeled); dev {int(labeled.sum())} labeled, {int((y == 1).sum())} positive")
    print(f"{'tone':<6}{'escalate_c':>11}{'AP':>8}{'P@R0.85':>9}{'P@R0.90':>9}")
    for tone in (True, False):
        for c in (1.0, 4.0, 16.0):
            params = config.baseline
            params = replace(params, escalate_c=c, features=replace(params.features, tone=tone))
            model = TfidfLinearClassifier(params).fit(train.texts, train.tags, train.sentiments, escalate=train.escalate)
            scores = np.array([p.escalate_score for p in model.predict(dev.texts)])[labeled]
            print(f"{str(tone):<6}{c:>11g}{average_precision_score(y, scores):>8.3f}{precision_at_recall(y, scores, 0.85):>9.3f}{precision_at_recall(y, scores, 0.90):>9.3f}")


if __name__ == "__main__":
    main()
