"""Reading the model to check: a ModelProto as it is, a path without its weights' data; any
file that is not a readable ONNX model is a usage error."""

from __future__ import annotations

from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from ..errors import UsageError


def load_model(model: onnx.ModelProto | str | Path) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        proto, label = model, "model"
    else:
        path = Path(model)
        label = str(path)
        if not path.is_file():
            raise UsageError(f"{path}: no such ONNX file")
        try:
            # Weights are not needed: external tensors count as constants of unknown value.
            proto = onnx.load(str(path), load_external_data=False)
        except (DecodeError, OSError) as exc:
            reason = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise UsageError(f"{path}: not a readable ONNX model ({reason})") from None
    if not proto.ir_version or not proto.HasField("graph"):
        raise UsageError(f"{label}: not an ONNX model (no IR version or no graph)")
    if not _names_are_text(proto.graph):
        # ONNX strings are proto2 fields: damaged bytes load, as bytes instead of str
        raise UsageError(f"{label}: not a readable ONNX model (names that are not UTF-8 text)")
    return proto


def _names_are_text(graph: onnx.GraphProto) -> bool:
    """Every name, op type and domain in the graph (and its subgraphs) decoded to str."""
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        if not isinstance(value.name, str):
            return False
    if not all(isinstance(init.name, str) for init in graph.initializer):
        return False
    for node in graph.node:
        texts = [node.name, node.op_type, node.domain, *node.input, *node.output]
        if not all(isinstance(text, str) for text in texts):
            return False
        for attribute in node.attribute:
            if not isinstance(attribute.name, str):
                return False
            subgraphs = ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs)
            if not all(_names_are_text(sub) for sub in subgraphs):
                return False
    return True
