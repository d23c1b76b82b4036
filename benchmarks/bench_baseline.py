"""Baseline benchmark: training time, model size, load time, predict throughput, peak memory.

    python benchmarks/bench_baseline.py [--corpus-dir ../shared/data/pool] [--model DIR]

Texts are real pool comments (all four sources, mixed). Training labels for the 20,000-comment
timing run are the given model's own predictions: only the time is measured there, not quality.
Each stage runs in its own process so that load time is cold and peak memory is per stage.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def sample_texts(corpus_dir: str, n: int, seed: int) -> list[str]:
    from kesheng.training.corpus import read_corpus

    texts = [t for t in read_corpus(corpus_dir).values() if t.strip()]
    random.Random(seed).shuffle(texts)
    return texts[:n]


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stage_load(model: str) -> dict:
    started = time.perf_counter()
    from kesheng.stores.registry import load_model

    loaded = load_model(model or None)
    loaded.predict(["预热"])
    return {"load_seconds": time.perf_counter() - started, "peak_mb": peak_mb()}


def stage_predict(model: str, corpus_dir: str, n: int) -> dict:
    from kesheng.stores.registry import load_model

    texts = sample_texts(corpus_dir, n, seed=1)
    loaded = load_model(model or None)
    loaded.predict(texts[:50])
    started = time.perf_counter()
    predictions = loaded.predict(texts)
    seconds = time.perf_counter() - started
    assert len(predictions) == len(texts)
    return {
        "n": len(texts),
        "mean_chars": sum(map(len, texts)) / len(texts),
        "seconds": seconds,
        "comments_per_second": len(texts) / seconds,
        "peak_mb": peak_mb(),
    }


def stage_train(model: str, corpus_dir: str, n: int) -> dict:
    from kesheng.stores.registry import load_model
    from kesheng.training.config import TrainConfig
    from kesheng.training.data import dedupe_key
    from kesheng.training.train import train

    # Near-identical texts would get different teacher labels and be rejected as conflicts.
    unique: dict[str, str] = {}
    for text in sample_texts(corpus_dir, n + n // 5, seed=2):
        unique.setdefault(dedupe_key(text), text)
    texts = list(unique.values())[:n]
    teacher = load_model(model or None)
    names = teacher.taxonomy_.names
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "train.jsonl"
        with open(data, "w", encoding="utf-8") as handle:
            for i, (text, p) in enumerate(zip(texts, teacher.predict(texts))):
                row = {"id": f"b{i}", "text": text, "sentiment": p.sentiment, **{t: int(t in p.tags) for t in names}}
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        del teacher
        started = time.perf_counter()
        result = train(TrainConfig(train_files=[str(data)]), Path(tmp) / "model")
        seconds = time.perf_counter() - started
        size = sum(f.stat().st_size for f in (Path(tmp) / "model").iterdir())
    return {"n": len(texts), "train_seconds": seconds, "model_dir_mb": size / 2**20,
            "n_features": len(result.model.featurizer_.vocabulary_), "peak_mb": peak_mb()}


def run_stage(name: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--stage", name, "--corpus-dir", args.corpus_dir, "--model", args.model or "",
               "--n-predict", str(args.n_predict), "--n-train", str(args.n_train)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"stage {name} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus-dir", default=str(ROOT.parent / "shared" / "data" / "pool"))
    parser.add_argument("--model", default="", help="model directory (default: the bundled model)")
    parser.add_argument("--n-predict", type=int, default=10_000)
    parser.add_argument("--n-train", type=int, default=20_000)
    parser.add_argument("--stage", choices=["load", "predict", "train"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        result = {"load": lambda: stage_load(args.model),
                  "predict": lambda: stage_predict(args.model, args.corpus_dir, args.n_predict),
                  "train": lambda: stage_train(args.model, args.corpus_dir, args.n_train)}[args.stage]()
        print(json.dumps(result))
        return
    from kesheng.stores.registry import resolve_model

    model_dir = Path(args.model) if args.model else resolve_model()
    size = sum(f.stat().st_size for f in model_dir.iterdir()) / 2**20
    load = min((run_stage("load", args) for _ in range(3)), key=lambda r: r["load_seconds"])
    predict = run_stage("predict", args)
    train = run_stage("train", args)
    print(f"model directory        {model_dir} ({size:.1f} MB)")
    print(f"load (cold process)    {load['load_seconds']:.2f} s   (best of 3; peak RSS {load['peak_mb']:.0f} MB)")
    print(f"predict                {predict['comments_per_second']:,.0f} comments/s on {predict['n']:,} real comments "
          f"(mean {predict['mean_chars']:.0f} chars, {predict['seconds']:.2f} s); peak RSS {predict['peak_mb']:.0f} MB")
    print(f"train                  {train['train_seconds']:.1f} s on {train['n']:,} comments "
          f"(split, fit, threshold tuning, refit, test, save); {train['n_features']:,} features; "
          f"model dir {train['model_dir_mb']:.1f} MB; peak RSS {train['peak_mb']:.0f} MB")


if __name__ == "__main__":
    main()
