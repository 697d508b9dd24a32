"""Run a serialized engine on torch CUDA buffers, any input shape inside its profile."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...errors import UsageError, VerificationError
from ...parsing import dims_text
from ..base import Backend, Feeds
from .environment import require_tensorrt
from .logger import ErrorWindow, recording_logger
from .profile import ShapeRange, input_shape_problem


class TensorRTBackend(Backend):
    """Runs a serialized engine with the name-based I/O API (TensorRT 10/11) on torch CUDA buffers.

    ``engine`` is the serialized engine (bytes, as :func:`build_engine` returns it) or an
    engine file. Any input shape inside the engine's profile runs: each input's shape is set
    before each run and the outputs are sized from the shapes the context resolves. Feeds
    are cast to each input's engine dtype (fp16 engines may take fp16 inputs); outputs come
    back as float32 numpy arrays in the engine's output order.
    """

    def __init__(
        self,
        engine: bytes | str | os.PathLike[str],
        device: str = "cuda",
        precision: str | None = None,
    ) -> None:
        trt = require_tensorrt()
        self.device = torch.device(device)
        if self.device.type != "cuda":
            raise UsageError(f"TensorRT runs on a CUDA device, not {device!r}")
        serialized, label = _engine_bytes(engine)
        self.logger = recording_logger()
        self._deserialize(trt, serialized, label)
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_names = [
            n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT
        ]
        self.output_names = [
            n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT
        ]
        self.dtypes = {n: _torch_dtype(trt, self.engine.get_tensor_dtype(n), n) for n in names}
        #: input name -> (min, opt, max) it accepts (all three equal for a static input)
        self.input_ranges: dict[str, ShapeRange] = {
            n: self._input_range(n) for n in self.input_names
        }
        self._outputs: dict[str, torch.Tensor] = {}  # reused while an output's shape stays
        if precision is None:  # a guess for engines built elsewhere: fp16 I/O = fp16 engine
            precision = "fp16" if any(d == torch.float16 for d in self.dtypes.values()) else "fp32"
        self.precision = precision
        self.name = f"tensorrt-{precision}"

    def _deserialize(self, trt: Any, serialized: bytes, label: str) -> None:
        """The runtime, engine, execution context and stream, on this backend's device."""
        errors = ErrorWindow(self.logger)
        with torch.cuda.device(self.device):
            self.runtime = trt.Runtime(self.logger)
            self.engine = self.runtime.deserialize_cuda_engine(serialized)
            if self.engine is None:
                raise VerificationError(
                    f"TensorRT {trt.__version__} cannot deserialize {label} (built by "
                    f"another TensorRT version or for another GPU?): {errors.text()}"
                )
            self.context = self.engine.create_execution_context()
            if self.context is None:
                raise VerificationError(
                    f"TensorRT could not create an execution context for {label}: {errors.text()}"
                )
            self.stream = torch.cuda.Stream(device=self.device)

    def _input_range(self, name: str) -> ShapeRange:
        shape = tuple(int(d) for d in self.engine.get_tensor_shape(name))
        if all(d >= 0 for d in shape):
            return shape, shape, shape
        low, opt, high = self.engine.get_tensor_profile_shape(name, 0)  # profile 0: the only one
        return tuple(map(int, low)), tuple(map(int, opt)), tuple(map(int, high))

    def run(self, feeds: Feeds) -> list[np.ndarray]:
        arrays = self._checked_feeds(feeds)
        errors = ErrorWindow(self.logger)
        inputs = []  # kept alive until the stream is synchronized
        with torch.cuda.device(self.device), torch.cuda.stream(self.stream):
            for name, array in arrays.items():
                tensor = (
                    torch.from_numpy(array)
                    .to(device=self.device, dtype=self.dtypes[name])
                    .contiguous()
                )
                if not self.context.set_input_shape(name, tuple(array.shape)):
                    raise UsageError(
                        f"TensorRT refused input {name!r} shape {dims_text(array.shape)}: "
                        f"{errors.text()}"
                    )
                self.context.set_tensor_address(name, tensor.data_ptr())
                inputs.append(tensor)
            outputs = [self._output_buffer(name) for name in self.output_names]
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise VerificationError(
                    f"TensorRT execute_async_v3 failed for {self.name}: {errors.text()}"
                )
            results = [out.float().cpu().numpy() for out in outputs]
        self.stream.synchronize()
        return results

    def _checked_feeds(self, feeds: Feeds) -> dict[str, np.ndarray]:
        """Every engine input as a contiguous array, or UsageError naming what does not fit."""
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise UsageError(
                f"missing engine inputs: {', '.join(missing)}"
                f" (engine inputs: {', '.join(self.input_names)})"
            )
        arrays = {n: np.ascontiguousarray(feeds[n]) for n in self.input_names}
        for name, array in arrays.items():
            problem = input_shape_problem(name, array.shape, self.input_ranges[name])
            if problem:
                raise UsageError(problem)
        return arrays

    def _output_buffer(self, name: str) -> torch.Tensor:
        """A buffer of the shape the context resolved for the input shapes just set."""
        shape = tuple(int(d) for d in self.context.get_tensor_shape(name))
        if any(d < 0 for d in shape):
            raise VerificationError(
                f"TensorRT could not resolve output {name!r}'s shape {dims_text(shape)} from the "
                "input shapes (a data-dependent shape, which this backend does not allocate)"
            )
        buffer = self._outputs.get(name)
        if buffer is None or tuple(buffer.shape) != shape:
            buffer = torch.empty(shape, dtype=self.dtypes[name], device=self.device)
            self._outputs[name] = buffer
        self.context.set_tensor_address(name, buffer.data_ptr())
        return buffer

    def close(self) -> None:
        """Free the buffers and context before the engine before the runtime (TensorRT's order)."""
        for attribute in ("_outputs", "context", "engine", "runtime"):
            if hasattr(self, attribute):
                delattr(self, attribute)

    def __del__(self) -> None:
        self.close()


def _engine_bytes(engine: bytes | str | os.PathLike[str]) -> tuple[bytes, str]:
    """The serialized engine and how to name it in errors."""
    if isinstance(engine, (bytes, bytearray, memoryview)):
        return bytes(engine), "the engine"
    path = Path(engine)
    if not path.is_file():
        raise UsageError(f"engine file not found: {path}")
    return path.read_bytes(), path.name


def _torch_dtype(trt: Any, data_type: Any, tensor_name: str) -> torch.dtype:
    mapping = {
        trt.DataType.FLOAT: torch.float32,
        trt.DataType.HALF: torch.float16,
        trt.DataType.BF16: torch.bfloat16,
        trt.DataType.INT64: torch.int64,
        trt.DataType.INT32: torch.int32,
        trt.DataType.INT8: torch.int8,
        trt.DataType.UINT8: torch.uint8,
        trt.DataType.BOOL: torch.bool,
    }
    if data_type not in mapping:
        raise UsageError(
            f"engine tensor {tensor_name!r} has type {data_type}, which this backend does not feed"
        )
    return mapping[data_type]
