"""TensorRT: build an engine from an ONNX graph (with an engine cache and a timing cache) and run it.

TensorRT is imported inside the functions that need it, so ``import
attn_export.backends.tensorrt`` works on CPU installs; :func:`tensorrt_unavailable_reason`
says why TensorRT cannot be used here. Device buffers and streams come from torch's CUDA
(a CUDA build of torch is what GPU hosts have), so no pycuda/cuda-python is needed.

Nothing is written but the caches: :func:`build_engine` returns the serialized engine as
bytes (a :class:`BuiltEngine`), :class:`TensorRTBackend` runs bytes or a file, and the
caller writes the artifact once everything verified.

Precision. Every build is *strongly typed*: the ONNX graph's types decide each layer's
precision. TensorRT 11 builds only strongly typed networks (``BuilderFlag.FP16``/``INT8``/
``OBEY_PRECISION_CONSTRAINTS`` are gone from its bindings, the ``STRONGLY_TYPED`` creation
flag is ignored), and TensorRT 10 gets the ``STRONGLY_TYPED`` creation flag. So
``precision="fp16"`` expects an fp16 ONNX graph (``attn_export.fp16.convert_to_fp16``).
On TensorRT 10 only, ``legacy_fp16_flag=True`` instead builds an fp32 graph weakly typed
with ``BuilderFlag.FP16`` (TensorRT picks fp16 kernels where it likes; deprecated since
10.12 and removed in 11). TF32 is cleared for every build: an fp32 engine must match
fp32 PyTorch, and TF32 rounds matmul/conv inputs to 10 mantissa bits.

Dynamic shapes. A graph input with symbolic dims (``dim_param``, or no size at all) becomes
a TensorRT input with -1 dims, and the builder needs one optimization profile that gives
every such input its (min, opt, max) shapes; kernels are tuned for opt and valid anywhere
in between. :func:`resolve_profile` checks a profile against the graph before TensorRT is
touched. At run time the backend sets each input's shape (``set_input_shape``) before each
run and sizes the outputs from the shapes the context resolves; a shape outside the
profile is refused in one line naming the input, the shape and the range.

Caches. The timing cache file (tactic timings) is loaded before and saved after each build,
so builds of the same layers on the same GPU get faster; it does not change what is
correct. The engine cache stores ``cache_dir/<key>.engine``, where the key hashes everything
that decides the engine's content: the ONNX graph's sha256, the TensorRT version, the GPU
name and compute capability, the precision, the build flags, the workspace limit and the
profile. Any change there is a different key, so a stale engine is never reused.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Union

import numpy as np
import torch

from ..atomic import atomic_write
from ..errors import EnvironmentMissingError, UsageError, VerificationError, first_line
from .base import Backend, Feeds

PathLike = Union[str, os.PathLike]
Shape = tuple[int, ...]
#: (min, opt, max) shapes of one input
ShapeRange = tuple[Shape, Shape, Shape]
#: input name -> (min, opt, max)
Profile = Mapping[str, ShapeRange]
#: a graph input's dims as ONNX declares them: a size, a symbol, or None (unknown)
GraphDims = Sequence[int | str | None]

PRECISIONS = ("fp32", "fp16")
DEFAULT_WORKSPACE_BYTES = 1 << 30
INSTALL_HINT = "pip install 'attn-export[gpu]'"
# Bumped when the cache entry layout or the meaning of a build flag changes.
CACHE_SCHEMA = "attn-export-engine-v2"
PROFILE_SELECTORS = ("min", "opt", "max")

# Build flag names recorded in EngineInfo.flags and hashed into the cache key.
FLAG_STRONGLY_TYPED = "strongly_typed"
FLAG_WEAKLY_TYPED_FP16 = "weakly_typed+BuilderFlag.FP16"
FLAG_TF32_OFF = "tf32_off"


@dataclass(frozen=True)
class EngineInfo:
    """What was built, how, and whether it came from the engine cache (goes into the manifest)."""

    engine_sha256: str
    onnx_sha256: str
    trt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    flags: tuple[str, ...]
    workspace_bytes: int
    cache_key: str
    cache_hit: bool
    #: seconds spent in TensorRT's builder by this call (0.0 on a cache hit)
    build_seconds: float
    timing_cache: str | None
    #: the optimization profile of the graph's dynamic inputs; None for a static graph
    profile: dict[str, ShapeRange] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["flags"] = list(self.flags)
        data["profile"] = profile_to_json(self.profile)
        return data


class BuiltEngine(NamedTuple):
    """A serialized engine and how it was built; unpacks as ``engine, info``."""

    engine: bytes
    info: EngineInfo


def tensorrt_unavailable_reason() -> str | None:
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


def engine_cache_key(
    onnx_sha256: str,
    trt_version: str,
    gpu_name: str,
    compute_capability: str,
    precision: str,
    flags: Sequence[str],
    workspace_bytes: int,
    profile: Profile | None = None,
) -> str:
    """sha256 over everything that decides an engine's content: equal keys, same engine.

    ``profile`` is the normalized one :func:`resolve_profile` returns (None: static graph).
    """
    identity = {
        "schema": CACHE_SCHEMA,
        "onnx_sha256": onnx_sha256,
        "trt_version": trt_version,
        "gpu_name": gpu_name,
        "compute_capability": compute_capability,
        "precision": precision,
        "flags": sorted(flags),
        "workspace_bytes": int(workspace_bytes),
        "profile": profile_to_json(profile),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


# ------------------------------------------------------------------------------------------
# Optimization profiles (pure Python: checked before TensorRT is imported)
# ------------------------------------------------------------------------------------------
def profile_to_json(profile: Profile | None) -> dict[str, dict[str, list[int]]] | None:
    """``{input: {"min": [...], "opt": [...], "max": [...]}}`` sorted by input; None stays None."""
    if not profile:
        return None
    return {
        name: {key: [int(d) for d in shape] for key, shape in zip(PROFILE_SELECTORS, ranges)}
        for name, ranges in sorted(profile.items())
    }


def _shape_text(dims: Sequence[Any]) -> str:
    return (
        "("
        + ", ".join("?" if d is None else str(d) for d in dims)
        + (",)" if len(dims) == 1 else ")")
    )


def _is_dynamic(dims: GraphDims | None) -> bool:
    return dims is None or any(not isinstance(d, int) or d <= 0 for d in dims)


def _profile_entry(name: str, entry: Any, dims: GraphDims | None) -> ShapeRange:
    """One input's (min, opt, max), checked against itself and the graph's dims."""
    if not isinstance(entry, (list, tuple)) or len(entry) != 3:
        raise UsageError(
            f"profile for input {name!r} must be (min, opt, max) shapes, not {entry!r}"
        )
    shapes = []
    for label, shape in zip(PROFILE_SELECTORS, entry):
        if not isinstance(shape, (list, tuple)) or not all(
            isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0 for d in shape
        ):
            raise UsageError(
                f"profile {label} shape for input {name!r} must be positive integers, not {shape!r}"
            )
        shapes.append(tuple(int(d) for d in shape))
    low, opt, high = shapes
    if dims is not None:
        for label, shape in zip(PROFILE_SELECTORS, shapes):
            if len(shape) != len(dims):
                raise UsageError(
                    f"profile {label} shape {_shape_text(shape)} for input {name!r} has rank "
                    f"{len(shape)}; the graph's input is {_shape_text(dims)}"
                )
    if len({len(s) for s in shapes}) != 1:
        raise UsageError(
            f"profile shapes for input {name!r} differ in rank: {', '.join(map(_shape_text, shapes))}"
        )
    for axis, (a, b, c) in enumerate(zip(low, opt, high)):
        if not a <= b <= c:
            raise UsageError(
                f"profile for input {name!r} needs min <= opt <= max in every dim; dim {axis} has "
                f"{a}, {b}, {c} (min {_shape_text(low)}, opt {_shape_text(opt)}, max {_shape_text(high)})"
            )
        fixed = dims[axis] if dims is not None else None
        if isinstance(fixed, int) and fixed > 0 and not a == c == fixed:
            raise UsageError(
                f"profile for input {name!r} sets dim {axis} to {a}..{c}, but the graph fixes it at "
                f"{fixed} (input {_shape_text(dims)})"
            )
    return low, opt, high


def resolve_profile(
    inputs: Mapping[str, GraphDims | None], profile: Profile | None
) -> dict[str, ShapeRange] | None:
    """The profile to build with: one (min, opt, max) per graph input with dynamic dims.

    ``inputs`` maps each graph input to its ONNX dims (``attn_export.trt_check.graph_input_dims``).
    Raises UsageError, in one line naming the input, when a dynamic input has no entry, an
    entry names no graph input, shapes are malformed, min <= opt <= max fails in some dim, or
    a static dim of the graph is given another size. Entries for static inputs are checked
    and dropped; None when the graph has no dynamic input.
    """
    profile = dict(profile or {})
    unknown = [name for name in profile if name not in inputs]
    if unknown:
        raise UsageError(
            f"profile names {unknown[0]!r}, which is not a graph input (inputs: {', '.join(inputs) or 'none'})"
        )
    resolved = {}
    for name, dims in inputs.items():
        if name in profile:
            entry = _profile_entry(name, profile[name], dims)
            if _is_dynamic(dims):
                resolved[name] = entry
        elif _is_dynamic(dims):
            where = "unknown rank" if dims is None else _shape_text(dims)
            raise UsageError(
                f"input {name!r} has dynamic dims {where}: building an engine for it needs a profile "
                f"with its (min, opt, max) shapes"
            )
    return resolved or None


def input_shape_problem(name: str, shape: Sequence[int], allowed: ShapeRange) -> str | None:
    """Why an engine built with ``allowed`` (min, opt, max) cannot take ``shape``, or None."""
    low, _, high = allowed
    shape = tuple(int(d) for d in shape)
    if len(shape) == len(low) and all(a <= d <= c for a, d, c in zip(low, shape, high)):
        return None
    if low == high:
        return (
            f"input {name!r} has shape {_shape_text(shape)}, the engine expects {_shape_text(low)}"
        )
    return (
        f"input {name!r} shape {_shape_text(shape)} is outside the engine's profile: "
        f"min {_shape_text(low)}, max {_shape_text(high)}"
    )


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


# ------------------------------------------------------------------------------------------
# Build
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _OnnxSource:
    """The graph to parse: its bytes, and its file when given one (external weights resolve)."""

    data: bytes
    path: Path | None
    label: str


def _read_onnx(
    onnx_model: bytes | bytearray | memoryview | PathLike,
) -> tuple[_OnnxSource, Any]:
    """The source and its ModelProto (weights left external), or UsageError."""
    import onnx
    from google.protobuf.message import DecodeError

    if isinstance(onnx_model, (bytes, bytearray, memoryview)):
        source = _OnnxSource(bytes(onnx_model), None, "the ONNX graph")
    else:
        path = Path(onnx_model)
        if not path.is_file():
            raise UsageError(f"ONNX file not found: {path}")
        source = _OnnxSource(path.read_bytes(), path, path.name)
    try:
        model = onnx.load_from_string(source.data)
    except (DecodeError, ValueError) as exc:
        raise UsageError(
            f"{source.label} is not a readable ONNX model ({first_line(exc)})"
        ) from None
    if not model.HasField("graph"):
        raise UsageError(f"{source.label} is not an ONNX model (no graph)")
    return source, model


def build_engine(
    onnx_model: bytes | PathLike,
    engine_path: PathLike | None = None,
    *,
    profile: Profile | None = None,
    precision: str = "fp32",
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
    timing_cache: PathLike | None = None,
    cache_dir: PathLike | None = None,
    legacy_fp16_flag: bool = False,
) -> BuiltEngine:
    """Build (or fetch from ``cache_dir``) a serialized engine for an ONNX graph.

    ``onnx_model`` is the serialized graph (bytes) or an ONNX file. ``profile`` maps each
    input with dynamic dims to its (min, opt, max) shapes (see :func:`resolve_profile`).
    Returns the engine bytes and its :class:`EngineInfo`; nothing is written but the caches,
    and ``engine_path`` when given (atomically).

    Raises UsageError for bad arguments, a missing or invalid profile, or an fp32 graph asked
    to build as fp16; EnvironmentMissingError without TensorRT/CUDA; VerificationError when
    the parser rejects nodes (every error, with node name and op, in one message) or the
    build fails.
    """
    from ..trt_check import graph_input_dims

    check_precision(precision, legacy_fp16_flag)
    if not isinstance(workspace_bytes, int) or workspace_bytes <= 0:
        raise UsageError(f"workspace_bytes must be a positive integer, not {workspace_bytes!r}")
    source, model = _read_onnx(onnx_model)
    resolved = resolve_profile(graph_input_dims(model.graph), profile)
    if precision == "fp16" and not legacy_fp16_flag and not graph_has_float16(model):
        raise UsageError(
            f"{source.label} has no float16 tensors: precision 'fp16' builds the graph's "
            "own types (strongly typed); convert it first with attn_export.fp16.convert_to_fp16"
        )

    trt = require_tensorrt()
    flags = build_flags(trt_major_version(trt.__version__), precision, legacy_fp16_flag)
    gpu_name, compute_capability = _current_gpu()
    onnx_sha256 = hashlib.sha256(source.data).hexdigest()
    key = engine_cache_key(
        onnx_sha256,
        trt.__version__,
        gpu_name,
        compute_capability,
        precision,
        flags,
        workspace_bytes,
        resolved,
    )
    timing_cache_path = Path(timing_cache) if timing_cache is not None else None

    def built(engine: bytes, cache_hit: bool, build_seconds: float) -> BuiltEngine:
        info = EngineInfo(
            engine_sha256=hashlib.sha256(engine).hexdigest(),
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
            profile=resolved,
        )
        if engine_path is not None:
            atomic_write(Path(engine_path), engine)
        return BuiltEngine(engine, info)

    cached_engine = Path(cache_dir) / f"{key}.engine" if cache_dir is not None else None
    cached = _valid_cache_entry(cached_engine) if cached_engine is not None else None
    if cached is not None:
        return built(cached, cache_hit=True, build_seconds=0.0)

    started = time.perf_counter()
    engine = _build_serialized(trt, source, flags, workspace_bytes, timing_cache_path, resolved)
    result = built(engine, cache_hit=False, build_seconds=time.perf_counter() - started)
    if cached_engine is not None:
        atomic_write(cached_engine, engine)
        atomic_write(
            cached_engine.with_suffix(".json"), json.dumps(result.info.to_dict(), indent=2)
        )
    return result


# ------------------------------------------------------------------------------------------
# Run
# ------------------------------------------------------------------------------------------
class TensorRTBackend(Backend):
    """Runs a serialized engine with the name-based I/O API (TensorRT 10/11) on torch CUDA buffers.

    ``engine`` is the serialized engine (bytes, as :func:`build_engine` returns it) or an
    engine file. Any input shape inside the engine's profile runs: each input's shape is set
    before each run and the outputs are sized from the shapes the context resolves. Feeds
    are cast to each input's engine dtype (fp16 engines may take fp16 inputs); outputs come
    back as float32 numpy arrays in the engine's output order.
    """

    def __init__(
        self, engine: bytes | PathLike, device: str = "cuda", precision: str | None = None
    ) -> None:
        trt = require_tensorrt()
        self.device = torch.device(device)
        if self.device.type != "cuda":
            raise UsageError(f"TensorRT runs on a CUDA device, not {device!r}")
        if isinstance(engine, (bytes, bytearray, memoryview)):
            serialized, label = bytes(engine), "the engine"
        else:
            path = Path(engine)
            if not path.is_file():
                raise UsageError(f"engine file not found: {path}")
            serialized, label = path.read_bytes(), path.name
        self.logger = _recording_logger()
        errors_before = len(self.logger.errors)
        with torch.cuda.device(self.device):
            self.runtime = trt.Runtime(self.logger)
            self.engine = self.runtime.deserialize_cuda_engine(serialized)
            if self.engine is None:
                raise VerificationError(
                    f"TensorRT {trt.__version__} cannot deserialize {label} (built by "
                    "another TensorRT version or for another GPU?): "
                    f"{_joined(self.logger.errors[errors_before:])}"
                )
            self.context = self.engine.create_execution_context()
            if self.context is None:
                raise VerificationError(
                    f"TensorRT could not create an execution context for {label}: "
                    f"{_joined(self.logger.errors[errors_before:])}"
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
        #: input name -> (min, opt, max) it accepts (all three equal for a static input)
        self.input_ranges: dict[str, ShapeRange] = {
            n: self._input_range(n) for n in self.input_names
        }
        self._outputs: dict[str, torch.Tensor] = {}  # reused while an output's shape stays
        if precision is None:  # a guess for engines built elsewhere: fp16 I/O = fp16 engine
            precision = "fp16" if any(d == torch.float16 for d in self.dtypes.values()) else "fp32"
        self.precision = precision
        self.name = f"tensorrt-{precision}"

    def _input_range(self, name: str) -> ShapeRange:
        shape = tuple(int(d) for d in self.engine.get_tensor_shape(name))
        if all(d >= 0 for d in shape):
            return shape, shape, shape
        low, opt, high = self.engine.get_tensor_profile_shape(name, 0)  # profile 0: the only one
        return tuple(map(int, low)), tuple(map(int, opt)), tuple(map(int, high))

    def run(self, feeds: Feeds) -> list[np.ndarray]:
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise UsageError(
                f"missing engine inputs: {', '.join(missing)} (engine inputs: {', '.join(self.input_names)})"
            )
        arrays = {n: np.ascontiguousarray(feeds[n]) for n in self.input_names}
        for name, array in arrays.items():
            problem = input_shape_problem(name, array.shape, self.input_ranges[name])
            if problem:
                raise UsageError(problem)
        errors_before = len(self.logger.errors)
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
                        f"TensorRT refused input {name!r} shape {_shape_text(array.shape)}: "
                        f"{_joined(self.logger.errors[errors_before:])}"
                    )
                self.context.set_tensor_address(name, tensor.data_ptr())
                inputs.append(tensor)
            outputs = [self._output_buffer(name) for name in self.output_names]
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise VerificationError(
                    f"TensorRT execute_async_v3 failed for {self.name}: {_joined(self.logger.errors[errors_before:])}"
                )
            results = [out.float().cpu().numpy() for out in outputs]
        self.stream.synchronize()
        return results

    def _output_buffer(self, name: str) -> torch.Tensor:
        """A buffer of the shape the context resolved for the input shapes just set."""
        shape = tuple(int(d) for d in self.context.get_tensor_shape(name))
        if any(d < 0 for d in shape):
            raise VerificationError(
                f"TensorRT could not resolve output {name!r}'s shape {_shape_text(shape)} from the "
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


def _build_serialized(
    trt: Any,
    source: _OnnxSource,
    flags: tuple[str, ...],
    workspace_bytes: int,
    timing_cache: Path | None,
    profile: dict[str, ShapeRange] | None,
) -> bytes:
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
    # From the file, so weights stored beside it (external data) resolve; else from memory.
    parsed = parser.parse_from_file(str(source.path)) if source.path else parser.parse(source.data)
    if not parsed:
        raise VerificationError(
            f"TensorRT {trt.__version__} cannot parse {source.label}: "
            + _parser_errors(parser, logger.errors[errors_before:])
        )

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if FLAG_TF32_OFF in flags:
        config.clear_flag(trt.BuilderFlag.TF32)
    if FLAG_WEAKLY_TYPED_FP16 in flags:
        config.set_flag(trt.BuilderFlag.FP16)
    if (
        profile
        and config.add_optimization_profile(_optimization_profile(builder, network, profile)) < 0
    ):
        raise UsageError(
            f"TensorRT rejected the optimization profile {profile_to_json(profile)}: "
            f"{_joined(logger.errors[errors_before:])}"
        )
    if timing_cache is not None:
        _load_timing_cache(config, timing_cache)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise VerificationError(
            f"TensorRT {trt.__version__} could not build {source.label} ({', '.join(flags)}): "
            f"{_joined(logger.errors[errors_before:])}"
        )
    if timing_cache is not None:
        atomic_write(timing_cache, memoryview(config.get_timing_cache().serialize()))
    return bytes(serialized)


def _optimization_profile(builder: Any, network: Any, profile: dict[str, ShapeRange]) -> Any:
    """One IOptimizationProfile covering every network input the parser left dynamic (-1)."""
    optimization_profile = builder.create_optimization_profile()
    for index in range(network.num_inputs):
        tensor = network.get_input(index)
        if getattr(tensor, "is_shape_tensor", False):
            raise UsageError(
                f"input {tensor.name!r} is a shape tensor; attn-export builds profiles for data inputs only"
            )
        if tensor.name in profile:
            low, opt, high = profile[tensor.name]
            optimization_profile.set_shape(tensor.name, low, opt, high)
        elif any(d < 0 for d in tensor.shape):
            raise UsageError(
                f"TensorRT sees input {tensor.name!r} as dynamic {_shape_text(tuple(tensor.shape))}, "
                "but the profile has no shapes for it"
            )
    return optimization_profile


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


@functools.cache
def _recording_logger() -> Any:
    """One TensorRT logger for the process; it keeps ERROR messages for our exception texts.

    Older TensorRT treated the logger as a process-wide singleton, so every builder and
    runtime here shares this one and reads only the messages added during its own call.
    """
    import tensorrt as trt

    class RecordingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

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


def _current_gpu() -> tuple[str, str]:
    index = torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(index)
    return torch.cuda.get_device_name(index), f"{major}.{minor}"


def _valid_cache_entry(engine: Path) -> bytes | None:
    """The cached engine if its sha256 matches the one recorded beside it, else None (rebuild)."""
    record = engine.with_suffix(".json")
    if not (engine.is_file() and record.is_file()):
        return None
    try:
        recorded = json.loads(record.read_text())["engine_sha256"]
    except (ValueError, KeyError, TypeError):
        return None
    data = engine.read_bytes()
    return data if hashlib.sha256(data).hexdigest() == recorded else None


def _first_line(text: str) -> str:
    lines = str(text).strip().splitlines()
    return lines[0] if lines else ""


def _joined(messages: Sequence[str]) -> str:
    return "; ".join(_first_line(m) for m in messages[-5:]) or "no TensorRT error was logged"
