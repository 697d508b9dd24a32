"""``attn-export all``: every graph of a pattern, and report.json, report.md and report.png."""

from __future__ import annotations

import json

import torch

from attn_export import modules
from tests.conftest import read_manifest


def test_all_writes_every_graph_and_three_reports(cli, tmp_path):
    run = cli("all", "--pattern", "e*", "--out", "zoo", "--fp16")
    assert run.returncode == 0, run.stdout + run.stderr
    names = modules.list_modules("e*")
    zoo = tmp_path / "zoo"
    for name in names:
        assert (zoo / f"{name}.onnx").exists() and (zoo / f"{name}.json").exists()
    report = json.loads((zoo / "report.json").read_text())
    assert report["summary"]["passed"] == len(names)
    backends = {(r["module"], r["backend"]): r for r in report["rows"]}
    for name in names:
        assert backends[(name, "onnxruntime-cpu")]["status"] == "passed"
        if not torch.cuda.is_available():
            for gpu_backend in ("onnxruntime-cuda", "tensorrt-fp32", "tensorrt-fp16"):
                assert backends[(name, gpu_backend)]["status"] == "not run: no GPU"
        # the fp16 graph's CPU check stands in the TensorRT fp16 row: its verdict and fp32 islands
        kept = len(read_manifest(zoo, name)["fp16"]["fp32_nodes"])
        assert backends[(name, "tensorrt-fp16")]["note"] == (
            "fp16 graph checked on CPU (float16 storage simulated):"
            f" passed, {kept} node(s) kept in fp32"
        )
        assert (zoo / f"{name}.fp16.onnx").exists()
    assert "| onnxruntime-cpu | static | passed |" in (zoo / "report.md").read_text()
    assert (zoo / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
