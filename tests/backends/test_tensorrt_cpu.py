"""The TensorRT backend's pure-Python side, run everywhere: arguments, optimization profiles,
input-shape checks, cache keys and the manifest record. No TensorRT is used (or faked) here;
``tests/gpu/test_gpu.py`` builds and runs real engines where TensorRT and CUDA exist.

On a host without TensorRT, ``build_engine`` must refuse bad arguments and bad profiles
*before* it looks for TensorRT (so a CPU run reports the user's mistake, not the missing
runtime); the tests below pin that order by expecting UsageError, or EnvironmentMissingError
once everything else is right.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from attn_export.backends.tensorrt import (
    FLAG_STRONGLY_TYPED,
    FLAG_TF32_OFF,
    FLAG_WEAKLY_TYPED_FP16,
    BuiltEngine,
    EngineInfo,
    GraphDims,
    TensorRTBackend,
    build_engine,
    build_flags,
    engine_cache_key,
    graph_has_float16,
    input_shape_problem,
    profile_to_json,
    resolve_profile,
    tensorrt_unavailable_reason,
)
from attn_export.errors import EnvironmentMissingError, UsageError
from attn_export.trt_check import graph_input_dims
from tests.conftest import ROOT

REASON = tensorrt_unavailable_reason()


def relu_graph(shape=(1, 4), elem_type: int = TensorProto.FLOAT) -> onnx.ModelProto:
    """x -> Relu -> y; ``shape`` may hold symbols (str) or None (an unknown dim)."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="relu")],
        "tiny",
        [helper.make_tensor_value_info("x", elem_type, shape)],
        [helper.make_tensor_value_info("y", elem_type, shape)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def tiny_graph(path: Path, elem_type: int = TensorProto.FLOAT) -> Path:
    onnx.save(relu_graph(elem_type=elem_type), str(path))
    return path


DYNAMIC = {"x": ("batch", 64, "height", "width")}


# ----------------------------------------------------------------------------- environment


def test_unavailable_reason_is_none_only_with_tensorrt_and_cuda():
    has_tensorrt = importlib.util.find_spec("tensorrt") is not None
    if REASON is None:
        assert has_tensorrt and torch.cuda.is_available()
        return
    assert isinstance(REASON, str) and REASON.strip() and "\n" not in REASON
    if not has_tensorrt:
        assert REASON == "tensorrt is not installed (pip install 'attn-export[gpu]')"


def test_importing_the_backend_does_not_import_tensorrt(tmp_path):
    # A stand-in `tensorrt` first on the path, so an eager import shows up even where the
    # real one is not installed (here it would otherwise fail silently or not at all).
    # Every submodule is imported, also one the package's __init__ might not import.
    (tmp_path / "tensorrt.py").write_text("")
    code = (
        "import importlib, pkgutil, sys\n"
        "import attn_export.backends.tensorrt as package\n"
        "assert 'tensorrt' not in sys.modules, 'importing the package imported tensorrt'\n"
        "names = [m.name for m in pkgutil.iter_modules(package.__path__, package.__name__ + '.')]\n"
        "assert names, 'no submodules found'\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "    assert 'tensorrt' not in sys.modules, f'importing {name} imported tensorrt'\n"
    )
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(REASON is None, reason="TensorRT and CUDA are available here")
def test_backend_says_why_it_cannot_run_here(tmp_path):
    for engine in (tmp_path / "any.engine", b"serialized engine bytes"):
        with pytest.raises(EnvironmentMissingError) as raised:
            TensorRTBackend(engine)
        assert str(raised.value) == REASON


# ----------------------------------------------------------------------------- build arguments


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"precision": "int8"}, "precision must be one of fp32, fp16"),
        ({"precision": "fp32", "legacy_fp16_flag": True}, "only applies to precision 'fp16'"),
        ({"workspace_bytes": 0}, "workspace_bytes must be a positive integer"),
    ],
)
def test_build_engine_rejects_bad_arguments(kwargs, message, tmp_path):
    with pytest.raises(UsageError, match=message):
        build_engine(tiny_graph(tmp_path / "tiny.onnx"), **kwargs)


