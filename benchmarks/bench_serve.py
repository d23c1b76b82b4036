"""Load benchmark of the API: a real `kesheng serve` on 127.0.0.1, driven from this process.

    python benchmarks/bench_serve.py [--model DIR] [--workers 1] [--requests 20000] [--concurrency 16]

Scenarios: single-comment requests from --concurrency clients (keep-alive connections), then
100-comment batches from 1 and from 4 clients. The client is a minimal asyncio HTTP/1.1 client
(a few microseconds per request) so that, on a 2-core machine, the load generator takes as
little CPU from the server as possible. Texts are real pool comments (all sources, mixed).
Prints throughput, latency percentiles, errors and the server's resident memory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def sample_texts(corpus_dir: str | None, n: int, seed: int, max_chars: int) -> list[str]:
    from kesheng.training.corpus import read_corpus

    texts = [t for t in read_corpus(corpus_dir).values() if t.strip() and len(t) <= max_chars]
    random.Random(seed).shuffle(texts)
    return texts[:n]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(workers: int, model: str | None, feedback_db: Path, log: Path, env: dict | None = None) -> tuple[subprocess.Popen, int]:
    """`kesheng serve` on a free loopback port, returned once /v1/ready says 200 (exits after 120 s)."""
    port = free_port()
    command = [sys.executable, "-m", "kesheng", "serve", "--port", str(port), "--workers", str(workers), "--feedback-db", str(feedback_db)]
    if model:
        command += ["--model", model]
    server = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, **(env or {})})
    deadline = time.monotonic() + 120
    while True:
        if server.poll() is not None:
            sys.exit(f"server exited; log: {log}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/ready", timeout=1).status_code == 200:
                return server, port
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            server.terminate()
            sys.exit("server not ready after 120 s")
        time.sleep(0.2)


def process_tree_rss_mb(pid: int) -> float:
    """Resident memory of the server and its worker processes (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    total_kb, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo.extend(children.get(current, []))
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except OSError:
            pass
    return total_kb / 1024


def request_bytes(port: int, comments: list[str]) -> bytes:
    body = json.dumps({"comments": [{"id": str(i), "text": t} for i, t in enumerate(comments)]}, ensure_ascii=False)
    data = body.encode("utf-8")
    head = (
        f"POST /v1/tag HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    )
    return head.encode("ascii") + data


async def client(port: int, payloads: list[bytes], next_index, latencies: list[float], errors: list[str]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while (i := next_index()) is not None:
            started = time.perf_counter()
            try:
                writer.write(payloads[i % len(payloads)])
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                errors.append(repr(exc))
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                continue
            latencies.append(time.perf_counter() - started)
            if status != 200:
                errors.append(f"HTTP {status}")
    finally:
        writer.close()


async def drive(port: int, payloads: list[bytes], total: int, concurrency: int) -> dict:
    counter = iter(range(total))
    latencies: list[float] = []
    errors: list[str] = []
    started = time.perf_counter()
    await asyncio.gather(
        *(client(port, payloads, lambda: next(counter, None), latencies, errors) for _ in range(concurrency))
    )
    seconds = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1000

    return {
        "requests": total,
        "seconds": seconds,
        "rps": total / seconds,
        "p50": pct(50),
        "p95": pct(95),
        "p99": pct(99),
        "max": latencies[-1] * 1000,
        "errors": len(errors),
        "error_kinds": sorted(set(errors))[:5],
    }


def line(name: str, r: dict, comments_per_request: int) -> str:
    return (
        f"{name:<34} {r['requests']:>6} req in {r['seconds']:6.1f} s  {r['rps']:7.0f} req/s "
        f"({r['rps'] * comments_per_request:7.0f} comments/s)  p50 {r['p50']:6.1f} ms  p95 {r['p95']:6.1f} ms  "
        f"p99 {r['p99']:6.1f} ms  max {r['max']:6.1f} ms  errors {r['errors']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model directory (default: the bundled model)")
    parser.add_argument("--corpus-dir", default=str(ROOT.parent / "shared" / "data" / "pool"), help="the pool of real comments")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--requests", type=int, default=20_000, help="single-comment requests")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--batch-requests", type=int, default=300, help="100-comment requests per batch scenario")
    parser.add_argument("--max-chars", type=int, default=300, help="skip longer pool comments (tickets are short)")
    args = parser.parse_args()

    texts = sample_texts(args.corpus_dir, 5000, seed=7, max_chars=args.max_chars)
    logs = tempfile.NamedTemporaryFile(prefix="kesheng-bench-serve-", suffix=".log", delete=False)
    server, port = start_server(args.workers, args.model, Path(tempfile.mkdtemp()) / "feedback.sqlite3", Path(logs.name))
    try:
        info = httpx.get(f"http://127.0.0.1:{port}/v1/model", timeout=10).json()
        print(f"server      kesheng serve --workers {args.workers}; model {info['model_version']} ({info['model_type']})")
        print(f"machine     {os.cpu_count()} CPUs; load average before: {os.getloadavg()[0]:.2f}")
        print(f"texts       {len(texts)} real comments, mean {sum(map(len, texts)) / len(texts):.0f} chars")
        print(f"server RSS  {process_tree_rss_mb(server.pid):.0f} MB after loading")

        singles = [request_bytes(port, [t]) for t in texts]
        asyncio.run(drive(port, singles, 500, args.concurrency))  # warm-up: connections, caches
        result = asyncio.run(drive(port, singles, args.requests, args.concurrency))
        print(line(f"1 comment x {args.concurrency} clients", result, 1))
        if result["error_kinds"]:
            print("            errors:", result["error_kinds"])

        batches = [request_bytes(port, texts[i : i + 100]) for i in range(0, len(texts) - 99, 100)]
        for clients in (1, 4):
            result = asyncio.run(drive(port, batches, args.batch_requests, clients))
            print(line(f"100 comments x {clients} client(s)", result, 100))
        print(f"server RSS  {process_tree_rss_mb(server.pid):.0f} MB after the run (all processes)")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
