"""PyTorch -> ONNX with static shapes, then onnxsim, then ``onnx.checker``.

Exporter choice: the TorchScript exporter (``dynamo=False``). It traces the module once at
the static example shapes and emits plain default-domain ops; it needs no onnxscript, is
deterministic (byte-identical files for the same weights) and takes well under a second
per module. The dynamo exporter's minimum opset is 18 and its decompositions change
between torch releases.

Opset: 17 by default. It is the first opset where ``LayerNormalization`` is one node
(NVIDIA's advice for fp16 accuracy in TensorRT), and it lies inside every TensorRT 10.x
parser's documented range (10.0/10.1: 9-20; 10.15+ and 11.x: 9-24). ``--opset`` accepts
the TorchScript exporter's range intersected with TensorRT's (9-20 here: the TorchScript
exporter stops at 20).
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Sequence, Tuple

import onnx
import torch

from .errors import UsageError, VerificationError

DEFAULT_OPSET = 17
MIN_OPSET = 9  # TensorRT's documented floor
MAX_OPSET = 20  # the TorchScript exporter's ceiling in torch 2.x (TensorRT's is 24)

# onnxsim 0.8's `fuse_qkv` pass rewrites attention patterns into com.microsoft::Attention,
# which ONNX Runtime runs but TensorRT's parser rejects (seen on danet).
SKIPPED_ONNXSIM_PASSES = ["fuse_qkv"]


@dataclass
class ExportedGraph:
    model: onnx.ModelProto
    nodes_exported: int
    nodes_simplified: int
    opset: int


def input_names_for(count: int) -> list:
    return [f"input_{i}" for i in range(count)] if count > 1 else ["input"]


def export_to_onnx(
    module: torch.nn.Module,
    example_inputs: Tuple[torch.Tensor, ...],
    input_names: Sequence[str],
    output_names: Sequence[str] = ("output",),
    opset: int = DEFAULT_OPSET,
    simplify: bool = True,
) -> ExportedGraph:
    """Export ``module`` at the static shapes of ``example_inputs``, simplify and check it."""
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise UsageError(f"opset {opset} is outside the supported range {MIN_OPSET}-{MAX_OPSET}")
    module = module.eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(
            module,
            tuple(example_inputs),
            buffer,
            dynamo=False,
            opset_version=opset,
            input_names=list(input_names),
            output_names=list(output_names),
            do_constant_folding=True,
        )
    exported = onnx.load_from_string(buffer.getvalue())
    nodes_exported = len(exported.graph.node)
    model = exported
    if simplify:
        import onnxsim

        model, ok = onnxsim.simplify(exported, skipped_optimizers=SKIPPED_ONNXSIM_PASSES, certify=False)
        if not ok:
            raise VerificationError("onnxsim could not validate the simplified graph")
    onnx.checker.check_model(model, full_check=True)
    return ExportedGraph(model, nodes_exported, len(model.graph.node), opset)
