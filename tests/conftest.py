"""Shared test helpers: run the real CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_cli(
    args: Sequence[str], cwd: Path, timeout: float = 300, **kwargs
) -> subprocess.CompletedProcess:
    """``python -m attn_export ARGS`` as a user runs it, in ``cwd``."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", "attn_export", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


@pytest.fixture
def cli(tmp_path):
    def _run(*args: str, **kwargs) -> subprocess.CompletedProcess:
        return run_cli(args, cwd=tmp_path, **kwargs)

    return _run


def damaged_copies(
    original: bytes, seed: int, random_blobs: int, truncated: int, flipped: int
) -> list:
    """Files a loader must refuse cleanly: random bytes, ``original`` cut short, and
    ``original`` with eight random bytes overwritten (these may still load)."""
    import random

    rng = random.Random(seed)
    blobs = [rng.randbytes(rng.randrange(1, 4096)) for _ in range(random_blobs)]
    blobs += [original[: rng.randrange(1, len(original))] for _ in range(truncated)]
    for _ in range(flipped):
        copy = bytearray(original)
        for _ in range(8):
            copy[rng.randrange(len(copy))] = rng.randrange(256)
        blobs.append(bytes(copy))
    return blobs
