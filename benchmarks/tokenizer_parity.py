"""jieba-rs (rjieba) against jieba on real comments: how many are segmented differently, how, and
how long each takes, with the domain dictionary loaded in both.

    python benchmarks/tokenizer_parity.py --corpus-dir ../shared/data/pool [--n 30000]

Texts are normalized first, as the models see them.
"""

from __future__ import annotations

import argparse
import time

from bench_baseline import sample_texts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus-dir", default=None, help="the public corpora ($KESHENG_CORPUS_DIR)")
    parser.add_argument("--n", type=int, default=30000, help="comments compared")
    parser.add_argument("--show", type=int, default=5, help="differences printed")
    args = parser.parse_args()
    from kesheng.nlp import WordTokenizer, normalize

    texts = [normalize(text).text for text in sample_texts(args.corpus_dir, args.n, seed=3)]
    cuts, seconds = {}, {}
    for backend in ("jieba", "rjieba"):
        started = time.perf_counter()
        tokenizer = WordTokenizer(backend=backend)
        loaded = time.perf_counter()
        cuts[backend] = [tokenizer.words(text) for text in texts]
        seconds[backend] = (loaded - started, time.perf_counter() - loaded)
    differ = [i for i, (a, b) in enumerate(zip(cuts["jieba"], cuts["rjieba"])) if a != b]
    chars = sum(map(len, texts))
    print(f"{len(texts):,} real comments ({chars:,} characters), HMM off, domain dictionary loaded")
    for backend, (load, cut) in seconds.items():
        print(f"{backend:<7} load {load:5.2f} s   segment {cut:6.2f} s   {len(texts) / cut:>9,.0f} comments/s")
    print(f"segmented differently: {len(differ)} of {len(texts):,} ({len(differ) / len(texts):.3%})")
    for i in differ[: args.show]:
        a = {(w, s, e) for w, s, e in cuts["jieba"][i]}
        b = {(w, s, e) for w, s, e in cuts["rjieba"][i]}
        print(f"  jieba only {sorted(a - b, key=lambda t: t[1])}   rjieba only {sorted(b - a, key=lambda t: t[1])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
