"""Share-correction error rates measured by cross-fitting on randomly drawn labeled comments.

    python -m kesheng.training.share_rates --config training/configs/default.json \\
        --measure-on training/labels/round6_random.jsonl training/labels/real_labels.jsonl:stc3- \\
        --model models/default_model --corpus-dir ../shared/data/pool

A report corrects each problem's share with the model's true- and false-positive rates, and the
correction is only as good as the match between the rows the rates were measured on and the
comments of a real survey. The pipeline's dev and test splits were drawn 60% among comments with
a service keyword (so that every tag has positives): their negatives are harder than a survey's,
and rates measured there overstate the false-positive rate (the corrected shares come out too
low). Randomly drawn comments are representative (round 6's random half for reviews; for STC-3
complaints, every dialogue of rounds 1-3, which together are all the corpus's dialogues of at
most 600 characters, so `real_labels.jsonl:stc3-` selects a population, not a keyword stratum),
but they are training rows of the final model. So they are measured by cross-fitting: the training run of the config
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
from kesheng.models.schema import Taxonomy
from kesheng.training.config import TrainConfig
from kesheng.training.corpus import load_corpus_splits, read_label_file
from kesheng.training.data import LabeledSet, dedupe_key, load_labeled
from kesheng.training.evaluate import SHARE_CORRECTION, share_rates, write_share_rates
from kesheng.training.train import _fit, _weak_rows, build_model

__all__ = ["cross_fitted_predictions", "cross_fitted_share_rates", "measured_ids"]

log = logging.getLogger(__name__)


def _fold(text: str, folds: int) -> int:
    return int(hashlib.sha256(dedupe_key(text).encode("utf-8")).hexdigest(), 16) % folds


def measured_ids(measure_on: list[str], taxonomy: Taxonomy) -> set[str]:
    """The ids `measure_on` selects: each entry is a label file, or `FILE:PREFIX` for the rows of
    FILE whose id starts with PREFIX (one source of a file that mixes draws, e.g. `:stc3-`)."""
    ids: set[str] = set()
    for entry in measure_on:
        path, _, prefix = entry.partition(":") if not Path(entry).is_file() else (entry, "", "")
        selected = {row["id"] for row in read_label_file(path, taxonomy) if row["id"].startswith(prefix)}
        if not selected:
            raise ValueError(f"{entry}: no row id starts with {prefix!r}")
        ids |= selected
    return ids


def cross_fitted_predictions(config: TrainConfig, model: TagClassifier, measure_on: list[str], folds: int = 3) -> tuple[LabeledSet, list]:
    """The train-split comments that `measure_on` selects (see `measured_ids`), each predicted by
    a `folds`-fold cross-fitting run of `config`'s training that did not see it, at `model`'s thresholds."""
    taxonomy = model.taxonomy_
    splits = load_corpus_splits(config.corpus_labels, config.corpus_dir, taxonomy)
    train = LabeledSet.concat([load_labeled(path, config.columns, taxonomy) for path in config.train_files] + [splits["train"]])
    dev = splits["dev"]
    selected = measured_ids(measure_on, taxonomy)
    measured = [i for i, row_id in enumerate(train.ids) if row_id in selected]
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
    return train.subset(order), [predictions[i] for i in order]


def cross_fitted_share_rates(config: TrainConfig, model: TagClassifier, measure_on: list[str], folds: int = 3) -> dict:
    """The `share_correction` block for `model`, measured on `cross_fitted_predictions`."""
    rows, predictions = cross_fitted_predictions(config, model, measure_on, folds)
    names = " + ".join(Path(entry).name for entry in measure_on)
    return share_rates(rows, predictions, f"{names} ({len(rows)} randomly drawn comments, {folds}-fold cross-fitted)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="the training config the model was trained with")
    parser.add_argument("--measure-on", nargs="+", required=True, help="label file(s) of randomly drawn comments (train split); FILE:PREFIX keeps the ids starting with PREFIX")
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
