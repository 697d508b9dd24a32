"""Artifacts appear whole or not at all: interrupted and concurrent runs of the real CLI."""

from __future__ import annotations

import hashlib
import signal
from pathlib import Path

import onnx
import pytest

from tests.conftest import read_manifest, run_cli, start_cli

# A module whose export and simplification take long enough to be interrupted mid-way.
SLOW_MODULE = "self_attention"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _no_temporaries(out: Path) -> None:
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".")]
    assert not leftovers, f"temporary files left behind: {leftovers}"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "kill"])
@pytest.mark.parametrize("after_line", ["torch", "export"])
def test_interrupted_run_keeps_previous_artifacts(tmp_path, sig, after_line):
    out = tmp_path / "out"
    first = run_cli([SLOW_MODULE, "--out", str(out)], cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    before = {p.name: _sha(p) for p in out.iterdir()}

    # Second run with other weights (another seed): interrupt it right after a step line.
    process = start_cli(
        [SLOW_MODULE, "--out", str(out), "--seed", "7"], cwd=tmp_path, PYTHONUNBUFFERED="1"
    )
    assert process.stdout is not None
    for line in process.stdout:
        if line.strip().startswith(after_line):
            process.send_signal(sig)
            break
    stdout, stderr = process.communicate(timeout=120)
    if process.returncode == 0:
        pytest.fail("the run finished before the signal landed; choose a slower module")
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert {p.name: _sha(p) for p in out.iterdir()} == before
    _no_temporaries(out)


def test_concurrent_runs_into_one_folder_do_not_corrupt_each_other(tmp_path):
    out = tmp_path / "out"
    processes = [
        start_cli(["cbam", "--out", str(out), "--seed", str(seed)], cwd=tmp_path)
        for seed in (1, 2, 3)
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr
    manifest = read_manifest(out, "cbam")
    assert manifest["onnx"]["sha256"] == _sha(out / "cbam.onnx"), (
        "manifest and graph come from different runs"
    )
    assert manifest["seed"] in (1, 2, 3)
    onnx.checker.check_model(onnx.load(str(out / "cbam.onnx")))
    _no_temporaries(out)
