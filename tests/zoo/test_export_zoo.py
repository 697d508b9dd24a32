"""Every registered module exports at its defaults (static inputs, TensorRT-parseable ops, ORT
parity on unseen draws) and with every axis its registry entry declares dynamic."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path

import onnx
import pytest

from attn_export import modules
from attn_export.pipeline import ExportOptions, run_export


@lru_cache(maxsize=1)
def trt_supported_ops() -> frozenset:
    table = json.loads(
        resources.files("attn_export").joinpath("data/trt_onnx_ops.json").read_text()
    )
    return frozenset(op for op, row in table["ops"].items() if row["supported"])


@pytest.mark.parametrize("name", modules.list_modules())
def test_exports_clean_and_matches_onnxruntime(name, tmp_path):
    result = run_export(name, ExportOptions(out_dir=tmp_path), report=lambda line: None)
    manifest = json.loads(result.manifest_path.read_text())
    assert manifest["passed"] is True
    checks = manifest["checks"]
    assert len(checks) == 4 and all(
        c["backend"] == "onnxruntime-cpu" and c["passed"] for c in checks
    )
    assert all(
        isinstance(c["max_abs_err"], float) and c["worst_nrmse"] <= c["max_nrmse"] for c in checks
    )

    model = onnx.load(str(result.onnx_path))
    # Only default-domain ops that TensorRT's parser supports (no com.microsoft fusions, no
    # DFT/Col2Im).
    foreign = sorted(
        {f"{n.domain}::{n.op_type}" for n in model.graph.node if n.domain not in ("", "ai.onnx")}
    )
    assert not foreign, f"non-default-domain ops: {foreign}"
    unsupported = sorted({n.op_type for n in model.graph.node} - trt_supported_ops())
    assert not unsupported, f"ops TensorRT's parser rejects: {unsupported}"
    assert manifest["trt_parser_check"]["passed"] is True
    # Static inputs: every dimension a positive integer, equal to the registry default shape.
    spec = modules.get_spec(name)
    graph_shapes = {
        i.name: [
            d.dim_value if d.HasField("dim_value") else None for d in i.type.tensor_type.shape.dim
        ]
        for i in model.graph.input
    }
    declared = {i["name"]: i["shape"] for i in manifest["inputs"]}
    assert list(declared.values()) == [list(s) for s in spec.shapes]
    assert graph_shapes == {n: s for n, s in declared.items() if n not in manifest["unused_inputs"]}
    assert graph_shapes, "the graph has no inputs"


GOLDEN = json.loads((Path(__file__).parent / "golden" / "index.json").read_text())


@pytest.mark.parametrize("name", modules.list_modules())
def test_exports_with_its_dynamic_axes_and_matches_at_every_profile_corner(name, tmp_path):
    """At the golden set's (smaller, batch 2) arguments and shapes: other sizes than the
    defaults, and fast."""
    spec = modules.get_spec(name)
    entry = GOLDEN[name]
    options = ExportOptions(
        out_dir=tmp_path,
        kwargs=entry["kwargs"],
        shapes=[tuple(s) for s in entry["inputs"]],
        dynamic=spec.dynamic,
        verify_draws=1,
    )
    result = run_export(name, options, report=lambda line: None)
    assert result.passed
    model = onnx.load(str(result.onnx_path))
    symbols = {
        d.dim_param for i in model.graph.input for d in i.type.tensor_type.shape.dim if d.dim_param
    }
    assert symbols == set(spec.dynamic), f"symbolic dims {symbols}, declared {spec.dynamic}"
    points = {d["point"] for d in result.manifest["draws"]["verify"]}
    assert {"opt", "min", "max", "between"} <= points, points
    batches = {d["shapes"][0][0] for d in result.manifest["draws"]["verify"]}
    assert {1, 3, 8} <= batches
