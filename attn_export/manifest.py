"""The manifest written beside each graph: what was exported, how, and how it verified."""

from __future__ import annotations

import hashlib
import json
import platform
import re
import sys
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .onnx_export import SKIPPED_ONNXSIM_PASSES
from .weights import file_sha256

if TYPE_CHECKING:  # the stage results; imported for types only (pipeline imports this module)
    from .onnx_export import ExportedGraph
    from .options import ExportOptions
    from .pipeline import BuiltModel, EngineStage, Fp16Stage, Fp32Stage, ReferenceRun

_VERSIONED_PACKAGES = (
    "torch",
    "onnx",
    "onnxruntime",
    "onnxruntime-gpu",
    "onnxsim",
    "onnxscript",
    "numpy",
    "tensorrt",
)


def artifact_name(given: str | None, target_name: str, class_name: str) -> str:
    """--name, else the registry name or the class (a factory function names nothing)."""
    return given or target_name or re.sub(r"[^A-Za-z0-9_.-]", "_", class_name)


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {
        "attn_export": __version__,
        "python": platform.python_version(),
    }
    for package in _VERSIONED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def build_manifest(
    built: BuiltModel,
    ref: ReferenceRun,
    fp32: Fp32Stage,
    options: ExportOptions,
    fp16: Fp16Stage | None,
    engines: EngineStage | None,
    timings: dict[str, float],
) -> dict[str, Any]:
    graph_inputs = {i.name for i in fp32.graph.model.graph.input}
    all_checks = [*fp32.checks, *(engines.checks if engines else [])]
    manifest: dict[str, Any] = {
        "module": built.name,
        "source": built.target.source,
        "class": built.class_name,
        "layout": "NHWC" if options.nhwc else "as the module (NCHW for 4-D)",
        "paper": built.target.paper,
        "kwargs": _jsonable(built.kwargs),
        "seed": options.seed,
        "weights": _weights_record(options.weights),
        "redrawn_zero_parameters": list(built.redrawn),
        "inputs": _inputs_record(built),
        # forward arguments the module never reads are not graph inputs
        # (e.g. EMSA's keys with ratio > 1)
        "unused_inputs": [n for n in built.input_names if n not in graph_inputs],
        "outputs": _outputs_record(ref),
        "draws": {
            "export": ref.draws.export.to_dict(),
            "verify": [d.to_dict() for d in ref.draws.verify],
        },
        "warnings": list(fp32.graph.warnings),
        "onnx": _onnx_record(built.name, fp32.graph, fp32.onnx_bytes),
        "tolerance": {"fp32": asdict(fp32.tolerance)},
        "trt_parser_check": fp32.trt_verdict,
        "fp16": fp16.section if fp16 else None,
        "tensorrt": engines.section if engines else None,
        "versions": package_versions(),
        "command": _command_line(),
        "timings_s": timings,
        "checks": [c.to_dict() for c in all_checks],
    }
    manifest["passed"] = (
        all(c.passed for c in all_checks)
        and (fp16 is None or fp16.passed)
        and not (engines is not None and engines.missing)
    )
    return manifest


def _onnx_record(name: str, graph: ExportedGraph, onnx_bytes: bytes) -> dict[str, Any]:
    return {
        "file": f"{name}.onnx",
        "sha256": hashlib.sha256(onnx_bytes).hexdigest(),
        "opset": graph.opset,
        "exporter": graph.exporter,
        "exporter_fallback": graph.fallback or None,
        "simplifier": {"tool": "onnxsim", "skipped_passes": list(SKIPPED_ONNXSIM_PASSES)},
        "nodes_exported": graph.nodes_exported,
        "nodes_simplified": graph.nodes_simplified,
        "op_types": sorted({n.op_type for n in graph.model.graph.node}),
    }


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=False) + "\n").encode()


def _inputs_record(built: BuiltModel) -> list[dict[str, Any]]:
    profiles = {p.name: p for p in built.profiles}
    records = []
    for name, shape in zip(built.input_names, built.shapes):
        record: dict[str, Any] = {"name": name, "shape": list(shape), "dtype": "float32"}
        if name in profiles:
            record["dynamic"] = profiles[name].to_dict()
        records.append(record)
    return records


def _outputs_record(ref: ReferenceRun) -> list[dict[str, Any]]:
    arrays = ref.outputs[ref.draws.export.label]
    return [
        {"name": leaf.name, "path": list(leaf.path), "shape": list(a.shape), "dtype": str(a.dtype)}
        for leaf, a in zip(ref.leaves, arrays)
    ]


def _weights_record(weights: Path | None) -> dict[str, str] | None:
    return {"file": str(weights), "sha256": file_sha256(Path(weights))} if weights else None


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=repr))


def _command_line() -> str:
    return (
        " ".join(["attn-export", *sys.argv[1:]])
        if sys.argv and "attn" in Path(sys.argv[0]).name
        else ""
    )
