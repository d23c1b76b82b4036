"""The pages users see, in headless Chromium, with no network but loopback.

    apt-get install chromium        # Debian's package
    python benchmarks/check_pages.py [--screenshots DIR]

1. The API docs: starts `kesheng serve` on a free loopback port, lets Chromium run the page's
   JavaScript, and checks that Swagger UI rendered the operations (POST /v1/tag, ...) from files
   the package ships: a page that loaded its assets from a CDN is blank without internet.
2. The HTML report of `examples/survey.csv` (tagged, grouped by channel and score, trend by
   week): checks that every section and chart is on the page, and saves a screenshot to look at
   (the page embeds its CJK glyphs, so it must read the same on a machine without a Chinese font).
Prints what it found and exits 1 when something is missing.
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
    parser.add_argument("--screenshots", type=Path, help="also save PNGs of both pages in this folder")
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
        if args.screenshots:
            _screenshot(args.chromium, profile, url, args.screenshots / "api_docs.png")
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    rendered = "opblock" in dom
    found = [op for op in OPERATIONS if op in dom]
    print(f"{url}: Swagger UI rendered: {rendered}; operations listed: {len(found)} of {len(OPERATIONS)} ({', '.join(found)})")
    report_ok = _check_report(args.chromium, args.screenshots)
    if args.screenshots:
        print(f"screenshots: {args.screenshots}/api_docs.png, {args.screenshots}/report.png")
    return 0 if rendered and len(found) == len(OPERATIONS) and report_ok else 1


REPORT_SECTIONS = ("需升级处理", "问题类型分布", "情感分布", "问题共现", "按 channel 分组", "按 score 分组", "趋势", "数据质量")


def _check_report(chromium: str, screenshots: Path | None) -> bool:
    work = Path(tempfile.mkdtemp(prefix="kesheng-report-"))
    try:
        survey = Path(__file__).resolve().parents[1] / "examples" / "survey.csv"
        run = [sys.executable, "-m", "kesheng"]
        subprocess.run([*run, "tag", "-i", str(survey), "-o", str(work / "tagged.csv")], check=True, capture_output=True)
        subprocess.run(
            [*run, "report", "-i", str(work / "tagged.csv"), "-o", str(work / "report.html"), "-g", "channel", "-g", "score", "--date-column", "date", "--period", "W"],
            check=True, capture_output=True,
        )
        url = (work / "report.html").as_uri()
        profile = ["--user-data-dir=" + str(work / "profile")]
        dom = subprocess.run([chromium, *CHROMIUM_FLAGS, *profile, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
        if screenshots:
            _screenshot(chromium, profile, url, screenshots / "report.png")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    sections = [s for s in REPORT_SECTIONS if s in dom]
    charts = dom.count('src="data:image/png;base64,')
    embedded = '"Kesheng CJK"' in dom and "data:font/woff;base64," in dom
    print(f"report: sections {len(sections)} of {len(REPORT_SECTIONS)}; charts {charts}; CJK font embedded: {embedded}")
    return len(sections) == len(REPORT_SECTIONS) and charts == 6 and embedded


def _screenshot(chromium: str, profile: list[str], url: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [chromium, *CHROMIUM_FLAGS, *profile, "--virtual-time-budget=15000", "--window-size=1280,1600", f"--screenshot={target.resolve()}", url],
        capture_output=True, timeout=120,
    )


if __name__ == "__main__":
    sys.exit(main())
