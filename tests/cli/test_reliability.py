"""Interrupted runs, concurrent runs and reproducible artifacts, with the real CLI."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import run_cli

# A module whose export and simplification take long enough to be interrupted mid-way.
SLOW_MODULE = "self_attention"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _assert_consistent_pair(out: Path, name: str) -> dict:
    manifest = json.loads((out / f"{name}.json").read_text())
    assert manifest["onnx"]["sha256"] == _sha(out / f"{name}.onnx"), (
        "manifest and graph come from different runs"
    )
    return manifest


def _no_temporaries(out: Path) -> None:
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".")]
    assert not leftovers, f"temporary files left behind: {leftovers}"


def test_same_module_same_weights_gives_byte_identical_onnx(tmp_path):
    for folder in ("a", "b"):
        run = run_cli(["cbam", "--out", folder], cwd=tmp_path)
        assert run.returncode == 0, run.stderr
    first, second = (json.loads((tmp_path / f / "cbam.json").read_text()) for f in ("a", "b"))
    assert (tmp_path / "a" / "cbam.onnx").read_bytes() == (
        tmp_path / "b" / "cbam.onnx"
    ).read_bytes()
    assert first["onnx"]["sha256"] == second["onnx"]["sha256"]
    # The manifest holds what reproduces the file: module, kwargs, seed, opset, versions.
    for key in ("module", "kwargs", "seed", "inputs", "versions"):
        assert first[key] == second[key]
    other_seed = run_cli(["cbam", "--out", "c", "--seed", "1"], cwd=tmp_path)
    assert other_seed.returncode == 0
    assert (
        json.loads((tmp_path / "c" / "cbam.json").read_text())["onnx"]["sha256"]
        != first["onnx"]["sha256"]
    )


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "kill"])
@pytest.mark.parametrize("after_line", ["torch", "export"])
def test_interrupted_run_keeps_previous_artifacts(tmp_path, sig, after_line):
    out = tmp_path / "out"
    first = run_cli([SLOW_MODULE, "--out", str(out)], cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    before = {p.name: _sha(p) for p in out.iterdir()}

    # Second run with other weights (another seed): interrupt it right after a step line.
    process = subprocess.Popen(
        [sys.executable, "-m", "attn_export", SLOW_MODULE, "--out", str(out), "--seed", "7"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONWARNINGS": "ignore"},
    )
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
        subprocess.Popen(
            [sys.executable, "-m", "attn_export", "cbam", "--out", str(out), "--seed", str(seed)],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (1, 2, 3)
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr
    manifest = _assert_consistent_pair(out, "cbam")
    assert manifest["seed"] in (1, 2, 3)
    import onnx

    onnx.checker.check_model(onnx.load(str(out / "cbam.onnx")))
    _no_temporaries(out)
