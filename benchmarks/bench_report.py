"""Report benchmark: seconds and peak memory of `kesheng report` on large tagged files.

    python benchmarks/bench_report.py --corpus-dir ../shared/data/pool [--sizes 200000 1000000]

Tags a sample of survey-like comments (bench_batch's generator: recombined clauses of real pool
comments) with the model once, then writes tagged files of each size by drawing rows from that
sample, each with a channel, a date spread over 12 months and a CSAT score (1-5, lowered by the
row's problems, 1% left blank or text to exercise the data-quality path). Then runs the command a
user would, in a fresh process:

    kesheng report -i tagged.csv -o report.html -o report.json -g channel --date-column date --score-column score

Prints the wall time and the peak resident memory (the command and any children, sampled every
0.2 s) per size: the report reads in chunks and keeps aggregates only, so memory should not grow
with the row count. The load average is printed beside it: the machine may be shared.
"""

from __future__ import annotations

import argparse
import csv
import random
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_batch import CHANNELS, generate_csv, run_kesheng  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def write_tagged(sample: Path, target: Path, rows: int, seed: int = 11) -> None:
    """`rows` tagged rows drawn from the tagged `sample`, with channel, date and score columns."""
    rng = random.Random(seed)
    with open(sample, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        fields = [f for f in reader.fieldnames if f not in ("channel", "date")]
        pool = [[row[f] for f in fields] for row in reader]
    problems = [fields.index(t) for t in ("slow_response", "unresolved", "attitude", "opacity")]
    with open(target, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*fields, "channel", "date", "score"])
        for i in range(rows):
            row = pool[rng.randrange(len(pool))]
            drawn = rng.random()
            if drawn < 0.005:
                score = ""
            elif drawn < 0.01:
                score = "n/a"
            else:
                score = str(max(1, min(5, 5 - sum(int(row[j]) for j in problems) - (rng.random() < 0.3))))
            writer.writerow([*row, rng.choice(CHANNELS), f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}", score])


def run_report(tagged: Path, work: Path) -> dict:
    result = run_kesheng(["report", "-i", str(tagged), "-o", str(work / "report.html"), "-o", str(work / "report.json"), "-g", "channel",
                          "--date-column", "date", "--score-column", "score", "--overwrite"], "report")
    result["stderr"] = result["stderr"].strip().splitlines()[-1]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus-dir", default=None, help="the public corpora ($KESHENG_CORPUS_DIR)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[200_000, 1_000_000])
    parser.add_argument("--sample", type=int, default=20_000, help="distinct comments tagged and drawn from")
    args = parser.parse_args()
    from kesheng.serve.batch import TagFileOptions, tag_file

    work = Path(tempfile.mkdtemp(prefix="kesheng-bench-report-"))
    try:
        generate_csv(work / "sample.csv", args.sample, args.corpus_dir)
        tag_file(None, work / "sample.csv", work / "sample_tagged.csv", TagFileOptions(id_field="resp_id"))
        for size in args.sizes:
            tagged = work / f"tagged_{size}.csv"
            write_tagged(work / "sample_tagged.csv", tagged, size)
            result = run_report(tagged, work)
            megabytes = tagged.stat().st_size / 2**20
            print(
                f"{size:>9,} rows ({megabytes:,.0f} MB CSV): {result['seconds']:6.1f} s, peak RSS {result['peak_mb']:,.0f} MB"
                f"  (load {result['load_before'][0]:.1f} -> {result['load_after'][0]:.1f}; {result['stderr']})"
            )
            tagged.unlink()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
