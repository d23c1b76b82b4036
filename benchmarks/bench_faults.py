"""Abuse and fault scenarios against a real `kesheng serve` and `kesheng tag`, on 127.0.0.1.

    python benchmarks/bench_faults.py [--workers 2] [--abuse-seconds 20] [--small-requests 10000]

1. `--abusers` clients send maximum-size /v1/tag requests (max_comments x max_text_chars cut to
   the per-request character budget, made of real pool comments) back to back for
   --abuse-seconds; meanwhile --small-clients clients send --small-requests single-comment
   requests. Prints the answers by status (5xx, 200 with the slowest against the deadline, 503
   with and without Retry-After), the small requests' p50/p99, and each worker's resident memory:
   at the start, at its peak, and after --idle-seconds idle.
2. A client sends a maximum-size request and closes its connection 0.3 s later: prints the CPU the
   workers used in the second after the first second (the work should have stopped).
3. `kesheng tag -w 2` on a synthetic CSV, stopped with SIGTERM, then with kill -9 of the parent:
   prints the exit status, the message and how many of its processes were still alive 3 s later.

Before the abuse, --baseline-requests small requests alone give this machine's floor.
Each scenario is bounded in time; the whole run takes about two minutes on 2 cores.
The clients are minimal asyncio HTTP/1.1 clients in processes of their own, so that their
CPU use is theirs and not the server's and the measured latency is the server's plus a socket.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import multiprocessing
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serve import start_server  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SMALL_TEXTS = ["等了很久没人回复", "问题到现在还没解决", "客服态度很好，谢谢", "物流信息一直不更新", "再不退款我就投诉到消协"]


def pool_texts(corpus_dir: str, n: int) -> list[str]:
    from kesheng.training.corpus import read_corpus

    texts = [t for t in read_corpus(corpus_dir).values() if t.strip()]
    random.Random(11).shuffle(texts)
    return texts[:n]


def maximum_comments(pool: list[str], max_comments: int, max_text_chars: int, budget: int) -> list[str]:
    """As many characters as one request may hold: comments of max_text_chars made of real comments."""
    per_comment = min(max_text_chars, max(1, budget // max_comments))
    count = min(max_comments, max(1, budget // per_comment))
    stream = iter(pool * 50)
    comments = []
    for _ in range(count):
        text = ""
        while len(text) < per_comment:
            text += next(stream) + "。"
        comments.append(text[:per_comment])
    return comments


def request_bytes(port: int, comments: list[str]) -> bytes:
    data = json.dumps({"comments": [{"text": t} for t in comments]}, ensure_ascii=False).encode("utf-8")
    head = f"POST /v1/tag HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    return head.encode("ascii") + data


async def _exchange(reader, writer, payload: bytes) -> tuple[int, dict, bytes]:
    writer.write(payload)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower().decode()] = value.strip().decode()
    body = await reader.readexactly(int(headers.get("content-length", 0)))
    return status, headers, body


async def _client(port: int, payload: bytes, keep_going, results: list, honor_retry_after: bool = False) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while keep_going():
            started = time.perf_counter()
            try:
                status, headers, body = await _exchange(reader, writer, payload)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                results.append(("error", time.perf_counter() - started, repr(exc)))
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                continue
            # For a 503: its Retry-After, and why (the worker was busy, or the deadline passed).
            why = ("deadline" if b"KESHENG_REQUEST_DEADLINE_SECONDS" in body else "busy") if status == 503 else None
            results.append((status, time.perf_counter() - started, (headers.get("retry-after"), why)))
            if honor_retry_after and status == 503 and headers.get("retry-after", "").isdigit():
                await asyncio.sleep(int(headers["retry-after"]))
            if headers.get("connection") == "close":
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
    finally:
        writer.close()


def abusers(port: int, payload: bytes, clients: int, seconds: float, honor_retry_after: bool, stop, queue) -> None:
    """Process: `clients` connections sending `payload` back to back until `seconds` passed and `stop` is set."""
    results: list = []
    started = time.monotonic()

    def keep_going() -> bool:
        elapsed = time.monotonic() - started
        return elapsed < seconds or (not stop.is_set() and elapsed < 4 * seconds)

    async def run():
        await asyncio.gather(*(_client(port, payload, keep_going, results, honor_retry_after) for _ in range(clients)))

    asyncio.run(run())
    queue.put(results)


def small_clients(port: int, total: int, clients: int, queue) -> None:
    """Process: `total` single-comment requests over `clients` connections."""
    payloads = [request_bytes(port, [text]) for text in SMALL_TEXTS]
    results: list = []
    counter = iter(range(total))

    def keep_going() -> bool:
        return next(counter, None) is not None

    async def run():
        await asyncio.gather(*(_client(port, payloads[i % len(payloads)], keep_going, results) for i in range(clients)))

    asyncio.run(run())
    queue.put(results)


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))] if values else float("nan")


def worker_processes(server: subprocess.Popen, workers: int) -> list[psutil.Process]:
    root = psutil.Process(server.pid)
    if workers == 1:
        return [root]
    deadline = time.monotonic() + 30
    while True:
        found = [p for p in root.children() if "multiprocessing" in " ".join(p.cmdline()) and "resource_tracker" not in " ".join(p.cmdline())]
        if len(found) >= workers or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def rss_mb(processes: list[psutil.Process]) -> list[float]:
    values = []
    for process in processes:
        try:
            values.append(process.memory_info().rss / 2**20)
        except psutil.Error:
            values.append(float("nan"))
    return values


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def quiet_scenario(args, port: int) -> None:
    """The same small requests with no abuse: this machine's floor for the figures under abuse."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    small = context.Process(target=small_clients, args=(port, args.baseline_requests, args.small_clients, queue))
    small.start()
    results = queue.get()
    small.join()
    ok = [latency for status, latency, _ in results if status == 200]
    print(
        f"quiet       {len(results):,} single-comment requests x {args.small_clients} clients, no abuse: "
        f"p50 {percentile(ok, 50) * 1000:.1f} ms  p99 {percentile(ok, 99) * 1000:.1f} ms  not 200: {len(results) - len(ok)}"
    )


