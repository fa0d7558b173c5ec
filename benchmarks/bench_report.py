"""HTML report benchmark: size, write time and headless render time of a large run's report.

Run ``python benchmarks/bench_report.py`` (``--sizes 64,1024``). Per size N it
builds a synthetic N-image `AlignResult` (a 10 %-overlap grid of 512^2 FITS
WCSs with 60-source catalogs, fits, residuals and noise bounds, one image in
50 failed; ``tests/synthetic_run.py``), writes its ``report.html`` and prints:

- the file size and the time to write it;
- the wall time of headless Chromium loading the page and dumping its DOM
  (``--dump-dom``, the full parse, SVG layout and table script), and of a
  1280x1600 screenshot, when a ``chromium`` binary is found.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from aligncore.htmlreport.page import write_html_report
from synthetic_run import synthetic_result

_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
          "--disable-dev-shm-usage"]


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _timed(command: list[str]) -> tuple[float, str]:
    with tempfile.TemporaryDirectory() as profile:
        start = time.perf_counter()
        done = subprocess.run([command[0], f"--user-data-dir={profile}", *command[1:]],
                              capture_output=True,
                              text=True, timeout=600, check=True)
        return time.perf_counter() - start, done.stdout


def bench(n: int, workdir: Path, browser: str | None) -> None:
    """Write and render the report of an ``n``-image synthetic run; print one line."""
    result = synthetic_result(n)
    path = workdir / f"report_{n}.html"
    start = time.perf_counter()
    write_html_report(result, {"config": {}, "versions": {}}, path)
    write = time.perf_counter() - start
    line = f"{n:6d}  {path.stat().st_size / 1e6:8.2f} MB  write {write:6.2f} s"
    if browser is not None:
        dom_s, dom = _timed([browser, *_FLAGS, "--dump-dom", path.as_uri()])
        rows = dom.count("<tr class=")
        shot_s, _ = _timed([browser, *_FLAGS, "--window-size=1280,1600",
                            f"--screenshot={workdir / f'shot_{n}.png'}", path.as_uri()])
        line += f"  dump-dom {dom_s:6.2f} s ({rows} rows)  screenshot {shot_s:6.2f} s"
    print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="16,256,1024", help="comma-separated image counts")
    args = parser.parse_args()
    browser = _chromium()
    if browser is None:
        print("no chromium binary: render times are not measured")
    print("images      size        write         headless render")
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            bench(n, Path(tmp), browser)


if __name__ == "__main__":
    main()
