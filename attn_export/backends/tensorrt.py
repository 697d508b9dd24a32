"""TensorRT: build an engine from an ONNX file (with an engine cache and a timing cache) and run it.

TensorRT is imported inside the functions that need it, so ``import
attn_export.backends.tensorrt`` works on CPU installs; :func:`tensorrt_unavailable_reason`
says why TensorRT cannot be used here. Device buffers and streams come from torch's CUDA
(a CUDA build of torch is what GPU hosts have), so no pycuda/cuda-python is needed.

Precision. Every build is *strongly typed*: the ONNX graph's types decide each layer's
precision. TensorRT 11 builds only strongly typed networks (``BuilderFlag.FP16``/``INT8``/
``OBEY_PRECISION_CONSTRAINTS`` are gone from its bindings, the ``STRONGLY_TYPED`` creation
flag is ignored), and TensorRT 10 gets the ``STRONGLY_TYPED`` creation flag. So
``precision="fp16"`` expects an fp16 ONNX graph (``attn_export.fp16.convert_to_fp16``).
On TensorRT 10 only, ``legacy_fp16_flag=True`` instead builds an fp32 graph weakly typed
with ``BuilderFlag.FP16`` (TensorRT picks fp16 kernels where it likes; deprecated since
10.12 and removed in 11). TF32 is cleared for every build: an fp32 engine must match
fp32 PyTorch, and TF32 rounds matmul/conv inputs to 10 mantissa bits.

Caches. The timing cache file (tactic timings) is loaded before and saved after each build,
so builds of the same layers on the same GPU get faster; it does not change what is
correct. The engine cache stores ``cache_dir/<key>.engine``, where the key hashes everything
that decides the engine's content: the ONNX file's sha256, the TensorRT version, the GPU
name and compute capability, the precision, the build flags and the workspace limit. Any
change there is a different key, so a stale engine is never reused.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..atomic import atomic_write
from ..errors import EnvironmentMissingError, UsageError, VerificationError, first_line
from ..weights import file_sha256
from .base import Backend, Feeds

PathLike = Union[str, os.PathLike]

PRECISIONS = ("fp32", "fp16")
DEFAULT_WORKSPACE_BYTES = 1 << 30
INSTALL_HINT = "pip install 'attn-export[gpu]'"
# Bumped when the cache entry layout or the meaning of a build flag changes.
CACHE_SCHEMA = "attn-export-engine-v1"

# Build flag names recorded in EngineInfo.flags and hashed into the cache key.
FLAG_STRONGLY_TYPED = "strongly_typed"
FLAG_WEAKLY_TYPED_FP16 = "weakly_typed+BuilderFlag.FP16"
FLAG_TF32_OFF = "tf32_off"

# (atol, rtol, min cosine) for an engine's outputs against fp32 PyTorch on the same
# standard-normal inputs (outputs up to ~20 in magnitude). fp32: TF32 is off, so only kernel
# choice differs (summation order and tiling of long reductions, e.g. 512 channels x 9 taps
# or attention over 3136 tokens; TensorRT's own fused exp/erf/sigmoid code): ~1e-5 relative
# in practice, and a wrong layer errs by O(1). fp16: every stored activation and weight
# keeps 11 significant bits (unit roundoff 4.9e-4): relative RMS error ~1e-3 over a block,
# and an element near zero inherits the absolute error of the large values it came from,
# about one fp16 ulp at 16 (0.016); atol 5e-2 is ~3 such ulps. Measured on the zoo with
# random weights (CPU stand-ins): fp16 storage simulated with attn_export.fp16 used at most
# 29% of the fp16 bound (emsa, outputs up to 17), ONNX Runtime fp32 at most 1.1% of the
# fp32 bound. Cosine 0.9999 / 0.999 = relative RMS error <= 1.4% / 4.5%.
TOLERANCES: Dict[str, Tuple[float, float, float]] = {
    "fp32": (1e-3, 1e-3, 0.9999),
    "fp16": (5e-2, 2e-2, 0.999),
}


@dataclass(frozen=True)
class EngineInfo:
    """What was built, how, and whether it came from the engine cache (goes into the manifest)."""

    engine_path: str
    engine_sha256: str
    onnx_sha256: str
    trt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    flags: Tuple[str, ...]
    workspace_bytes: int
    cache_key: str
    cache_hit: bool
    #: seconds spent in TensorRT's builder by this call (0.0 on a cache hit)
    build_seconds: float
    timing_cache: Optional[str]

    def to_dict(self) -> Dict[str, Any]:
        data = dataclasses.asdict(self)
        data["flags"] = list(self.flags)
        return data


def tensorrt_unavailable_reason() -> Optional[str]:
    """None when TensorRT imports and torch sees a CUDA device; otherwise why not, in one line."""
    try:
        import tensorrt  # noqa: F401
    except ModuleNotFoundError as exc:
        if exc.name == "tensorrt":
            return f"tensorrt is not installed ({INSTALL_HINT})"
        return f"tensorrt cannot be imported: {first_line(exc)} ({INSTALL_HINT})"
    except (ImportError, OSError) as exc:  # a wheel without its libnvinfer, a CUDA mismatch, ...
        return f"tensorrt cannot be imported: {first_line(exc)} ({INSTALL_HINT})"
    if torch.version.cuda is None:
        return (
            f"torch {torch.__version__} is a CPU-only build (torch.version.cuda is None); "
            "install a CUDA build of torch"
        )
    if not torch.cuda.is_available():
        return "no CUDA device (torch.cuda.is_available() is False)"
    return None


def require_tensorrt() -> Any:
    """The ``tensorrt`` module, or EnvironmentMissingError saying why it is unusable."""
    reason = tensorrt_unavailable_reason()
    if reason is not None:
        raise EnvironmentMissingError(reason)
    import tensorrt

    return tensorrt


def trt_major_version(trt_version: str) -> int:
    return int(trt_version.split(".")[0])


def check_precision(precision: str, legacy_fp16_flag: bool = False) -> None:
    """Reject a precision/flag combination no TensorRT version builds."""
    if precision not in PRECISIONS:
        raise UsageError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if legacy_fp16_flag and precision != "fp16":
        raise UsageError("legacy_fp16_flag only applies to precision 'fp16'")


def build_flags(trt_major: int, precision: str, legacy_fp16_flag: bool = False) -> Tuple[str, ...]:
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


def engine_cache_key(
    onnx_sha256: str,
    trt_version: str,
    gpu_name: str,
    compute_capability: str,
    precision: str,
    flags: Sequence[str],
    workspace_bytes: int,
) -> str:
    """sha256 over everything that decides an engine's content: equal keys, same engine."""
    identity = {
        "schema": CACHE_SCHEMA,
        "onnx_sha256": onnx_sha256,
        "trt_version": trt_version,
        "gpu_name": gpu_name,
        "compute_capability": compute_capability,
        "precision": precision,
        "flags": sorted(flags),
        "workspace_bytes": int(workspace_bytes),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


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


def build_engine(
    onnx_path: PathLike,
    engine_path: PathLike,
    *,
    precision: str = "fp32",
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
    timing_cache: Optional[PathLike] = None,
    cache_dir: Optional[PathLike] = None,
    legacy_fp16_flag: bool = False,
) -> EngineInfo:
    """Build (or fetch from ``cache_dir``) a serialized engine for ``onnx_path`` at ``engine_path``.

    Raises UsageError for bad arguments or an fp32 graph asked to build as fp16,
    EnvironmentMissingError without TensorRT/CUDA, and VerificationError when the parser
    rejects nodes (every error, with node name and op, in one message) or the build fails.
    """
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    check_precision(precision, legacy_fp16_flag)
    if not isinstance(workspace_bytes, int) or workspace_bytes <= 0:
        raise UsageError(f"workspace_bytes must be a positive integer, not {workspace_bytes!r}")
    if not onnx_path.is_file():
        raise UsageError(f"ONNX file not found: {onnx_path}")
    if precision == "fp16" and not legacy_fp16_flag:
        import onnx

        if not graph_has_float16(onnx.load(str(onnx_path), load_external_data=False)):
            raise UsageError(
                f"{onnx_path.name} has no float16 tensors: precision 'fp16' builds the graph's "
                "own types (strongly typed); convert it first with attn_export.fp16.convert_to_fp16"
            )

    trt = require_tensorrt()
    flags = build_flags(trt_major_version(trt.__version__), precision, legacy_fp16_flag)
    gpu_name, compute_capability = _current_gpu()
    onnx_sha256 = file_sha256(onnx_path)
    key = engine_cache_key(
        onnx_sha256,
        trt.__version__,
        gpu_name,
        compute_capability,
        precision,
        flags,
        workspace_bytes,
    )
    timing_cache_path = Path(timing_cache) if timing_cache is not None else None

    def info(cache_hit: bool, build_seconds: float, engine_sha256: str) -> EngineInfo:
        return EngineInfo(
            engine_path=str(engine_path),
            engine_sha256=engine_sha256,
            onnx_sha256=onnx_sha256,
            trt_version=trt.__version__,
            gpu_name=gpu_name,
            compute_capability=compute_capability,
            precision=precision,
            flags=flags,
            workspace_bytes=workspace_bytes,
            cache_key=key,
            cache_hit=cache_hit,
            build_seconds=build_seconds,
            timing_cache=str(timing_cache_path) if timing_cache_path else None,
        )

    cached_engine = Path(cache_dir) / f"{key}.engine" if cache_dir is not None else None
    cached_sha256 = _valid_cache_entry(cached_engine) if cached_engine else None
    if cached_engine is not None and cached_sha256 is not None:
        if cached_engine.resolve() != engine_path.resolve():
            atomic_write(engine_path, cached_engine.read_bytes())
        return info(cache_hit=True, build_seconds=0.0, engine_sha256=cached_sha256)

    started = time.perf_counter()
    serialized = _build_serialized(trt, onnx_path, flags, workspace_bytes, timing_cache_path)
    build_seconds = time.perf_counter() - started
    atomic_write(engine_path, serialized)
    engine_sha256 = hashlib.sha256(serialized).hexdigest()
    built = info(cache_hit=False, build_seconds=build_seconds, engine_sha256=engine_sha256)
    if cached_engine is not None:
        if cached_engine.resolve() != engine_path.resolve():
            atomic_write(cached_engine, serialized)
        atomic_write(cached_engine.with_suffix(".json"), json.dumps(built.to_dict(), indent=2))
    return built


class TensorRTBackend(Backend):
    """Runs a serialized engine with the name-based I/O API (TensorRT 10/11) on torch CUDA buffers.

    Feeds are cast to each input's engine dtype (fp16 engines may take fp16 inputs);
    outputs come back as float32 numpy arrays in the engine's output order.
    """

    def __init__(
        self, engine_path: PathLike, device: str = "cuda", precision: Optional[str] = None
    ) -> None:
        trt = require_tensorrt()
        self.device = torch.device(device)
        if self.device.type != "cuda":
            raise UsageError(f"TensorRT runs on a CUDA device, not {device!r}")
        engine_path = Path(engine_path)
        if not engine_path.is_file():
            raise UsageError(f"engine file not found: {engine_path}")
        logger = _recording_logger()
        errors_before = len(logger.errors)
        with torch.cuda.device(self.device):
            self.runtime = trt.Runtime(logger)
            self.engine = self.runtime.deserialize_cuda_engine(engine_path.read_bytes())
            if self.engine is None:
                raise VerificationError(
                    f"TensorRT {trt.__version__} cannot deserialize {engine_path.name} (built by "
                    "another TensorRT version or for another GPU?): "
                    f"{_joined(logger.errors[errors_before:])}"
                )
            self.context = self.engine.create_execution_context()
            if self.context is None:
                raise VerificationError(
                    f"TensorRT could not create an execution context for {engine_path.name}: "
                    f"{_joined(logger.errors[errors_before:])}"
                )
            self.stream = torch.cuda.Stream(device=self.device)
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_names = [
            n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT
        ]
        self.output_names = [
            n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT
        ]
        self.dtypes = {n: _torch_dtype(trt, self.engine.get_tensor_dtype(n), n) for n in names}
        self.shapes = {n: tuple(self.engine.get_tensor_shape(n)) for n in names}
        dynamic = [n for n, shape in self.shapes.items() if any(d < 0 for d in shape)]
        if dynamic:
            raise UsageError(
                f"{engine_path.name} has dynamic shapes ({', '.join(dynamic)}); "
                "attn-export builds static engines"
            )
        self.outputs = [
            torch.empty(self.shapes[n], dtype=self.dtypes[n], device=self.device)
            for n in self.output_names
        ]
        for name, tensor in zip(self.output_names, self.outputs, strict=True):
            self.context.set_tensor_address(name, tensor.data_ptr())
        if precision is None:  # a guess for engines built elsewhere: fp16 I/O = fp16 engine
            precision = "fp16" if any(d == torch.float16 for d in self.dtypes.values()) else "fp32"
        self.precision = precision
        self.name = f"tensorrt-{precision}"

    def run(self, feeds: Feeds) -> List[np.ndarray]:
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise UsageError(
                f"missing engine inputs: {', '.join(missing)} "
                f"(engine inputs: {', '.join(self.input_names)})"
            )
        inputs = []  # kept alive until the stream is synchronized
        with torch.cuda.stream(self.stream):
            for name in self.input_names:
                array = np.ascontiguousarray(feeds[name])
                if tuple(array.shape) != self.shapes[name]:
                    raise UsageError(
                        f"input {name!r} has shape {tuple(array.shape)}, "
                        f"the engine expects {self.shapes[name]}"
                    )
                tensor = (
                    torch.from_numpy(array)
                    .to(device=self.device, dtype=self.dtypes[name])
                    .contiguous()
                )
                self.context.set_tensor_address(name, tensor.data_ptr())
                inputs.append(tensor)
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise VerificationError(f"TensorRT execute_async_v3 failed for {self.name}")
            results = [out.float().cpu().numpy() for out in self.outputs]
        self.stream.synchronize()
        return results

    def close(self) -> None:
        """Free the context before the engine before the runtime (TensorRT's required order)."""
        for attribute in ("context", "engine", "runtime"):
            if hasattr(self, attribute):
                delattr(self, attribute)

    def __del__(self) -> None:
        self.close()


def _build_serialized(
    trt: Any,
    onnx_path: Path,
    flags: Tuple[str, ...],
    workspace_bytes: int,
    timing_cache: Optional[Path],
) -> memoryview:
    logger = _recording_logger()
    errors_before = len(logger.errors)
    builder = trt.Builder(logger)
    strongly_typed = FLAG_STRONGLY_TYPED in flags
    if trt_major_version(trt.__version__) >= 11:
        network = builder.create_network()  # always strongly typed in 11.x
    else:
        creation_flags = (
            1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
        )
        network = builder.create_network(creation_flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        raise VerificationError(
            f"TensorRT {trt.__version__} cannot parse {onnx_path.name}: "
            + _parser_errors(parser, logger.errors[errors_before:])
        )

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if FLAG_TF32_OFF in flags:
        config.clear_flag(trt.BuilderFlag.TF32)
    if FLAG_WEAKLY_TYPED_FP16 in flags:
        config.set_flag(trt.BuilderFlag.FP16)
    if timing_cache is not None:
        _load_timing_cache(config, timing_cache)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise VerificationError(
            f"TensorRT {trt.__version__} could not build {onnx_path.name} ({', '.join(flags)}): "
            f"{_joined(logger.errors[errors_before:])}"
        )
    if timing_cache is not None:
        atomic_write(timing_cache, memoryview(config.get_timing_cache().serialize()))
    return memoryview(serialized)


def _load_timing_cache(config: Any, path: Path) -> None:
    """Start from the saved timing cache; an unreadable or foreign one gives way to an empty one."""
    saved = path.read_bytes() if path.is_file() else b""
    try:
        cache = config.create_timing_cache(saved)
        loaded = cache is not None and config.set_timing_cache(cache, ignore_mismatch=False)
    except (RuntimeError, TypeError, ValueError):  # a truncated file must not block the build
        loaded = False
    if not loaded:
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)


def _parser_errors(parser: Any, logged: Sequence[str]) -> str:
    described = []
    for index in range(parser.num_errors):
        error = parser.get_error(index)
        where = f"node {error.node()}" if error.node() >= 0 else "graph"
        if error.node_name():
            where += f" {error.node_name()!r}"
        if error.node_operator():
            where += f" (op {error.node_operator()})"
        described.append(f"{where}: {_first_line(error.desc())} [{error.code()}]")
    if not described:
        return f"the parser gave no error details; TensorRT log: {_joined(logged)}"
    return f"{len(described)} error(s): " + "; ".join(described)


@functools.lru_cache(maxsize=None)
def _recording_logger() -> Any:
    """One TensorRT logger for the process; it keeps ERROR messages for our exception texts.

    Older TensorRT treated the logger as a process-wide singleton, so every builder and
    runtime here shares this one and reads only the messages added during its own call.
    """
    import tensorrt as trt

    class RecordingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: List[str] = []

        def log(self, severity: Any, msg: str) -> None:
            if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                self.errors.append(msg)

    return RecordingLogger()


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


def _current_gpu() -> Tuple[str, str]:
    index = torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(index)
    return torch.cuda.get_device_name(index), f"{major}.{minor}"


def _valid_cache_entry(engine: Path) -> Optional[str]:
    """The cached engine's sha256 if it matches the one recorded beside it, else None (rebuild)."""
    record = engine.with_suffix(".json")
    if not (engine.is_file() and record.is_file()):
        return None
    try:
        recorded = json.loads(record.read_text())["engine_sha256"]
    except (ValueError, KeyError):
        return None
    actual = file_sha256(engine)
    return actual if actual == recorded else None


def _first_line(text: str) -> str:
    lines = str(text).strip().splitlines()
    return lines[0] if lines else ""


def _joined(messages: Sequence[str]) -> str:
    return "; ".join(_first_line(m) for m in messages[-5:]) or "no TensorRT error was logged"