def abuse_scenario(args, port: int, workers: list[psutil.Process], settings: dict, big: bytes) -> None:
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    abuse_queue, small_queue = context.Queue(), context.Queue()
    start_rss = rss_mb(workers)
    peak = list(start_rss)
    abuse = context.Process(target=abusers, args=(port, big, args.abusers, args.abuse_seconds, not args.ignore_retry_after, stop, abuse_queue))
    small = context.Process(target=small_clients, args=(port, args.small_requests, args.small_clients, small_queue))
    started = time.monotonic()
    abuse.start()
    time.sleep(1.0)  # the abuse is under way before the small requests start
    small.start()
    small_results = None
    abuse_results = None
    while abuse_results is None:
        peak = [max(a, b) for a, b in zip(peak, rss_mb(workers))]
        if small_results is None:
            try:
                small_results = small_queue.get(timeout=0.2)
                stop.set()
            except Exception:  # noqa: BLE001 - queue.Empty: not finished yet
                pass
        else:
            try:
                abuse_results = abuse_queue.get(timeout=0.2)
            except Exception:  # noqa: BLE001 - queue.Empty
                pass
    abuse_seconds = time.monotonic() - started
    abuse.join()
    small.join()
    time.sleep(args.idle_seconds)
    idle_rss = rss_mb(workers)

    deadline = settings["request_deadline_seconds"]
    ok = [latency for status, latency, _ in abuse_results if status == 200]
    with_retry = sum(1 for status, _, (retry, _) in abuse_results if status == 503 and retry)
    without_retry = sum(1 for status, _, (retry, _) in abuse_results if status == 503 and not retry)
    past_deadline = sum(1 for status, _, (_, why) in abuse_results if status == 503 and why == "deadline")
    five_xx = sum(1 for status, _, _ in abuse_results if isinstance(status, int) and status >= 500 and status != 503) + without_retry
    other = sorted({str(status) for status, _, _ in abuse_results if status not in (200, 503)})
    print(
        f"abuse       {args.abusers} clients x {settings['chars']:,}-char requests ({settings['comments']} comments) for {abuse_seconds:.1f} s, "
        f"{'resending at once' if args.ignore_retry_after else 'waiting Retry-After'} after a 503: {len(abuse_results)} answers"
    )
    print(
        f"            5xx other than 503+Retry-After: {five_xx}   503 with Retry-After: {with_retry} "
        f"(busy {with_retry - past_deadline}, deadline passed {past_deadline})   other statuses: {other or 'none'}"
    )
    print(
        f"            200: {len(ok)}, slowest {max(ok) if ok else float('nan'):.2f} s, p50 {percentile(ok, 50):.2f} s "
        f"(deadline {deadline:g} s: {'all within' if ok and max(ok) <= deadline else 'NOT all within'})"
    )
    small_ok = [latency for status, latency, _ in small_results if status == 200]
    small_bad = len(small_results) - len(small_ok)
    small_statuses = sorted({str(status) for status, _, _ in small_results if status != 200})
    print(
        f"small       {len(small_results):,} single-comment requests x {args.small_clients} clients during the abuse: "
        f"p50 {percentile(small_ok, 50) * 1000:.1f} ms  p99 {percentile(small_ok, 99) * 1000:.1f} ms  "
        f"max {max(small_ok) * 1000 if small_ok else float('nan'):.1f} ms  not 200: {small_bad}" + (f" ({', '.join(small_statuses)})" if small_bad else "")
    )
    for i, (a, b, c) in enumerate(zip(start_rss, peak, idle_rss)):
        print(f"RSS         worker {i}: start {a:.0f} MB, peak {b:.0f} MB, idle after {args.idle_seconds:g} s {c:.0f} MB ({(c - a) / a * 100:+.1f}%)")


