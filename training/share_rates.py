"""Share-correction error rates measured by cross-fitting on randomly drawn labeled comments.

    python -m kesheng.training.share_rates --config training/configs/default.json \\
        --measure-on training/labels/round6_random.jsonl --model models/default_model --corpus-dir ../shared/data/pool

A report corrects each problem's share with the model's true- and false-positive rates, and the
correction is only as good as the match between the rows the rates were measured on and the
comments of a real survey. The pipeline's dev and test splits were drawn 60% among comments with
a service keyword (so that every tag has positives): their negatives are harder than a survey's,
and rates measured there overstate the false-positive rate (the corrected shares come out too
low). Randomly drawn comments (round 6's random half) are representative, but they are training
rows of the final model. So they are measured by cross-fitting: the training run of the config
is repeated `folds` times, each time without one fold of the measured comments (and without any
comment with the same normalized text), at the final model's thresholds, and each comment is
predicted by the run that did not see it. The counts go into the model directory's metrics.json
(`share_correction`) with `kesheng.training.evaluate.store_share_rates`'s format; the weights of
the model are untouched.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
from pathlib import Path

from kesheng.models import TagClassifier
from kesheng.training.config import TrainConfig
from kesheng.training.corpus import load_corpus_splits, read_label_file
from kesheng.training.data import LabeledSet, dedupe_key, load_labeled
from kesheng.training.evaluate import SHARE_CORRECTION, share_rates, write_share_rates
from kesheng.training.train import _fit, _weak_rows, build_model

__all__ = ["cross_fitted_share_rates"]

log = logging.getLogger(__name__)


def _fold(text: str, folds: int) -> int:
    return int(hashlib.sha256(dedupe_key(text).encode("utf-8")).hexdigest(), 16) % folds


def cross_fitted_share_rates(config: TrainConfig, model: TagClassifier, measure_on: list[str], folds: int = 3) -> dict:
    """The `share_correction` block for `model`, measured on the train-split comments of the
    `measure_on` label files by `folds`-fold cross-fitting of `config`'s training run."""
    taxonomy = model.taxonomy_
    splits = load_corpus_splits(config.corpus_labels, config.corpus_dir, taxonomy)
    train = LabeledSet.concat([load_labeled(path, config.columns, taxonomy) for path in config.train_files] + [splits["train"]])
    dev = splits["dev"]
    measured_ids = {row["id"] for path in measure_on for row in read_label_file(path, taxonomy)}
    measured = [i for i, row_id in enumerate(train.ids) if row_id in measured_ids]
    if not measured:
        raise ValueError(f"no training comment of {measure_on} is in the config's labels: nothing to measure")
    hand_ids = {i for part in splits.values() for i in part.ids}
    held_out_ids = {i for name in ("dev", "test") for i in splits[name].ids}
    held_out_ids |= {row["id"] for paths in config.report_labels for path in ([paths] if isinstance(paths, str) else paths) for row in read_label_file(path, taxonomy)}
    weak = _weak_rows(config, splits["train"], hand_ids, held_out_ids, taxonomy) if config.weak_rows else None
    keys = [dedupe_key(t) for t in train.texts]
    predictions: dict[int, object] = {}
    for k in range(folds):
        held = [i for i in measured if _fold(train.texts[i], folds) == k]
        held_keys = {keys[i] for i in held}
        rest = [i for i in range(len(train)) if keys[i] not in held_keys]
        log.info("fold %d/%d: fitting on %d comments (+ dev %d), predicting %d", k + 1, folds, len(rest), len(dev), len(held))
        fitted = _fit(build_model(config, taxonomy), LabeledSet.concat([train.subset(rest), dev]), weak, config.weak_weight, config)
        fitted.set_thresholds(model.thresholds_)
        predictions.update(zip(held, fitted.predict([train.texts[i] for i in held])))
    order = sorted(predictions)
    rows = train.subset(order)
    names = ", ".join(Path(p).name for p in measure_on)
    return share_rates(rows, [predictions[i] for i in order], f"{names} ({len(order)} randomly drawn comments, {folds}-fold cross-fitted)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="the training config the model was trained with")
    parser.add_argument("--measure-on", nargs="+", required=True, help="label file(s) of randomly drawn comments (train split)")
    parser.add_argument("--model", required=True, help="model directory whose metrics.json receives the rates")
    parser.add_argument("--corpus-dir", default=None, help="the public corpora ($KESHENG_CORPUS_DIR)")
    parser.add_argument("--folds", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    from kesheng.models import load_model

    config = TrainConfig.from_file(args.config)
    if args.corpus_dir:
        config.corpus_dir = args.corpus_dir
    model = load_model(args.model)
    block = cross_fitted_share_rates(config, model, args.measure_on, args.folds)
    write_share_rates(args.model, model, block)
    for name, c in block["tags"].items():
        print(f"{name:<15} TPR {c['tp'] / max(c['tp'] + c['fn'], 1):.3f} ({c['tp'] + c['fn']} positives)  FPR {c['fp'] / max(c['fp'] + c['tn'], 1):.3f} ({c['fp'] + c['tn']} negatives)")
    print(f"stored in {args.model}/metrics.json ({SHARE_CORRECTION}): {block['measured_on']}")


if __name__ == "__main__":
    main()
