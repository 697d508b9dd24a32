"""GPU runners to time beside eager and ONNX Runtime CPU, for the backends this host has."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import onnx


def gpu_functions(
    model: onnx.ModelProto, feeds: dict[str, np.ndarray], workdir: Path
) -> dict[str, Callable[[], object]]:
    """ONNX Runtime CUDA and TensorRT fp32/fp16 runners; engines are built under ``workdir``."""
    import onnxruntime

    from ..backends import OnnxRuntimeBackend
    from ..backends import tensorrt as trt_backend

    functions: dict[str, Callable[[], object]] = {}
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        cuda = OnnxRuntimeBackend(model.SerializeToString(), provider="CUDAExecutionProvider")
        functions["ort-cuda"] = partial(cuda.run, feeds)
    if trt_backend.tensorrt_unavailable_reason() is None:
        from ..fp16 import convert_to_fp16

        graphs = {"fp32": model, "fp16": convert_to_fp16(model, dict(feeds)).model}
        for precision, graph in graphs.items():
            onnx_path = workdir / f"{precision}.onnx"
            onnx_path.write_bytes(graph.SerializeToString())
            engine_path = workdir / f"{precision}.engine"
            trt_backend.build_engine(
                onnx_path, engine_path, precision=precision, timing_cache=workdir / "timing.cache"
            )
            engine = trt_backend.TensorRTBackend(engine_path, precision=precision)
            functions[f"trt-{precision}"] = partial(engine.run, feeds)
    return functions