def disconnect_scenario(port: int, workers: list[psutil.Process], big: bytes) -> None:
    time.sleep(1.0)
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(big)
    time.sleep(0.3)
    working = cpu_seconds(workers)
    time.sleep(0.2)
    working = cpu_seconds(workers) - working  # CPU in a 0.2 s window while it tags: the work had started
    sock.close()
    closed = time.monotonic()
    time.sleep(1.0)
    after = cpu_seconds(workers)
    time.sleep(1.0)
    used = cpu_seconds(workers) - after
    print(
        f"disconnect  client closed 0.3 s into a maximum-size request: workers used {working / 0.2:.2f} CPU-s/s while tagging, "
        f"{used:.3f} CPU-s in the second from {time.monotonic() - closed - 1:.0f}+1 s after the close"
    )


def write_tag_input(path: Path, rows: int, pool: list[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text"])
        for i in range(rows):
            writer.writerow([i, pool[i % len(pool)]])


def tag_scenario(work: Path, source: Path, sig: int, model: str | None) -> None:
    output = work / f"out-{sig}.csv"
    command = [sys.executable, "-m", "kesheng", "tag", "-i", str(source), "-o", str(output), "-w", "2", "--chunk-rows", "500", "--no-progress"]
    if model:
        command += ["--model", model]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    parent = psutil.Process(process.pid)
    deadline = time.monotonic() + 60
    family: set[int] = set()
    # Wait until both workers run and a chunk is committed: the interruption then has work to lose.
    progress = work / f".{output.name}.kesheng-partial" / "progress.json"
    while time.monotonic() < deadline and process.poll() is None:
        family |= {p.pid for p in parent.children(recursive=True)}
        if len(family) >= 2 and progress.exists() and json.loads(progress.read_text() or "{}").get("rows_done", 0) > 0:
            break
        time.sleep(0.1)
    family |= {p.pid for p in parent.children(recursive=True)}
    os.kill(process.pid, sig)
    _, stderr = process.communicate(timeout=60)
    time.sleep(3.0)
    alive = []
    for pid in family:
        try:
            child = psutil.Process(pid)
            if child.status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
                child.kill()  # do not leave them behind this benchmark either
        except psutil.NoSuchProcess:
            pass
    message = [line for line in stderr.splitlines() if line.strip()]
    name = signal.Signals(sig).name
    print(
        f"tag {name:<7} exit {process.returncode}, {len(family)} child processes, {len(alive)} alive 3 s later; "
        f"stderr: {message[-1] if message else '(nothing)'}" + (f" (+{len(message) - 1} more lines)" if len(message) > 1 else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model directory (default: the bundled model)")
    parser.add_argument("--corpus-dir", default=str(ROOT.parent / "shared" / "data" / "pool"), help="real comments for the requests")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--abusers", type=int, default=8)
    parser.add_argument("--abuse-seconds", type=float, default=20.0)
    parser.add_argument("--ignore-retry-after", action="store_true", help="abusers resend at once after a 503 (default: they wait Retry-After)")
    parser.add_argument("--small-requests", type=int, default=10_000)
    parser.add_argument("--small-clients", type=int, default=16)
    parser.add_argument("--baseline-requests", type=int, default=2_000, help="small requests without abuse first (0: skip)")
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    parser.add_argument("--tag-rows", type=int, default=60_000)
    parser.add_argument("--skip-tag", action="store_true", help="only the server scenarios")
    args = parser.parse_args()

    from kesheng.serve.api.settings import Settings

    settings = Settings.from_env()
    began = time.monotonic()
    pool = pool_texts(args.corpus_dir, 20_000)
    comments = maximum_comments(pool, settings.max_comments, settings.max_text_chars, settings.max_request_chars)
    work = Path(tempfile.mkdtemp(prefix="kesheng-bench-faults-"))
    server, port = start_server(args.workers, args.model, work / "feedback.sqlite3", work / "server.log", env={"KESHENG_LOG_LEVEL": "WARNING"})
    try:
        workers = worker_processes(server, args.workers)
        big = request_bytes(port, comments)
        info = httpx.get(f"http://127.0.0.1:{port}/v1/model", timeout=10).json()
        print(f"server      kesheng serve --workers {args.workers}; model {info['model_version']}; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}")
        print(
            f"limits      {settings.max_request_chars:,} chars/request, deadline {settings.request_deadline_seconds:g} s, "
            f"{settings.max_pending_chars:,} chars admitted per worker, chunks of {settings.predict_chunk_chars:,} chars"
        )
        # Warm-up: every worker has tagged something before its starting memory is read.
        for _ in range(20):
            httpx.post(f"http://127.0.0.1:{port}/v1/tag", json={"comments": [{"text": SMALL_TEXTS[0]}]}, timeout=10)
        details = {"request_deadline_seconds": settings.request_deadline_seconds, "chars": sum(map(len, comments)), "comments": len(comments)}
        if args.baseline_requests:
            quiet_scenario(args, port)
        abuse_scenario(args, port, workers, details, big)
        disconnect_scenario(port, workers, big)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    if not args.skip_tag:
        source = work / "tag-input.csv"
        write_tag_input(source, args.tag_rows, pool)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            tag_scenario(work, source, sig, args.model)
    print(f"total       {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()
