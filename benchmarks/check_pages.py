"""The pages users see, in headless Chromium, with no network but loopback.

    apt-get install chromium        # Debian's package
    python benchmarks/check_pages.py [--screenshots DIR]

1. The API docs: starts `kesheng serve` on a free loopback port, lets Chromium run the page's
   JavaScript, and checks that Swagger UI rendered the operations (POST /v1/tag, ...) from files
   the package ships: a page that loaded its assets from a CDN is blank without internet.
2. The HTML report of `examples/survey.csv` (tagged, grouped by channel and score, trend by
   week, drivers of the score): checks that every section is on the page, that the vendored
   chart library drew every interactive chart (as SVG, with Chinese labels) without a console
   error, that the page embeds its CJK glyphs (it must read the same on a machine without a
   Chinese font), and saves a screenshot to look at.
Prints what it found and exits 1 when something is missing.
"""

from __future__ import annotations

import argparse
import os
import re
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


REPORT_SECTIONS = ("摘要", "需升级处理", "问题类型分布", "其他 里有什么", "满意度驱动因素", "情感分布", "问题共现", "按 channel 分组", "按 score 分组", "趋势", "数据质量")
REPORT_CHARTS = ("problems", "drivers", "sentiment", "cooccurrence", "group_channel", "group_score", "trend")


def _check_report(chromium: str, screenshots: Path | None) -> bool:
    work = Path(tempfile.mkdtemp(prefix="kesheng-report-"))
    try:
        survey = Path(__file__).resolve().parents[1] / "examples" / "survey.csv"
        run = [sys.executable, "-m", "kesheng"]
        subprocess.run([*run, "tag", "-i", str(survey), "-o", str(work / "tagged.csv")], check=True, capture_output=True)
        subprocess.run(
            [*run, "report", "-i", str(work / "tagged.csv"), "-o", str(work / "report.html"), "-g", "channel", "-g", "score", "--date-column", "date", "--period", "W",
             "--score-column", "score", "--max-escalations", "3"],
            check=True, capture_output=True,
        )
        url = (work / "report.html").as_uri()
        profile = ["--user-data-dir=" + str(work / "profile")]
        # Console messages (errors included) go to stderr with --enable-logging; the virtual time lets the charts draw.
        page = subprocess.run(
            [chromium, *CHROMIUM_FLAGS, *profile, "--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000", "--dump-dom", url],
            capture_output=True, text=True, timeout=120,
        )
        dom = page.stdout
        if screenshots:
            _screenshot(chromium, profile, url, screenshots / "report.png", height=2400)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    sections = [s for s in REPORT_SECTIONS if s in dom]
    console = [line for line in page.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    drawn = re.search(r'data-charts-drawn="(\d+)"', dom)
    charts = {name: re.search(rf'data-chart="{name}"[^>]*>(.*?)</div>', dom, re.S) for name in REPORT_CHARTS}
    svg = [name for name, found in charts.items() if found and "<svg" in found.group(1) and re.search(r"[\u4e00-\u9fff]", found.group(1))]
    embedded = '"Kesheng CJK"' in dom and "data:font/woff;base64," in dom
    print(
        f"report: sections {len(sections)} of {len(REPORT_SECTIONS)}; interactive charts drawn {drawn.group(1) if drawn else 0} "
        f"(SVG with Chinese labels: {len(svg)} of {len(REPORT_CHARTS)}); console errors: {len(console)}; CJK font embedded: {embedded}"
    )
    for line in console[:5]:
        print(f"  {line}")
    return len(sections) == len(REPORT_SECTIONS) and len(svg) == len(REPORT_CHARTS) and not console and embedded


def _screenshot(chromium: str, profile: list[str], url: str, target: Path, height: int = 1600) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [chromium, *CHROMIUM_FLAGS, *profile, "--hide-scrollbars", "--virtual-time-budget=15000", f"--window-size=1280,{height}", f"--screenshot={target.resolve()}", url],
        capture_output=True, timeout=120,
    )


if __name__ == "__main__":
    sys.exit(main())
