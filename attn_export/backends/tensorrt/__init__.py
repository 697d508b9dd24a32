"""TensorRT: build an engine from an ONNX graph (engine cache, timing cache) and run it.

TensorRT is imported inside the functions that need it, so ``import
attn_export.backends.tensorrt`` works on CPU installs; :func:`tensorrt_unavailable_reason`
says why TensorRT cannot be used here.

- ``environment``: whether TensorRT and a CUDA device are here, TensorRT's major version;
- ``precision``: precisions and build flags (every build strongly typed);
- ``profile``: optimization profiles for dynamic inputs, checked before TensorRT is touched;
- ``cache``: the engine cache key and entries, the timing cache;
- ``logger``: TensorRT's errors, read back for one-line exception texts;
- ``build``: :func:`build_engine`, returning the engine bytes and its :class:`EngineInfo`;
- ``runner``: :class:`TensorRTBackend`, running bytes or an engine file.
"""

from .build import DEFAULT_WORKSPACE_BYTES, BuiltEngine, EngineInfo, PathLike, build_engine
from .cache import CACHE_SCHEMA, engine_cache_key
from .environment import (
    INSTALL_HINT,
    require_tensorrt,
    tensorrt_unavailable_reason,
    trt_major_version,
)
from .precision import (
    FLAG_STRONGLY_TYPED,
    FLAG_TF32_OFF,
    FLAG_WEAKLY_TYPED_FP16,
    PRECISIONS,
    build_flags,
    check_precision,
    graph_has_float16,
)
from .profile import (
    PROFILE_SELECTORS,
    GraphDims,
    Profile,
    Shape,
    ShapeRange,
    input_shape_problem,
    profile_to_json,
    resolve_profile,
)
from .runner import TensorRTBackend

__all__ = [
    "CACHE_SCHEMA",
    "DEFAULT_WORKSPACE_BYTES",
    "FLAG_STRONGLY_TYPED",
    "FLAG_TF32_OFF",
    "FLAG_WEAKLY_TYPED_FP16",
    "INSTALL_HINT",
    "PRECISIONS",
    "PROFILE_SELECTORS",
    "BuiltEngine",
    "EngineInfo",
    "GraphDims",
    "PathLike",
    "Profile",
    "Shape",
    "ShapeRange",
    "TensorRTBackend",
    "build_engine",
    "build_flags",
    "check_precision",
    "engine_cache_key",
    "graph_has_float16",
    "input_shape_problem",
    "profile_to_json",
    "require_tensorrt",
    "resolve_profile",
    "tensorrt_unavailable_reason",
    "trt_major_version",
]
