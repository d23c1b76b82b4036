"""The API docs page as a user sees it, in headless Chromium, with no network but loopback.

    apt-get install chromium        # Debian's package
    python benchmarks/check_docs_page.py [--screenshot docs/api_docs.png]

Starts `kesheng serve` on a free loopback port, lets Chromium run the page's JavaScript, and
checks that Swagger UI rendered the operations (POST /v1/tag, ...) from files the package ships:
a page that loaded its assets from a CDN is blank on a machine without internet. Prints what
it found and exits 1 when something is missing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

OPERATIONS = ("/v1/tag", "/v1/feedback", "/v1/model", "/v1/health", "/v1/ready")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--screenshot", type=Path, help="also save a PNG of the page here")
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    args = parser.parse_args()
    if not args.chromium:
        print("chromium not found: apt-get install chromium", file=sys.stderr)
        return 2
    port = _free_port()
    work = Path(tempfile.mkdtemp(prefix="kesheng-docs-"))
    server = subprocess.Popen(
        [sys.executable, "-m", "kesheng", "serve", "--port", str(port), "--feedback-db", str(work / "feedback.sqlite3")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ},
    )
    url = f"http://127.0.0.1:{port}/docs"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/ready", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    print("the server did not become ready", file=sys.stderr)
                    return 1
                time.sleep(0.2)
        profile = ["--user-data-dir=" + str(work / "profile")]
        dom = subprocess.run(
            [args.chromium, *CHROMIUM_FLAGS, *profile, "--virtual-time-budget=15000", "--dump-dom", url],
            capture_output=True, text=True, timeout=120,
        ).stdout
        if args.screenshot:
            args.screenshot.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                [args.chromium, *CHROMIUM_FLAGS, *profile, "--virtual-time-budget=15000", "--window-size=1280,1400",
                 f"--screenshot={args.screenshot.resolve()}", url],
                capture_output=True, timeout=120,
            )
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    rendered = "opblock" in dom
    found = [op for op in OPERATIONS if op in dom]
    print(f"{url}: Swagger UI rendered: {rendered}; operations listed: {len(found)} of {len(OPERATIONS)} ({', '.join(found)})")
    if args.screenshot:
        print(f"screenshot: {args.screenshot}")
    return 0 if rendered and len(found) == len(OPERATIONS) else 1


if __name__ == "__main__":
    sys.exit(main())
