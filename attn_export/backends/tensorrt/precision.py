"""Which precision an engine is built in, and the build flags that say how.

Every build is *strongly typed*: the ONNX graph's types decide each layer's precision.
TensorRT 11 builds only strongly typed networks (``BuilderFlag.FP16``/``INT8``/
``OBEY_PRECISION_CONSTRAINTS`` are gone from its bindings, the ``STRONGLY_TYPED`` creation
flag is ignored), and TensorRT 10 gets the ``STRONGLY_TYPED`` creation flag. So
``precision="fp16"`` expects an fp16 ONNX graph (``attn_export.fp16.convert_to_fp16``).
On TensorRT 10 only, ``legacy_fp16_flag=True`` instead builds an fp32 graph weakly typed
with ``BuilderFlag.FP16`` (TensorRT picks fp16 kernels where it likes; deprecated since
10.12 and removed in 11). TF32 is cleared for every build: an fp32 engine must match
fp32 PyTorch, and TF32 rounds matmul/conv inputs to 10 mantissa bits.
"""

from __future__ import annotations

from typing import Any

from ...errors import UsageError

PRECISIONS = ("fp32", "fp16")

# Build flag names recorded in EngineInfo.flags and hashed into the cache key.
FLAG_STRONGLY_TYPED = "strongly_typed"
FLAG_WEAKLY_TYPED_FP16 = "weakly_typed+BuilderFlag.FP16"
FLAG_TF32_OFF = "tf32_off"


def check_precision(precision: str, legacy_fp16_flag: bool = False) -> None:
    """Reject a precision/flag combination no TensorRT version builds."""
    if precision not in PRECISIONS:
        raise UsageError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if legacy_fp16_flag and precision != "fp16":
        raise UsageError("legacy_fp16_flag only applies to precision 'fp16'")


def build_flags(trt_major: int, precision: str, legacy_fp16_flag: bool = False) -> tuple[str, ...]:
    """The build flags for a TensorRT major version and precision (see the module docstring)."""
    check_precision(precision, legacy_fp16_flag)
    if legacy_fp16_flag:
        if trt_major >= 11:
            raise UsageError(
                f"TensorRT {trt_major}.x removed BuilderFlag.FP16; build an fp16 graph instead "
                "(attn_export.fp16.convert_to_fp16) without legacy_fp16_flag"
            )
        return (FLAG_WEAKLY_TYPED_FP16, FLAG_TF32_OFF)
    return (FLAG_STRONGLY_TYPED, FLAG_TF32_OFF)


def graph_has_float16(model: Any) -> bool:
    """True when an ONNX model has float16 weights, tensors or casts (it was converted to fp16)."""
    import onnx

    fp16 = onnx.TensorProto.FLOAT16
    graph = model.graph
    if any(init.data_type == fp16 for init in graph.initializer):
        return True
    typed = list(graph.input) + list(graph.output) + list(graph.value_info)
    if any(v.type.tensor_type.elem_type == fp16 for v in typed):
        return True
    for node in graph.node:
        for attr in node.attribute:
            if node.op_type == "Cast" and attr.name == "to" and attr.i == fp16:
                return True
            if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == fp16:
                return True
    return False