def test_build_engine_rejects_a_missing_onnx_file(tmp_path):
    with pytest.raises(UsageError, match="ONNX file not found"):
        build_engine(tmp_path / "absent.onnx")


@pytest.mark.parametrize("data", [b"\xff\xfe not protobuf", b""])
def test_build_engine_rejects_bytes_that_are_no_onnx_graph(data):
    with pytest.raises(
        UsageError, match="the ONNX graph is not (a readable ONNX|an ONNX) model"
    ) as raised:
        build_engine(data)
    assert "\n" not in str(raised.value)


def test_fp16_precision_needs_an_fp16_graph(tmp_path):
    fp32 = tiny_graph(tmp_path / "fp32.onnx")
    fp16 = tiny_graph(tmp_path / "fp16.onnx", TensorProto.FLOAT16)
    assert not graph_has_float16(onnx.load(str(fp32)))
    assert graph_has_float16(onnx.load(str(fp16)))
    with pytest.raises(UsageError, match="convert_to_fp16"):
        build_engine(fp32, precision="fp16")
    with pytest.raises(UsageError, match="convert_to_fp16"):  # the same from bytes
        build_engine(fp32.read_bytes(), precision="fp16")
    if REASON is not None:  # the fp16 graph passes the checks and reaches the environment check
        with pytest.raises(EnvironmentMissingError) as raised:
            build_engine(fp16, precision="fp16")
        assert str(raised.value) == REASON


def test_build_flags_follow_the_tensorrt_version():
    strong = (FLAG_STRONGLY_TYPED, FLAG_TF32_OFF)
    assert build_flags(10, "fp32") == build_flags(11, "fp32") == strong
    assert build_flags(10, "fp16") == build_flags(11, "fp16") == strong
    assert build_flags(10, "fp16", legacy_fp16_flag=True) == (FLAG_WEAKLY_TYPED_FP16, FLAG_TF32_OFF)
    with pytest.raises(UsageError, match="removed BuilderFlag.FP16"):
        build_flags(11, "fp16", legacy_fp16_flag=True)


# ----------------------------------------------------------------------------- profiles


def test_graph_input_dims_read_sizes_symbols_and_unknowns():
    model = relu_graph(("batch", 64, None))
    assert graph_input_dims(model.graph) == {"x": ("batch", 64, None)}


def test_a_static_graph_needs_no_profile():
    assert resolve_profile({"x": (1, 4)}, None) is None
    # an entry for a static input must agree with it, and is then dropped (one cache key)
    assert resolve_profile({"x": (1, 4)}, {"x": ((1, 4), (1, 4), (1, 4))}) is None


def test_a_valid_profile_is_normalized_to_int_tuples():
    # lists and numpy ints, as a user's profile may hold them
    profile: dict[str, Any] = {"x": ([1, 64, 7, 7], (np.int64(2), 64, 14, 14), (8, 64, 28, 28))}
    assert resolve_profile(DYNAMIC, profile) == {
        "x": ((1, 64, 7, 7), (2, 64, 14, 14), (8, 64, 28, 28))
    }
    assert profile_to_json(resolve_profile(DYNAMIC, profile)) == {
        "x": {"min": [1, 64, 7, 7], "opt": [2, 64, 14, 14], "max": [8, 64, 28, 28]}
    }


@pytest.mark.parametrize("dims", [("batch", 64, 7, 7), (None, 64, 7, 7), None])
def test_a_dynamic_input_without_a_profile_is_a_one_line_usage_error(dims, tmp_path):
    with pytest.raises(UsageError) as raised:
        resolve_profile({"x": dims}, None)
    message = str(raised.value)
    assert "input 'x' has dynamic dims" in message and "needs a profile" in message
    assert "\n" not in message


