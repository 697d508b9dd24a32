"""Build a serialized engine from an ONNX graph, or fetch it from the engine cache.

Nothing is written but the caches (and ``engine_path`` when given): :func:`build_engine`
returns the engine as bytes in a :class:`BuiltEngine`, and the caller writes the artifact
once everything verified.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from ...atomic import atomic_write
from ...errors import UsageError, VerificationError, first_line
from ...parsing import dims_text
from .cache import (
    cache_entry,
    engine_cache_key,
    load_timing_cache,
    read_cache_entry,
    save_timing_cache,
    write_cache_entry,
)
from .environment import current_gpu, require_tensorrt, trt_major_version
from .logger import ErrorWindow, parser_errors, recording_logger
from .precision import (
    FLAG_STRONGLY_TYPED,
    FLAG_TF32_OFF,
    FLAG_WEAKLY_TYPED_FP16,
    build_flags,
    check_precision,
    graph_has_float16,
)
from .profile import Profile, ShapeRange, profile_to_json, resolve_profile

PathLike = str | os.PathLike[str]

DEFAULT_WORKSPACE_BYTES = 1 << 30


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


@dataclass(frozen=True)
class _EngineIdentity:
    """Everything that decides an engine's content (hashed into its cache key)."""

    onnx_sha256: str
    trt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    flags: tuple[str, ...]
    workspace_bytes: int
    profile: dict[str, ShapeRange] | None

    def cache_key(self) -> str:
        return engine_cache_key(
            self.onnx_sha256,
            self.trt_version,
            self.gpu_name,
            self.compute_capability,
            self.precision,
            self.flags,
            self.workspace_bytes,
            self.profile,
        )

    def engine_info(
        self,
        engine: bytes,
        cache_key: str,
        cache_hit: bool,
        build_seconds: float,
        timing_cache: Path | None,
    ) -> EngineInfo:
        identity = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return EngineInfo(
            **identity,
            engine_sha256=hashlib.sha256(engine).hexdigest(),
            cache_key=cache_key,
            cache_hit=cache_hit,
            build_seconds=build_seconds,
            timing_cache=str(timing_cache) if timing_cache else None,
        )


@dataclass(frozen=True)
class _OnnxSource:
    """The graph to parse: its bytes, and its file when given one (external weights resolve)."""

    data: bytes
    path: Path | None
    label: str


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
    # Everything the user can get wrong is checked before TensorRT is looked for.
    source, resolved = _checked_request(
        onnx_model, profile, precision, workspace_bytes, legacy_fp16_flag
    )
    trt = require_tensorrt()
    flags = build_flags(trt_major_version(trt.__version__), precision, legacy_fp16_flag)
    gpu_name, compute_capability = current_gpu()
    identity = _EngineIdentity(
        onnx_sha256=hashlib.sha256(source.data).hexdigest(),
        trt_version=trt.__version__,
        gpu_name=gpu_name,
        compute_capability=compute_capability,
        precision=precision,
        flags=flags,
        workspace_bytes=workspace_bytes,
        profile=resolved,
    )
    key = identity.cache_key()
    timing_cache_path = Path(timing_cache) if timing_cache is not None else None
    cached_file = cache_entry(cache_dir, key) if cache_dir is not None else None
    engine, cache_hit, build_seconds = _fetch_or_build(
        cached_file,
        functools.partial(
            _build_serialized, trt, source, flags, workspace_bytes, timing_cache_path, resolved
        ),
    )
    info = identity.engine_info(engine, key, cache_hit, build_seconds, timing_cache_path)
    if engine_path is not None:
        atomic_write(Path(engine_path), engine)
    if cached_file is not None and not cache_hit:
        write_cache_entry(cached_file, engine, info.to_dict())
    return BuiltEngine(engine, info)


def _checked_request(
    onnx_model: bytes | PathLike,
    profile: Profile | None,
    precision: str,
    workspace_bytes: int,
    legacy_fp16_flag: bool,
) -> tuple[_OnnxSource, dict[str, ShapeRange] | None]:
    """The graph to build and its resolved profile, or UsageError for anything malformed."""
    from ...trt_check import graph_input_dims

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
    return source, resolved


def _fetch_or_build(
    cached_file: Path | None, build: Callable[[], bytes]
) -> tuple[bytes, bool, float]:
    """``(engine, cache_hit, build_seconds)``: the valid cache entry, else a fresh build."""
    engine = read_cache_entry(cached_file) if cached_file is not None else None
    if engine is not None:
        return engine, True, 0.0
    started = time.perf_counter()
    engine = build()
    return engine, False, time.perf_counter() - started


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


def _build_serialized(
    trt: Any,
    source: _OnnxSource,
    flags: tuple[str, ...],
    workspace_bytes: int,
    timing_cache: Path | None,
    profile: dict[str, ShapeRange] | None,
) -> bytes:
    logger = recording_logger()
    errors = ErrorWindow(logger)
    builder = trt.Builder(logger)
    # The parser owns the weights the network points to: it lives until the build is done.
    network, parser = _parsed_network(trt, builder, logger, errors, source, flags)
    config = _builder_config(trt, builder, network, errors, flags, workspace_bytes, profile)
    if timing_cache is not None:
        load_timing_cache(config, timing_cache)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise VerificationError(
            f"TensorRT {trt.__version__} could not build {source.label} ({', '.join(flags)}): "
            f"{errors.text()}"
        )
    if timing_cache is not None:
        save_timing_cache(config, timing_cache)
    return bytes(serialized)


def _parsed_network(
    trt: Any,
    builder: Any,
    logger: Any,
    errors: ErrorWindow,
    source: _OnnxSource,
    flags: tuple[str, ...],
) -> tuple[Any, Any]:
    """The network definition parsed from ``source``, and the parser that holds its weights."""
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
            + parser_errors(parser, errors.messages())
        )
    return network, parser


def _builder_config(
    trt: Any,
    builder: Any,
    network: Any,
    errors: ErrorWindow,
    flags: tuple[str, ...],
    workspace_bytes: int,
    profile: dict[str, ShapeRange] | None,
) -> Any:
    """A builder config with the workspace limit, the precision flags and the profile."""
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
            f"{errors.text()}"
        )
    return config


def _optimization_profile(builder: Any, network: Any, profile: dict[str, ShapeRange]) -> Any:
    """One IOptimizationProfile covering every network input the parser left dynamic (-1)."""
    optimization_profile = builder.create_optimization_profile()
    for index in range(network.num_inputs):
        tensor = network.get_input(index)
        if getattr(tensor, "is_shape_tensor", False):
            raise UsageError(
                f"input {tensor.name!r} is a shape tensor;"
                " attn-export builds profiles for data inputs only"
            )
        if tensor.name in profile:
            low, opt, high = profile[tensor.name]
            optimization_profile.set_shape(tensor.name, low, opt, high)
        elif any(d < 0 for d in tensor.shape):
            raise UsageError(
                f"TensorRT sees input {tensor.name!r} as dynamic {dims_text(tuple(tensor.shape))},"
                " but the profile has no shapes for it"
            )
    return optimization_profile
