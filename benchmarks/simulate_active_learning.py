"""Active learning vs random sampling, simulated on the team's labeled comments.

    python benchmarks/simulate_active_learning.py [--corpus-dir ../shared/data/pool] [--seeds 3]

The train split of training/labels/real_labels.jsonl plays the unlabeled pool (its labels are
revealed only when a comment is "labeled"); thresholds are tuned on the dev split; F1 is
measured on the test split. Both strategies start from the same random comments; then each
round adds a batch chosen by `suggest` (uncertainty + diversity) or at random, and the baseline
is retrained. Prints the learning curves and how many labels each strategy needed to reach the
F1 that random sampling reaches with its full budget; writes the plot.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

from kesheng.models.baseline import TfidfLinearClassifier  # noqa: E402
from kesheng.models.schema import DEFAULT_TAXONOMY  # noqa: E402
from kesheng.training.active import suggest  # noqa: E402
from kesheng.training.corpus import load_corpus_splits  # noqa: E402
from kesheng.training.data import LabeledSet  # noqa: E402
from kesheng.training.evaluate import choose_thresholds, evaluate  # noqa: E402


def fit(train: LabeledSet, dev: LabeledSet) -> TfidfLinearClassifier:
    model = TfidfLinearClassifier(taxonomy=DEFAULT_TAXONOMY).fit(train.texts, train.tags, train.sentiments)
    model.set_thresholds(choose_thresholds(dev.tags, model.predict(dev.texts), DEFAULT_TAXONOMY, 5, (0.1, 0.9)))
    return model


def run(strategy: str, pool: LabeledSet, dev: LabeledSet, test: LabeledSet, seed: int, start: int, batch: int, budget: int):
    order = list(range(len(pool)))
    random.Random(seed).shuffle(order)
    labeled = order[:start]
    curve = []
    while True:
        model = fit(pool.subset(labeled), dev)
        metrics = evaluate(model, test)
        curve.append((len(labeled), metrics["macro_f1"], metrics["sentiment"]["macro_f1"]))
        if len(labeled) >= budget:
            return curve
        chosen = set(labeled)
        remaining = [i for i in order if i not in chosen]
        if strategy == "random":
            labeled += remaining[:batch]
        else:
            picked = suggest(model, [pool.texts[i] for i in remaining], batch, already_labeled=[pool.texts[i] for i in labeled])
            labeled += [remaining[s.index] for s in picked]


def labels_to_reach(curve: list[tuple[int, float]], target: float) -> float | None:
    """Labels at which a curve first reaches `target` (linear interpolation between rounds)."""
    for (n0, f0), (n1, f1) in zip(curve, curve[1:]):
        if f0 >= target:
            return float(n0)
        if f1 >= target:
            return n0 + (n1 - n0) * (target - f0) / (f1 - f0)
    return float(curve[-1][0]) if curve[-1][1] >= target else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus-dir", default=str(ROOT.parent / "shared" / "data" / "pool"))
    parser.add_argument("--labels", default=str(ROOT / "training" / "labels" / "real_labels.jsonl"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--start", type=int, default=100)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--plot", default=str(ROOT / "docs" / "active_learning.png"))
    args = parser.parse_args()

    splits = load_corpus_splits(args.labels, args.corpus_dir, DEFAULT_TAXONOMY)
    pool, dev, test = splits["train"], splits["dev"], splits["test"]
    print(f"pool {len(pool)} (train split), thresholds on dev {len(dev)}, F1 on test {len(test)}; "
          f"start {args.start}, +{args.batch} per round, budget {args.budget}, seeds {args.seeds}")
    started = time.perf_counter()
    curves: dict[str, list] = {"random": [], "active": []}
    for seed in range(args.seeds):
        for strategy in curves:
            curves[strategy].append(run(strategy, pool, dev, test, seed, args.start, args.batch, args.budget))
    sizes = [n for n, _, _ in curves["random"][0]]
    mean = {s: np.mean([[f for _, f, _ in c] for c in curves[s]], axis=0) for s in curves}
    mean_sent = {s: np.mean([[f for _, _, f in c] for c in curves[s]], axis=0) for s in curves}
    print(f"\n{'labels':>7}  {'random macro-F1':>16}  {'active macro-F1':>16}  {'random sent.':>13}  {'active sent.':>13}")
    for k, n in enumerate(sizes):
        print(f"{n:>7}  {mean['random'][k]:>16.3f}  {mean['active'][k]:>16.3f}  {mean_sent['random'][k]:>13.3f}  {mean_sent['active'][k]:>13.3f}")
    target = float(mean["random"][-1])
    need_random = labels_to_reach(list(zip(sizes, mean["random"])), target)
    need_active = labels_to_reach(list(zip(sizes, mean["active"])), target)
    print(f"\nmacro-F1 that random sampling reaches with {sizes[-1]} labels: {target:.3f}")
    print(f"labels needed to reach it: random {need_random:.0f}, active "
          + (f"{need_active:.0f} ({1 - need_active / need_random:.0%} fewer)" if need_active else "not reached"))
    print(f"(mean of {args.seeds} seeds; {time.perf_counter() - started:.0f} s)")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    for strategy, colour in (("random", "tab:gray"), ("active", "tab:blue")):
        for curve in curves[strategy]:
            axes[0].plot(sizes, [f for _, f, _ in curve], color=colour, alpha=0.25, linewidth=1)
            axes[1].plot(sizes, [f for _, _, f in curve], color=colour, alpha=0.25, linewidth=1)
        axes[0].plot(sizes, mean[strategy], color=colour, linewidth=2.5, label=f"{strategy} (mean of {args.seeds})")
        axes[1].plot(sizes, mean_sent[strategy], color=colour, linewidth=2.5, label=strategy)
    axes[0].axhline(target, color="tab:gray", linestyle=":", linewidth=1)
    axes[0].set(title="Tags: macro-F1 on the test split", xlabel="labeled comments", ylabel="macro-F1")
    axes[1].set(title="Sentiment: macro-F1 on the test split", xlabel="labeled comments", ylabel="macro-F1")
    axes[0].legend(loc="lower right")
    for axis in axes:
        axis.grid(alpha=0.3)
    figure.tight_layout()
    Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.plot)
    print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