def test_build_engine_checks_the_profile_before_looking_for_tensorrt(tmp_path):
    model = relu_graph(("batch", 4))
    for source in (model.SerializeToString(), tmp_path / "dynamic.onnx"):
        onnx.save(model, str(tmp_path / "dynamic.onnx"))
        with pytest.raises(UsageError, match="input 'x' has dynamic dims \\(batch, 4\\)"):
            build_engine(source)
        with pytest.raises(UsageError, match="dim 0 has 4, 2, 8"):
            build_engine(source, profile={"x": ((4, 4), (2, 4), (8, 4))})
    if REASON is not None:  # a valid profile gets as far as the environment check
        with pytest.raises(EnvironmentMissingError):
            build_engine(model.SerializeToString(), profile={"x": ((1, 4), (2, 4), (8, 4))})


@pytest.mark.parametrize(
    "profile, message",
    [
        (
            {"y": ((1, 4), (1, 4), (1, 4))},
            "profile names 'y', which is not a graph input \\(inputs: x\\)",
        ),
        ({"x": ((1, 4), (2, 4))}, "must be \\(min, opt, max\\) shapes"),
        ({"x": ((1, 4), (2, 4), (0, 4))}, "max shape for input 'x' must be positive integers"),
        ({"x": ((1, 4), (2.5, 4), (8, 4))}, "opt shape for input 'x' must be positive integers"),
        (
            {"x": ((1, 4, 1), (2, 4, 1), (8, 4, 1))},
            "min shape \\(1, 4, 1\\) for input 'x' has rank 3",
        ),
        (
            {"x": ((1, 4), (9, 4), (8, 4))},
            "needs min <= opt <= max in every dim; dim 0 has 1, 9, 8",
        ),
        ({"x": ((1, 4), (2, 5), (8, 4))}, "dim 1 has 4, 5, 4"),
        ({"x": ((1, 5), (2, 5), (8, 5))}, "sets dim 1 to 5..5, but the graph fixes it at 4"),
        ({"x": ((1, 2), (2, 4), (8, 8))}, "sets dim 1 to 2..8, but the graph fixes it at 4"),
    ],
)
def test_profile_errors_name_the_input_in_one_line(profile, message):
    with pytest.raises(UsageError, match=message) as raised:
        resolve_profile({"x": ("batch", 4)}, profile)
    assert "\n" not in str(raised.value)


def test_every_dynamic_input_needs_its_own_entry():
    inputs: dict[str, GraphDims] = {"q": ("batch", "tokens", 32), "k": ("batch", 49, 32)}
    q_only = {"q": ((1, 1, 32), (2, 49, 32), (4, 196, 32))}
    with pytest.raises(UsageError, match="input 'k' has dynamic dims \\(batch, 49, 32\\)"):
        resolve_profile(inputs, q_only)
    both = {**q_only, "k": ((1, 49, 32), (2, 49, 32), (4, 49, 32))}
    resolved = resolve_profile(inputs, both)
    assert resolved is not None and set(resolved) == {"q", "k"}


@pytest.mark.parametrize(
    "shape, problem",
    [
        ((1, 64, 7, 7), None),
        ((8, 64, 28, 28), None),
        ((3, 64, 10, 21), None),
        (
            (9, 64, 7, 7),
            "input 'x' shape (9, 64, 7, 7) is outside the engine's profile:"
            " min (1, 64, 7, 7), max (8, 64, 28, 28)",
        ),
        ((2, 64, 6, 7), "input 'x' shape (2, 64, 6, 7) is outside the engine's profile"),
        ((2, 32, 7, 7), "input 'x' shape (2, 32, 7, 7) is outside the engine's profile"),
        ((2, 64, 7), "input 'x' shape (2, 64, 7) is outside the engine's profile"),
    ],
)
def test_run_shapes_inside_the_profile_pass_and_others_are_named(shape, problem):
    allowed = ((1, 64, 7, 7), (2, 64, 14, 14), (8, 64, 28, 28))
    found = input_shape_problem("x", shape, allowed)
    if problem is None:
        assert found is None
    else:
        assert found is not None and found.startswith(problem) and "\n" not in found


def test_a_static_input_says_which_shape_it_expects():
    fixed = ((1, 4), (1, 4), (1, 4))
    assert input_shape_problem("x", (1, 4), fixed) is None
    assert (
        input_shape_problem("x", (2, 4), fixed)
        == "input 'x' has shape (2, 4), the engine expects (1, 4)"
    )


