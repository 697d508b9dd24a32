"""The TensorRT 10.16 operator table shipped in ``attn_export/data/trt_onnx_ops.json``
(``data/NOTES.md`` gives its provenance), and the table's names for ONNX element types."""

from __future__ import annotations

import functools
import importlib.resources
import json
from typing import Any

from onnx import TensorProto

# The domains the parser imports as standard ONNX ops.
DEFAULT_DOMAINS = ("", "ai.onnx")

# ONNX element type -> the table's type name; a type absent here has no TensorRT equivalent.
TABLE_TYPE_NAMES: dict[int, str] = {
    TensorProto.FLOAT: "FP32",
    TensorProto.FLOAT16: "FP16",
    TensorProto.BFLOAT16: "BF16",
    TensorProto.DOUBLE: "DOUBLE",
    TensorProto.INT32: "INT32",
    TensorProto.INT64: "INT64",
    TensorProto.INT8: "INT8",
    TensorProto.UINT8: "UINT8",
    TensorProto.BOOL: "BOOL",
    TensorProto.INT4: "INT4",
    TensorProto.FLOAT8E4M3FN: "FP8",
    TensorProto.FLOAT4E2M1: "FP4",
}


@functools.lru_cache(maxsize=1)
def load_op_table() -> dict[str, Any]:
    """The operator table shipped in the package, parsed once per process."""
    resource = importlib.resources.files("attn_export") / "data" / "trt_onnx_ops.json"
    table: dict[str, Any] = json.loads(resource.read_text(encoding="utf-8"))
    return table


def type_name(elem_type: int | None) -> str:
    """The table's name for an ONNX element type (ONNX's own name where TensorRT has none)."""
    if elem_type is None:
        return "unknown"
    if elem_type in TABLE_TYPE_NAMES:
        return TABLE_TYPE_NAMES[elem_type]
    try:
        return TensorProto.DataType.Name(elem_type)
    except ValueError:  # a number no ONNX version defines (a damaged file)
        return f"undefined type {elem_type}"
