"""File tagging benchmark: rows/s end to end and peak memory, by file size and worker count.

    python benchmarks/bench_batch.py --corpus-dir ../shared/data/pool [--rows 1000000] [--workers 1 2] [--sizes 100000]

Generates a survey-like CSV (resp_id, channel, industry, date, text) whose comments are
recombined clauses of real pool comments (1 to 3 clauses from different comments, so that
texts are varied and realistic in length), then runs `kesheng tag -i FILE -o OUT.csv` as a
user would: a fresh process, model loading and writing included. Peak memory is the largest
sum of the resident memory of the command and its worker processes, sampled every 0.2 s.
The load average is printed next to each figure: the machine may be shared.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHANNELS = ["app", "电话", "门店", "网站", "微信"]
CLAUSE_END = re.compile(r"(?<=[，。！？!?,；;])")


def clauses_from_pool(corpus_dir: str) -> dict[str, list[str]]:
    from kesheng.training.corpus import read_corpus, source_of

    by_source: dict[str, list[str]] = {}
    for row_id, text in read_corpus(corpus_dir).items():
        for clause in CLAUSE_END.split(text.strip()):
            if 3 <= len(clause) <= 60:
                by_source.setdefault(source_of(row_id), []).append(clause)
    return by_source


def generate_csv(path: Path, rows: int, corpus_dir: str, seed: int = 7) -> None:
    rng = random.Random(seed)
    by_source = clauses_from_pool(corpus_dir)
    sources = sorted(by_source)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["resp_id", "channel", "industry", "date", "text"])
        for i in range(rows):
            source = sources[i % len(sources)]
            pool = by_source[source]
            text = "" if rng.random() < 0.005 else "".join(rng.choice(pool) for _ in range(rng.randint(1, 3)))
            writer.writerow([f"R{i:07d}", rng.choice(CHANNELS), source, f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}", text])


def _tree_rss_mb(root_pid: int) -> float:
    """Resident memory of a process and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
            rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    total, stack = 0, [root_pid]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total / 2**20


def run_kesheng(args: list[str], what: str) -> dict:
    """Run `kesheng ARGS` in a fresh process as a user would; wall time, CPU time of the command and
    its workers, the peak resident memory of the process tree (sampled every 0.2 s), load average."""
    script = shutil.which("kesheng", path=str(Path(sys.executable).parent))
    command = ([script] if script else [sys.executable, "-m", "kesheng"]) + args
    load_before = os.getloadavg()
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = 0.0
    while process.poll() is None:
        peak = max(peak, _tree_rss_mb(process.pid))
        time.sleep(0.2)
    seconds = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)  # includes the workers, which the command waited for
    cpu_seconds = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    stderr = process.stderr.read()
    if process.returncode != 0:
        raise SystemExit(f"kesheng {what} failed:\n{stderr}")
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "peak_mb": peak, "load_before": load_before, "load_after": os.getloadavg(), "stderr": stderr}


def run_tag(source: Path, output: Path, workers: int) -> dict:
    result = run_kesheng(["tag", "-i", str(source), "-o", str(output), "--workers", str(workers), "--overwrite", "--no-progress"], "tag")
    with open(output, encoding="utf-8", newline="") as handle:
        result["rows"] = sum(1 for _ in csv.reader(handle)) - 1
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus-dir", default=os.environ.get("KESHENG_CORPUS_DIR", str(ROOT.parent / "shared" / "data" / "pool")))
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the main benchmark file")
    parser.add_argument("--sizes", type=int, nargs="*", default=[100_000], help="smaller files run with the most workers, to show memory does not grow with size")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--work-dir", default=None, help="where the generated and tagged files go (default: a temporary directory)")
    args = parser.parse_args()

    work = Path(args.work_dir or tempfile.mkdtemp(prefix="kesheng-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"machine: {os.cpu_count()} CPUs; files in {work}")
    runs = [(args.rows, w) for w in args.workers] + [(n, max(args.workers)) for n in args.sizes]
    for rows in sorted({n for n, _ in runs}):
        source = work / f"survey_{rows}.csv"
        if not source.exists():
            started = time.perf_counter()
            generate_csv(source, rows, args.corpus_dir)
            print(f"generated {source.name}: {rows:,} rows, {source.stat().st_size / 2**20:.0f} MB in {time.perf_counter() - started:.1f}s")
    # rows per CPU-second does not depend on what else the machine runs; rows/s does.
    print(f"{'rows':>10} {'workers':>7} {'seconds':>8} {'rows/s':>8} {'rows/cpu-s':>10} {'peak MB':>8}  load avg (1/5/15 min) before -> after")
    for rows, workers in runs:
        result = run_tag(work / f"survey_{rows}.csv", work / f"tagged_{rows}_{workers}.csv", workers)
        assert result["rows"] == rows, f"wrote {result['rows']} rows of {rows}"
        before = "/".join(f"{x:.2f}" for x in result["load_before"])
        after = "/".join(f"{x:.2f}" for x in result["load_after"])
        per_cpu = rows / result["cpu_seconds"]
        print(f"{rows:>10,} {workers:>7} {result['seconds']:>8.1f} {rows / result['seconds']:>8,.0f} {per_cpu:>10,.0f} {result['peak_mb']:>8.0f}  {before} -> {after}", flush=True)
        (work / f"tagged_{rows}_{workers}.csv").unlink()


if __name__ == "__main__":
    main()
