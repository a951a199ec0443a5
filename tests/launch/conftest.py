"""Shared by the launch tests: a one-step-per-run space and a folder for the sleepy file's marks."""

from __future__ import annotations

from pathlib import Path

import pytest

# One rank, one batch of 128 per epoch, fp32 only: one training step per run, well under a second.
SPACE = 'world_size = 1\nbatch_size = 128\n\n[precision]\nchoices = ["fp32"]\n'


@pytest.fixture
def space(tmp_path: Path) -> Path:
    path = tmp_path / "space.toml"
    path.write_text(SPACE)
    return path


@pytest.fixture
def marks(tmp_path: Path) -> Path:
    path = tmp_path / "marks"
    path.mkdir()
    return path

