"""Shared test helpers: the real CLI in a subprocess and the manifests it writes, a user's own
package to export, damaged copies of a file."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
USER_PROJECT = Path(__file__).resolve().parent / "export" / "userproj"

Cli = Callable[..., subprocess.CompletedProcess[str]]


def _command(args: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "attn_export", *args]


def _environment(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONWARNINGS": "ignore", **extra}


def run_cli(
    args: Sequence[str], cwd: Path, timeout: float = 300, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """``python -m attn_export ARGS`` as a user runs it, in ``cwd``."""
    return subprocess.run(
        _command(args),
        cwd=cwd,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def start_cli(args: Sequence[str], cwd: Path, **env: str) -> subprocess.Popen[str]:
    """``run_cli`` without waiting: stdout and stderr are pipes of text; ``env`` adds variables."""
    return subprocess.Popen(
        _command(args),
        cwd=cwd,
        env=_environment(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """``run_cli`` in the test's ``tmp_path``: ``cli("cbam", "--out", "o")``."""

    def _run(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return run_cli(args, cwd=tmp_path, **kwargs)

    return _run


def read_manifest(folder: Path, name: str) -> dict[str, Any]:
    """The manifest ``NAME.json`` an export wrote into ``folder``."""
    manifest: dict[str, Any] = json.loads((folder / f"{name}.json").read_text())
    return manifest


@pytest.fixture
def user_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """``tmp_path`` holding a copy of the user's package ``userproj`` (tests/export/userproj),
    importable in this process as the CLI run in ``tmp_path`` imports it; forgotten afterwards."""
    shutil.copytree(
        USER_PROJECT, tmp_path / "userproj", ignore=shutil.ignore_patterns("__pycache__")
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [n for n in sys.modules if n == "userproj" or n.startswith("userproj.")]:
        del sys.modules[name]


def damaged_copies(
    original: bytes, seed: int, random_blobs: int, truncated: int, flipped: int
) -> list[bytes]:
    """Files a loader must refuse cleanly: random bytes, ``original`` cut short, and
    ``original`` with eight random bytes overwritten (these may still load)."""
    rng = random.Random(seed)
    blobs = [rng.randbytes(rng.randrange(1, 4096)) for _ in range(random_blobs)]
    blobs += [original[: rng.randrange(1, len(original))] for _ in range(truncated)]
    for _ in range(flipped):
        copy = bytearray(original)
        for _ in range(8):
            copy[rng.randrange(len(copy))] = rng.randrange(256)
        blobs.append(bytes(copy))
    return blobs
