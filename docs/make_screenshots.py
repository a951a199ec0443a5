"""Remake the report's screenshots in docs/images/ from a tiny real study.

Runs `effsearch tune examples/digits_cnn.py` (a few short runs) in a temporary folder, writes its report
with `effsearch dashboard -o report.html`, opens it in Debian's headless chromium through chromedriver
(as tests/report/test_browser.py does) and saves PNGs of its parts, reduced to a palette to stay small.

    python docs/make_screenshots.py                       # a few minutes on 2 cores
    python docs/make_screenshots.py --trials 8 --epochs 3 --keep /tmp/shots-study

Needs selenium (the `test` extra), Pillow, and `apt-get install chromium chromium-driver`
(EFFSEARCH_CHROMIUM and EFFSEARCH_CHROMEDRIVER point at others).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "docs" / "images"
CHROMIUM = os.environ.get("EFFSEARCH_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("EFFSEARCH_CHROMEDRIVER", "/usr/bin/chromedriver")
WIDTH = 1280
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
    # Software WebGL for the parallel-coordinates plot, as in the browser test.
    "--enable-unsafe-swiftshader", f"--window-size={WIDTH},1000",
)
# Each image: a file name, the CSS selector of the part of the page it shows, and whether it starts at the
# page's top (the header, the limits and the front table) rather than at the part itself.
SHOTS = (
    ("report-top.png", "#front-table", True),
    ("report-tradeoffs.png", "div.grid", False),
    ("report-curves.png", "#curves", False),
    ("report-parallel.png", "#parallel", False),
)
# The limits bar stays at the top of the window as one scrolls, and plotly's toolbar shows on hover:
# neither belongs in a picture of one part.
STILL = "#controls { position: static !important; } .modebar-container { display: none !important; }"
MAX_BYTES = 300_000


def effsearch(*args: str, cwd: Path) -> None:
    """Run the effsearch command of this interpreter's environment; stop with its output if it fails."""
    exe = shutil.which("effsearch", path=str(Path(sys.executable).parent)) or shutil.which("effsearch")
    if exe is None:
        sys.exit("effsearch is not installed in this environment: pip install -e '.[test]'")
    r = subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"effsearch {' '.join(args)} failed (exit {r.returncode}):\n{r.stdout}\n{r.stderr}")


def make_report(folder: Path, trials: int, epochs: int, seed: int) -> Path:
    """A tiny study of the digits example in `folder`, and its report."""
    example = str(ROOT / "examples" / "digits_cnn.py")
    effsearch("tune", example, "--trials", str(trials), "--epochs", str(epochs), "--seed", str(seed), cwd=folder)
    effsearch("dashboard", "-o", "report.html", cwd=folder)
    return folder / "report.html"


def open_browser():
    """Headless chromium driven through Debian's chromedriver (never one Selenium Manager fetches)."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        sys.exit("selenium is not installed: pip install -e '.[test]'")
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (Path(path).is_file() and os.access(path, os.X_OK)):
            sys.exit(f"{path} is not installed: apt-get install chromium chromium-driver")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='effsearch-shots-profile-')}")
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


def small_png(image: Image.Image) -> bytes:
    """The picture as a 256-colour palette PNG: plots and tables need no more, and it stays small."""
    from PIL import Image

    image = image.convert("RGB")
    out = io.BytesIO()
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(out, format="PNG", optimize=True)
    return out.getvalue()


def shoot(report: Path, out: Path) -> list[Path]:
    """Save each of SHOTS from the report; returns the files written."""
    from PIL import Image

    drv = open_browser()
    written = []
    try:
        drv.get(report.as_uri())
        deadline = time.monotonic() + 60
        while drv.execute_script("return document.body.dataset.ready") != "true":
            if time.monotonic() > deadline:
                sys.exit("the report's script never finished")
            time.sleep(0.2)
        drv.execute_script(
            "const s = document.createElement('style'); s.textContent = arguments[0]; document.head.append(s);", STILL
        )
        # One window as tall as the page: every part is drawn in place, then cut out of one screenshot.
        height = drv.execute_script("return document.documentElement.scrollHeight")
        drv.set_window_size(WIDTH, height + 200)
        time.sleep(1.5)  # plotly redraws after a resize
        page = Image.open(io.BytesIO(drv.get_screenshot_as_png()))
        scale = page.width / drv.execute_script("return window.innerWidth")
        for name, selector, from_top in SHOTS:
            box = drv.execute_script(
                "const r = document.querySelector(arguments[0]).getBoundingClientRect();"
                "return [r.left + scrollX, r.top + scrollY, r.right + scrollX, r.bottom + scrollY];",
                selector,
            )
            left, top, right, bottom = (round(v * scale) for v in box)
            part = page.crop((0, 0, page.width, bottom + 16) if from_top else (left, top, right, bottom))
            data = small_png(part)
            if len(data) > MAX_BYTES:
                sys.exit(f"{name} would be {len(data):,} bytes, over {MAX_BYTES:,}; shrink the window or the part")
            path = out / name
            path.write_bytes(data)
            written.append(path)
    finally:
        profile = drv.capabilities.get("chrome", {}).get("userDataDir")
        drv.quit()
        if profile:
            shutil.rmtree(profile, ignore_errors=True)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6, help="training runs of the tiny study")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=IMAGES, help="where the PNGs go (default docs/images)")
    parser.add_argument("--keep", type=Path, help="run the study in this folder and keep it")
    parser.add_argument("--report", type=Path, help="shoot this report instead of running a study")
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    if args.report is not None:
        written = shoot(args.report.resolve(), args.out)
    elif args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        written = shoot(make_report(args.keep.resolve(), args.trials, args.epochs, args.seed), args.out)
    else:
        folder = Path(tempfile.mkdtemp(prefix="effsearch-shots-study-"))
        try:
            written = shoot(make_report(folder, args.trials, args.epochs, args.seed), args.out)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    for path in written:
        shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        print(f"{shown}  {path.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
