"""Transformer benchmark: quality next to the baseline, speed (fp32 and int8), memory, size.

    python benchmarks/bench_transformer.py --model /work/models/transformer-e5 --corpus-dir ../shared/data/pool

- quality: the real test split of training/labels/real_labels.jsonl (never used for any
  choice), for the baseline, the transformer's int8 ONNX runtime and its float32 torch module;
- speed: comments/s at batch 1 (one predict call per comment: p50/p95 latency too) and batch 32,
  on real pool comments of 45-80 characters (about 60 on average), after a warm-up;
- fine-tuning time: read from the model's meta.json (the run that produced it; the benchmark
  does not retrain);
- memory: peak RSS of a fresh process that loads the model and tags 1,000 comments;
- size: the model directory on disk.
Each stage runs in its own process, so load times are cold and peak memory is per stage.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LABELS = ROOT / "training" / "labels" / "real_labels.jsonl"


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def comments(corpus_dir: str, n: int, seed: int = 1) -> list[str]:
    from kesheng.training.corpus import read_corpus

    texts = [t for t in read_corpus(corpus_dir).values() if 45 <= len(t.strip()) <= 80]
    random.Random(seed).shuffle(texts)
    return texts[:n]


def load(model: str, runtime: str | None):
    from kesheng.stores.registry import load_model

    loaded = load_model(model or None)
    if runtime:
        loaded.set_runtime(runtime)
    return loaded


def stage_quality(model: str, runtime: str | None, corpus_dir: str) -> dict:
    from kesheng.training.corpus import load_corpus_splits
    from kesheng.training.evaluate import evaluate

    test = load_corpus_splits(LABELS, corpus_dir)["test"]
    loaded = load(model, runtime)
    started = time.perf_counter()
    metrics = evaluate(loaded, test)
    return {
        "n": metrics["n"],
        "macro_f1": metrics["macro_f1"],
        "micro_f1": metrics["micro_f1"],
        "tag_f1": {name: m["f1"] for name, m in metrics["tags"].items()},
        "sentiment_macro_f1": metrics["sentiment"]["macro_f1"],
        "sentiment_accuracy": metrics["sentiment"]["accuracy"],
        "seconds": time.perf_counter() - started,
    }


def stage_speed(model: str, runtime: str | None, corpus_dir: str, batch: int, n: int) -> dict:
    if runtime == "torch":
        import torch

        torch.set_num_threads(2)
    texts = comments(corpus_dir, n + 64)
    warm, texts = texts[:64], texts[64:]
    started = time.perf_counter()
    loaded = load(model, runtime)
    loaded.predict(["预热"])
    load_seconds = time.perf_counter() - started
    loaded.predict(warm)
    latencies = []
    started = time.perf_counter()
    for i in range(0, len(texts), batch):
        t0 = time.perf_counter()
        loaded.predict(texts[i : i + batch])
        latencies.append(time.perf_counter() - t0)
    seconds = time.perf_counter() - started
    result = {
        "n": len(texts),
        "mean_chars": sum(map(len, texts)) / len(texts),
        "comments_per_second": len(texts) / seconds,
        "load_seconds": load_seconds,
        "peak_mb": peak_mb(),
    }
    if batch == 1:
        ordered = sorted(latencies)
        result["p50_ms"] = 1000 * statistics.median(ordered)
        result["p95_ms"] = 1000 * ordered[int(0.95 * (len(ordered) - 1))]
    return result


def stage_memory(model: str, runtime: str | None, corpus_dir: str) -> dict:
    texts = comments(corpus_dir, 1000, seed=3)
    loaded = load(model, runtime)
    loaded.predict(texts)
    return {"peak_mb": peak_mb(), "torch_imported": "torch" in sys.modules}


STAGES = {"quality": stage_quality, "speed": stage_speed, "memory": stage_memory}


def run_stage(name: str, **kwargs) -> dict:
    command = [sys.executable, __file__, "--stage", name, "--stage-args", json.dumps(kwargs)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    out = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"stage {name} {kwargs} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def directory_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file()) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=False, help="transformer model directory")
    parser.add_argument("--baseline", default="", help="baseline model directory (default: the bundled model)")
    parser.add_argument("--corpus-dir", default=os.environ.get("KESHENG_CORPUS_DIR"))
    parser.add_argument("--n", type=int, default=640, help="comments per batch-32 speed run (batch 1 uses a third)")
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--stage-args", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        print(json.dumps(STAGES[args.stage](**json.loads(args.stage_args))))
        return
    if not args.model or not args.corpus_dir:
        parser.error("--model and --corpus-dir (or $KESHENG_CORPUS_DIR) are required")
    model_dir = Path(args.model)
    meta = json.loads((model_dir / "meta.json").read_text(encoding="utf-8"))
    tuning = meta.get("fine_tuning", {})
    print(f"model {meta['model_version']}  base: {meta.get('base_model')}")
    print(f"model directory {directory_mb(model_dir):.1f} MB: " + ", ".join(
        f"{p.name} {p.stat().st_size / 1e6:.1f}" for p in sorted(model_dir.iterdir()) if p.is_file()))
    epochs = tuning.get("history", [])
    train_seconds = sum(e.get("seconds", 0) for e in epochs)
    print(f"fine-tuning (from meta.json): whole training run {meta.get('training_seconds', 0) / 60:.1f} min; "
          f"{len(epochs)} epochs {train_seconds / 60:.1f} min incl. dev evaluation; best epoch {tuning.get('best_epoch')}; "
          f"device {tuning.get('device')}; {meta.get('n_training_texts')} training texts")
    for e in epochs:
        print(f"  epoch {e['epoch']}: loss {e['loss']:.4f}  dev score {e.get('score', float('nan')):.4f}  {e['seconds'] / 60:.1f} min")

    print("\nquality on the real test split (661 comments):")
    rows = [("baseline (tfidf-linear)", args.baseline, None), ("transformer int8 ONNX", str(model_dir), "onnx-int8"), ("transformer fp32 torch", str(model_dir), "torch")]
    quality = {}
    for label, path, runtime in rows:
        quality[label] = q = run_stage("quality", model=path, runtime=runtime, corpus_dir=args.corpus_dir)
        tags = "  ".join(f"{n} {f:.3f}" for n, f in q["tag_f1"].items())
        print(f"  {label:<24} macro-F1 {q['macro_f1']:.3f}  micro-F1 {q['micro_f1']:.3f}  sentiment macro-F1 {q['sentiment_macro_f1']:.3f}"
              f"  accuracy {q['sentiment_accuracy']:.3f}  | {tags}")
    loss = quality["transformer fp32 torch"]["macro_f1"] - quality["transformer int8 ONNX"]["macro_f1"]
    sentiment_loss = quality["transformer fp32 torch"]["sentiment_macro_f1"] - quality["transformer int8 ONNX"]["sentiment_macro_f1"]
    print(f"  int8 vs fp32: tag macro-F1 {-loss * 100:+.1f} points, sentiment macro-F1 {-sentiment_loss * 100:+.1f} points")
    gain = quality["transformer int8 ONNX"]["macro_f1"] - quality["baseline (tfidf-linear)"]["macro_f1"]
    print(f"  transformer (int8) vs baseline: tag macro-F1 {gain * 100:+.1f} points")

    print("\nspeed on real comments of 45-80 characters (2 CPU threads):")
    for label, runtime in (("int8 ONNX", "onnx-int8"), ("fp32 torch", "torch")):
        for batch in (1, 32):
            n = args.n // 3 if batch == 1 else args.n
            s = run_stage("speed", model=str(model_dir), runtime=runtime, corpus_dir=args.corpus_dir, batch=batch, n=n)
            extra = f"  p50 {s['p50_ms']:.1f} ms  p95 {s['p95_ms']:.1f} ms" if batch == 1 else ""
            print(f"  {label:<11} batch {batch:>2}: {s['comments_per_second']:7.1f} comments/s (n={s['n']}, mean {s['mean_chars']:.0f} chars){extra}"
                  f"  load {s['load_seconds']:.1f} s  peak {s['peak_mb']:.0f} MB")
    s = run_stage("speed", model=args.baseline, runtime=None, corpus_dir=args.corpus_dir, batch=32, n=args.n)
    print(f"  baseline    batch 32: {s['comments_per_second']:7.1f} comments/s")

    print("\npeak memory, fresh process loading the model and tagging 1,000 comments:")
    for label, runtime in (("int8 ONNX", "onnx-int8"), ("fp32 torch", "torch")):
        m = run_stage("memory", model=str(model_dir), runtime=runtime, corpus_dir=args.corpus_dir)
        print(f"  {label:<11} {m['peak_mb']:.0f} MB RSS (torch imported: {m['torch_imported']})")


if __name__ == "__main__":
    main()
