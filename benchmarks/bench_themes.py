"""Does theme discovery recover groups it is not told about, and how fast is it?

    python benchmarks/bench_themes.py --corpus-dir ../shared/data/pool [--mix test|dev] [--embeddings encoder|tfidf] [--per-group 400]
    python benchmarks/bench_themes.py --corpus-dir ../shared/data/pool --scale 100000 --embeddings tfidf

Recovery: real reviews from six known groups, equal numbers of each, shuffled and given to
`find_themes` as bare text (the default parameters, scope = everything). Printed: the number
of themes, the share of comments clustered (the rest fit no theme), NMI between themes and
groups over the clustered comments, and each theme's label with the groups it holds.

- `--mix dev`: 平板, 手机, 计算机, 蒙牛, 热水器 and the shopping set's 酒店 reviews. The
  parameters' defaults (PCA dimensions, minimum size, join quantile) were chosen on this mix.
- `--mix test`: 书籍, 水果, 洗发水, 衣服 (shopping reviews), hotel reviews and takeaway reviews:
  other groups and other comments, used only to report.

`--scale N`: N pool comments (all sources, drawn with replacement when N exceeds the pool) through
the whole `kesheng themes` path on a tagged-like file, printing wall time and peak memory
(targets: 100,000 comments in <= 5 minutes with TF-IDF, <= 30 with the encoder; <= 2 GB).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_batch import run_kesheng  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MIXES = {
    "dev": [("shopping", "平板"), ("shopping", "手机"), ("shopping", "计算机"), ("shopping", "蒙牛"), ("shopping", "热水器"), ("shopping", "酒店")],
    "test": [("shopping", "书籍"), ("shopping", "水果"), ("shopping", "洗发水"), ("shopping", "衣服"), ("hotel", None), ("waimai", None)],
}
FILES = {"shopping": "online_shopping_10_cats.csv", "hotel": "hotel_reviews.csv", "waimai": "waimai_10k.csv"}


def _mix(corpus: Path, mix: str, per_group: int, seed: int) -> tuple[list[str], list[str]]:
    parts = []
    for source, category in MIXES[mix]:
        frame = pd.read_csv(corpus / FILES[source], dtype=str, keep_default_na=False)
        if category is not None:
            frame = frame[frame["cat"] == category]
        frame = frame[frame["review"].str.strip() != ""]
        parts.append(pd.DataFrame({"text": frame["review"].sample(per_group, random_state=seed).tolist(), "group": category or source}))
    mixed = pd.concat(parts).sample(frac=1.0, random_state=seed)
    return mixed["text"].tolist(), mixed["group"].tolist()


def recovery(args) -> None:
    from sklearn.metrics import normalized_mutual_info_score

    from kesheng.analysis.themes import ThemeParams, find_themes
    from kesheng.models.embedding import make_embedder

    texts, groups = _mix(Path(args.corpus_dir), args.mix, args.per_group, args.seed)
    embedder = make_embedder(args.embeddings, seed=args.seed)
    start = time.perf_counter()
    model = find_themes(texts, embedder, ThemeParams(seed=args.seed, **json.loads(args.params)))
    seconds = time.perf_counter() - start
    assigned = model.assignment >= 0
    truth = np.array(groups)
    nmi = normalized_mutual_info_score(truth[assigned], model.assignment[assigned]) if assigned.any() else float("nan")
    print(f"mix {args.mix}: {len(texts):,} comments from {len(set(groups))} groups, embeddings {model.embedder}, {seconds:.1f} s")
    print(f"themes: {len(model.themes)}; clustered: {assigned.mean():.1%} (target >= 60%); NMI on clustered comments: {nmi:.3f} (target >= 0.5)")
    for theme in model.themes:
        held = pd.Series(truth[model.assignment == theme.id]).value_counts()
        print(f"  {theme.id:>2} {theme.label:<16} {theme.size:>5}  " + ", ".join(f"{g} {n}" for g, n in held.head(3).items()))


def scale(args) -> None:
    corpus = Path(args.corpus_dir)
    texts = []
    for source in FILES.values():
        texts += pd.read_csv(corpus / source, dtype=str, keep_default_na=False)["review"].tolist()
    rng = np.random.default_rng(args.seed)
    picked = rng.choice(len(texts), args.scale, replace=args.scale > len(texts))
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "comments.csv"
        # Untagged rows (every tag 0): the default scope, 其他, is the whole file.
        frame = pd.DataFrame({"review": [texts[i] for i in picked]})
        for tag in ("slow_response", "unresolved", "attitude", "opacity"):
            frame[tag] = 0
            frame[f"{tag}_score"] = 0.01
        frame["sentiment"] = "neutral"
        frame.to_csv(source, index=False)
        run = run_kesheng(["themes", "-i", str(source), "-o", str(Path(tmp) / "themes.json"), "--assignments", str(Path(tmp) / "assigned.csv"),
                           "--embeddings", args.embeddings, "--text-column", "review"], "themes")
        summary = json.loads((Path(tmp) / "themes.json").read_text(encoding="utf-8"))
    load = f"load {run['load_before'][0]:.1f} -> {run['load_after'][0]:.1f}"
    print(f"{args.scale:,} comments, embeddings {args.embeddings}: {run['seconds']:.1f} s wall, peak RSS {run['peak_mb']:,.0f} MB ({load}); "
          f"{len(summary['themes'])} themes, {summary['clustered']:,} comments clustered")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus-dir", required=True, help="the public corpora (../shared/data/pool)")
    parser.add_argument("--mix", choices=sorted(MIXES), default="test")
    parser.add_argument("--per-group", type=int, default=400, help="comments drawn from each group")
    parser.add_argument("--embeddings", choices=["auto", "encoder", "tfidf"], default="auto")
    parser.add_argument("--params", default="{}", help='ThemeParams overrides as JSON, e.g. \'{"reduce_dims": 5}\' (for choosing defaults on --mix dev)')
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=int, default=0, help="time `kesheng themes` on this many comments instead")
    args = parser.parse_args()
    scale(args) if args.scale else recovery(args)


if __name__ == "__main__":
    main()
