"""Shared test helpers: run the real CLI in a subprocess."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_cli(args: Sequence[str], cwd: Path, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
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
