"""The README stays a page a newcomer reads first; the documentation site builds without a broken link."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MAX_README_LINES = 250
# The two set-up commands, word for word: CI runs the second (.ci/run), a newcomer the first.
SETUP = (
    "pip install torch==2.13.0 -e '.[examples]' && effsearch tune examples/mnist1d_cnn.py",
    "pip install torch==2.13.0 -e '.[test]' && python -m pytest -q",
)


def _section(text: str, heading: str) -> str:
    """The lines from `heading` up to the next heading of its level."""
    match = re.search(rf"^{re.escape(heading)}\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert match, f"no section {heading!r}"
    return match.group(0)


def test_readme_fits_on_a_page() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, (
        f"README.md has {len(lines)} lines, over {MAX_README_LINES}: move the new material to its page in docs/"
    )


def test_readme_keeps_the_two_setup_commands() -> None:
    setup = _section(README.read_text(encoding="utf-8"), "## Set-up (two commands, Python 3.11)")
    block = re.search(r"```bash\n(.*?)```", setup, flags=re.S)
    assert block, "the set-up section lost its command block"
    assert tuple(block.group(1).splitlines()) == SETUP


def test_ci_runs_the_readme_test_command() -> None:
    assert SETUP[1].split(" && ")[1] in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()


def _slug(heading: str) -> str:
    """A heading's anchor as GitHub and MkDocs both make it: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_readme_says_where_the_docs_are() -> None:
    text = README.read_text(encoding="utf-8")
    assert "pip install -e '.[docs]' && mkdocs serve" in text
    for page, anchor in re.findall(r"\]\((docs/[^)#]+)(?:#([^)]+))?\)", text):
        assert (ROOT / page).is_file(), f"README links to {page}, which does not exist"
        if anchor and page.endswith(".md"):
            headings = re.findall(r"^#+ (.+)$", (ROOT / page).read_text(encoding="utf-8"), flags=re.M)
            assert anchor in {_slug(h) for h in headings}, f"README links to {page}#{anchor}, a heading it lacks"


def test_docs_home_has_the_readme_setup() -> None:
    heading = "## Set-up (two commands, Python 3.11)"
    home = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    assert _section(home, heading) == _section(README.read_text(encoding="utf-8"), heading)


def test_screenshots_are_small() -> None:
    images = sorted((ROOT / "docs" / "images").glob("*.png"))
    assert images, "docs/images/ holds no screenshot of the report"
    for image in images:
        assert image.stat().st_size < 300_000, f"{image.name} is {image.stat().st_size:,} bytes"


def test_mkdocs_build_is_strict_clean(tmp_path: Path) -> None:
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mkdocstrings_handlers") is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[docs]'); CI installs it")
    r = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert r.returncode == 0, r.stderr[-4000:]
    assert (tmp_path / "site" / "api" / "index.html").is_file()