# ----------------------------------------------------------------------------- cache key, manifest

KEY_BASE: dict[str, Any] = {
    "onnx_sha256": "a" * 64,
    "trt_version": "10.13.3.9",
    "gpu_name": "NVIDIA L4",
    "compute_capability": "8.9",
    "precision": "fp32",
    "flags": (FLAG_STRONGLY_TYPED, FLAG_TF32_OFF),
    "workspace_bytes": 1 << 30,
}


def test_engine_cache_key_changes_with_every_input_and_only_then():
    key = engine_cache_key(**KEY_BASE)
    assert len(key) == 64 and key == engine_cache_key(**KEY_BASE)
    assert key == engine_cache_key(**{**KEY_BASE, "flags": (FLAG_TF32_OFF, FLAG_STRONGLY_TYPED)})
    assert (
        key
        == engine_cache_key(**KEY_BASE, profile=None)
        == engine_cache_key(**KEY_BASE, profile={})
    )
    changes = {
        "onnx_sha256": "b" * 64,
        "trt_version": "11.4.0.106",
        "gpu_name": "NVIDIA A100-SXM4-40GB",
        "compute_capability": "8.0",
        "precision": "fp16",
        "flags": (FLAG_WEAKLY_TYPED_FP16, FLAG_TF32_OFF),
        "workspace_bytes": 1 << 28,
        "profile": {"x": ((1, 4), (2, 4), (8, 4))},
    }
    keys = {
        field: engine_cache_key(**{**KEY_BASE, field: value}) for field, value in changes.items()
    }
    assert key not in keys.values() and len(set(keys.values())) == len(changes)


def test_engine_cache_key_depends_on_every_profile_shape_but_not_on_entry_order():
    a = {"q": ((1, 4), (2, 4), (8, 4)), "k": ((1, 4), (2, 4), (8, 4))}
    swapped = {"k": a["k"], "q": a["q"]}
    assert engine_cache_key(**KEY_BASE, profile=a) == engine_cache_key(**KEY_BASE, profile=swapped)
    variants = [
        {**a, "q": ((2, 4), (2, 4), (8, 4))},  # min
        {**a, "q": ((1, 4), (4, 4), (8, 4))},  # opt
        {**a, "q": ((1, 4), (2, 4), (16, 4))},  # max
        {"q": a["q"]},  # one input fewer
    ]
    keys = {engine_cache_key(**KEY_BASE, profile=v) for v in variants}
    assert len(keys) == len(variants) and engine_cache_key(**KEY_BASE, profile=a) not in keys


def engine_info(**overrides) -> EngineInfo:
    fields = dict(
        engine_sha256="e" * 64,
        onnx_sha256="o" * 64,
        trt_version="10.13.3.9",
        gpu_name="NVIDIA L4",
        compute_capability="8.9",
        precision="fp32",
        flags=(FLAG_STRONGLY_TYPED, FLAG_TF32_OFF),
        workspace_bytes=1 << 30,
        cache_key="k" * 64,
        cache_hit=False,
        build_seconds=12.5,
        timing_cache=None,
    )
    return EngineInfo(**{**fields, **overrides})


def test_engine_info_is_json_for_the_manifest():
    data = json.loads(json.dumps(engine_info().to_dict()))
    assert data["flags"] == [FLAG_STRONGLY_TYPED, FLAG_TF32_OFF]
    assert data["trt_version"] == "10.13.3.9" and data["cache_hit"] is False
    assert data["profile"] is None and "engine_path" not in data


def test_engine_info_records_the_profile():
    info = engine_info(profile={"x": ((1, 64, 7, 7), (2, 64, 7, 7), (8, 64, 7, 7))})
    data = json.loads(json.dumps(info.to_dict()))
    assert data["profile"] == {
        "x": {"min": [1, 64, 7, 7], "opt": [2, 64, 7, 7], "max": [8, 64, 7, 7]}
    }


def test_built_engine_unpacks_as_bytes_and_info():
    engine, info = BuiltEngine(b"plan", engine_info())
    assert engine == b"plan" and info.cache_key == "k" * 64
