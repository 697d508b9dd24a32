"""TensorRT engines and ONNX Runtime's CUDA provider against PyTorch on a real GPU.

GPU tests carry the ``gpu`` marker and skip, with the reason from
``tensorrt_unavailable_reason()``, where TensorRT or a CUDA device is missing (they are
marked per class rather than skipping the module, so the CPU tests at the bottom still
run everywhere); with ``ATTN_EXPORT_REQUIRE_GPU=1`` (the GPU CI job) a missing TensorRT or
CUDA fails the run instead. ``make test-gpu`` runs them; expect tens of minutes for the
whole zoo on one GPU (two engine builds per module; the timing cache only lives for the
session).

For every registered module at its registry kwargs and input shapes: export with ``export_to_onnx``,
then compare with PyTorch run on the same GPU (TF32 off in torch too) on the same
standard-normal inputs:
- an fp32 engine (TF32 off) within ``TOLERANCES["fp32"]`` (atol = rtol = 1e-3, cosine >= 0.9999),
- an fp16 engine built strongly typed from ``attn_export.fp16.convert_to_fp16``'s graph
  within ``TOLERANCES["fp16"]`` (atol 5e-2, rtol 2e-2, cosine >= 0.999); both are justified
  where they are defined, in ``attn_export/backends/tensorrt.py``,
- ONNX Runtime's CUDA provider within atol 5e-2, rtol 2e-2 and cosine >= 0.9999: the
  provider allows TF32 by default (provider option ``use_tf32``) and ``OnnxRuntimeBackend``
  passes no provider options. TF32 rounds only matmul/conv inputs to 11 significant bits
  (fp32 storage and accumulation), so its error is at most fp16 storage's: fp16's
  elementwise bounds, fp32's cosine floor.
Parameters are redrawn at random (fan-in scaled) before export, so no branch hides behind
a zero-initialised gate (CrissCross's gamma, SGE's and Shuffle Attention's scales) and a
wrong engine errs by O(1).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from attn_export import modules
from attn_export.backends import OnnxRuntimeBackend, TorchBackend
from attn_export.backends.tensorrt import (
    FLAG_STRONGLY_TYPED,
    FLAG_TF32_OFF,
    FLAG_WEAKLY_TYPED_FP16,
    TOLERANCES,
    EngineInfo,
    TensorRTBackend,
    build_engine,
    build_flags,
    engine_cache_key,
    graph_has_float16,
    tensorrt_unavailable_reason,
    trt_major_version,
)
from attn_export.compare import compare
from attn_export.errors import EnvironmentMissingError, UsageError, VerificationError
from attn_export.export import export_to_onnx, input_names_for
from attn_export.weights import file_sha256

ROOT = Path(__file__).resolve().parents[1]
REASON = tensorrt_unavailable_reason()
if REASON is not None and os.environ.get("ATTN_EXPORT_REQUIRE_GPU") == "1":
    # A GPU CI runner must run these tests, not report them skipped.
    pytest.fail(f"ATTN_EXPORT_REQUIRE_GPU=1 but {REASON}", pytrace=False)
GPU_ONLY = [
    pytest.mark.gpu,
    pytest.mark.skipif(REASON is not None, reason=f"TensorRT/CUDA unavailable: {REASON}"),
]
ZOO = modules.list_modules()
ORT_CUDA_TOLERANCE = (5e-2, 2e-2, 0.9999)  # (atol, rtol, min cosine); TF32, see the docstring
SEED = 0


@dataclass
class ZooCase:
    name: str
    onnx_path: Path
    model: onnx.ModelProto
    feeds: Dict[str, np.ndarray]
    reference: List[np.ndarray]  # PyTorch on the GPU, fp32, TF32 off


def randomize_parameters(module: torch.nn.Module, seed: int) -> None:
    """Redraw every float parameter (and BatchNorm statistics) so each branch matters.

    Fan-in scaled weights keep activations of order 1 through the block; norm scales are
    drawn around 1, everything else of rank <= 1 (biases, gates) around 0.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            if not tensor.is_floating_point():
                continue
            draw = torch.randn(tensor.shape, generator=generator)
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            elif name.endswith("running_mean"):
                tensor.copy_(0.1 * draw)
            elif not isinstance(tensor, torch.nn.Parameter):
                continue  # other buffers are constants of the block (indices, masks, tables)
            elif tensor.dim() >= 2:
                tensor.copy_(draw / math.sqrt(tensor[0].numel()))
            elif name.endswith("weight"):
                tensor.copy_(1.0 + 0.1 * draw)
            else:
                tensor.copy_(0.1 * draw)


def assert_matches(
    backend: str, case: ZooCase, outputs: List[np.ndarray], atol: float, rtol: float, cosine: float
) -> None:
    check = compare(backend, case.reference, outputs, atol, rtol, min_cosine=cosine)
    assert check.passed, f"{case.name}: " + "; ".join(check.failures())


def fp16_converter() -> Callable:
    """``attn_export.fp16.convert_to_fp16``; skip only when that module does not exist."""
    if importlib.util.find_spec("attn_export.fp16") is None:
        pytest.skip("attn_export.fp16 does not exist in this checkout")
    from attn_export.fp16 import convert_to_fp16

    return convert_to_fp16


@pytest.fixture(scope="session")
def gpu_workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("gpu")


@pytest.fixture(scope="session")
def no_tf32():
    """fp32 means fp32 in the PyTorch reference too (cuDNN allows TF32 by default)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.fixture(scope="session")
def zoo_case(gpu_workdir, no_tf32) -> Callable[[str], ZooCase]:
    """Export each module once per session and keep its inputs and GPU reference."""
    cases: Dict[str, ZooCase] = {}

    def prepare(name: str) -> ZooCase:
        if name not in cases:
            spec = modules.get_spec(name)
            torch.manual_seed(SEED)
            module = spec.create().eval()
            randomize_parameters(module, SEED)
            rng = np.random.default_rng(SEED)
            arrays = [rng.standard_normal(shape, dtype=np.float32) for shape in spec.shapes]
            names = input_names_for(len(arrays))
            graph = export_to_onnx(module, tuple(torch.from_numpy(a) for a in arrays), names)
            onnx_path = gpu_workdir / f"{name}.onnx"
            onnx.save(graph.model, str(onnx_path))
            feeds = dict(zip(names, arrays, strict=True))
            reference = TorchBackend(module, names, device="cuda").run(feeds)
            cases[name] = ZooCase(name, onnx_path, graph.model, feeds, reference)
        return cases[name]

    return prepare


def fp16_graph(case: ZooCase, directory: Path) -> Path:
    result = fp16_converter()(case.model, case.feeds)
    path = directory / f"{case.name}.fp16.onnx"
    onnx.save(result.model, str(path))
    return path


@pytest.mark.parametrize("name", ZOO)
class TestZooOnGpu:
    pytestmark = GPU_ONLY

    def test_fp32_engine_matches_pytorch(self, name, zoo_case, gpu_workdir):
        case = zoo_case(name)
        engine = gpu_workdir / f"{name}.engine"
        info = build_engine(
            case.onnx_path, engine, precision="fp32", timing_cache=gpu_workdir / "timing.cache"
        )
        assert info.flags == (FLAG_STRONGLY_TYPED, FLAG_TF32_OFF)
        assert info.engine_sha256 == file_sha256(engine) and not info.cache_hit
        backend = TensorRTBackend(engine, precision="fp32")
        assert backend.name == "tensorrt-fp32" and backend.input_names == list(case.feeds)
        assert_matches(backend.name, case, backend.run(case.feeds), *TOLERANCES["fp32"])
        backend.close()

    def test_fp16_engine_matches_pytorch(self, name, zoo_case, gpu_workdir):
        case = zoo_case(name)
        engine = gpu_workdir / f"{name}.fp16.engine"
        info = build_engine(
            fp16_graph(case, gpu_workdir),
            engine,
            precision="fp16",
            timing_cache=gpu_workdir / "timing.cache",
        )
        assert info.precision == "fp16" and info.flags == (FLAG_STRONGLY_TYPED, FLAG_TF32_OFF)
        backend = TensorRTBackend(engine, precision="fp16")
        assert backend.name == "tensorrt-fp16"
        assert_matches(backend.name, case, backend.run(case.feeds), *TOLERANCES["fp16"])
        backend.close()

    def test_onnxruntime_cuda_matches_pytorch(self, name, zoo_case):
        case = zoo_case(name)
        backend = OnnxRuntimeBackend(str(case.onnx_path), provider="CUDAExecutionProvider")
        # ONNX Runtime falls back to CPU when the CUDA provider fails to load: insist it did not.
        assert backend.session.get_providers()[0] == "CUDAExecutionProvider"
        assert_matches(backend.name, case, backend.run(case.feeds), *ORT_CUDA_TOLERANCE)


class TestEngineBuildOnGpu:
    pytestmark = GPU_ONLY

    def test_engine_cache_hits_on_same_inputs_and_misses_on_any_change(self, zoo_case, tmp_path):
        case = zoo_case("cbam")
        cache, timing = tmp_path / "cache", tmp_path / "timing.cache"
        first = build_engine(
            case.onnx_path, tmp_path / "a.engine", cache_dir=cache, timing_cache=timing
        )
        assert not first.cache_hit and first.build_seconds > 0
        assert timing.stat().st_size > 0, "the timing cache was not saved"
        assert (cache / f"{first.cache_key}.engine").is_file()

        second = build_engine(
            case.onnx_path, tmp_path / "b.engine", cache_dir=cache, timing_cache=timing
        )
        assert second.cache_hit and second.build_seconds == 0.0
        assert second.cache_key == first.cache_key
        assert file_sha256(tmp_path / "b.engine") == first.engine_sha256 == second.engine_sha256
        backend = TensorRTBackend(tmp_path / "b.engine", precision="fp32")
        assert_matches(backend.name, case, backend.run(case.feeds), *TOLERANCES["fp32"])
        backend.close()

        smaller = build_engine(
            case.onnx_path, tmp_path / "c.engine", cache_dir=cache, workspace_bytes=1 << 28
        )
        assert not smaller.cache_hit and smaller.cache_key != first.cache_key

        (cache / f"{first.cache_key}.engine").write_bytes(b"corrupted")
        rebuilt = build_engine(case.onnx_path, tmp_path / "d.engine", cache_dir=cache)
        assert not rebuilt.cache_hit, "a cache entry whose sha256 does not match was reused"
        assert rebuilt.cache_key == first.cache_key

    def test_engine_cache_misses_when_precision_changes(self, zoo_case, tmp_path):
        case = zoo_case("cbam")
        cache = tmp_path / "cache"
        fp32 = build_engine(case.onnx_path, tmp_path / "fp32.engine", cache_dir=cache)
        fp16_onnx = fp16_graph(case, tmp_path)
        fp16 = build_engine(fp16_onnx, tmp_path / "fp16.engine", precision="fp16", cache_dir=cache)
        assert not fp16.cache_hit and fp16.cache_key != fp32.cache_key
        again = build_engine(
            fp16_onnx, tmp_path / "again.engine", precision="fp16", cache_dir=cache
        )
        assert again.cache_hit and again.engine_sha256 == fp16.engine_sha256

    def test_legacy_fp16_flag_only_on_tensorrt_10(self, zoo_case, tmp_path):
        import tensorrt

        case = zoo_case("cbam")
        engine = tmp_path / "legacy.engine"
        if trt_major_version(tensorrt.__version__) >= 11:
            with pytest.raises(UsageError, match="removed BuilderFlag.FP16"):
                build_engine(case.onnx_path, engine, precision="fp16", legacy_fp16_flag=True)
            return
        info = build_engine(case.onnx_path, engine, precision="fp16", legacy_fp16_flag=True)
        assert info.flags == (FLAG_WEAKLY_TYPED_FP16, FLAG_TF32_OFF)
        backend = TensorRTBackend(engine, precision="fp16")
        assert_matches(backend.name, case, backend.run(case.feeds), *TOLERANCES["fp16"])
        backend.close()

    def test_parser_errors_name_every_rejected_node(self, tmp_path):
        nodes = [
            helper.make_node("Relu", ["x"], ["r"], name="fine"),
            helper.make_node("FrobnicateXyz", ["r"], ["y"], name="mystery", domain="com.example"),
        ]
        graph = helper.make_graph(
            nodes,
            "unparseable",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        )
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)],
        )
        path = tmp_path / "unparseable.onnx"
        onnx.save(model, str(path))
        with pytest.raises(VerificationError) as raised:
            build_engine(path, tmp_path / "never.engine")
        message = str(raised.value)
        assert "mystery" in message and "FrobnicateXyz" in message and "\n" not in message
        assert not (tmp_path / "never.engine").exists()

    def test_backend_rejects_an_engine_it_cannot_deserialize(self, tmp_path):
        garbage = tmp_path / "garbage.engine"
        garbage.write_bytes(b"\x00" * 1024)
        with pytest.raises(VerificationError, match="cannot deserialize"):
            TensorRTBackend(garbage)


# ----------------------------------------------------------------------------- CPU side


def tiny_graph(path: Path, elem_type: int = TensorProto.FLOAT) -> Path:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="relu")],
        "tiny",
        [helper.make_tensor_value_info("x", elem_type, [1, 4])],
        [helper.make_tensor_value_info("y", elem_type, [1, 4])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_unavailable_reason_is_none_only_with_tensorrt_and_cuda():
    reason = tensorrt_unavailable_reason()
    has_tensorrt = importlib.util.find_spec("tensorrt") is not None
    if reason is None:
        assert has_tensorrt and torch.cuda.is_available()
        return
    assert isinstance(reason, str) and reason.strip() and "\n" not in reason
    if not has_tensorrt:
        assert reason == "tensorrt is not installed (pip install 'attn-export[gpu]')"


def test_importing_the_backend_does_not_import_tensorrt(tmp_path):
    # A stand-in `tensorrt` first on the path, so an eager import shows up even where the
    # real one is not installed (here it would otherwise fail silently or not at all).
    (tmp_path / "tensorrt.py").write_text("")
    code = (
        "import sys, attn_export.backends.tensorrt\n"
        "assert 'tensorrt' not in sys.modules, 'tensorrt was imported'\n"
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
        build_engine(tiny_graph(tmp_path / "tiny.onnx"), tmp_path / "x.engine", **kwargs)


def test_build_engine_rejects_a_missing_onnx_file(tmp_path):
    with pytest.raises(UsageError, match="ONNX file not found"):
        build_engine(tmp_path / "absent.onnx", tmp_path / "x.engine")


def test_fp16_precision_needs_an_fp16_graph(tmp_path):
    fp32 = tiny_graph(tmp_path / "fp32.onnx")
    fp16 = tiny_graph(tmp_path / "fp16.onnx", TensorProto.FLOAT16)
    assert not graph_has_float16(onnx.load(str(fp32)))
    assert graph_has_float16(onnx.load(str(fp16)))
    with pytest.raises(UsageError, match="convert_to_fp16"):
        build_engine(fp32, tmp_path / "x.engine", precision="fp16")
    if REASON is not None:  # the fp16 graph passes the checks and reaches the environment check
        with pytest.raises(EnvironmentMissingError) as raised:
            build_engine(fp16, tmp_path / "x.engine", precision="fp16")
        assert str(raised.value) == REASON


def test_build_flags_follow_the_tensorrt_version():
    strong = (FLAG_STRONGLY_TYPED, FLAG_TF32_OFF)
    assert build_flags(10, "fp32") == build_flags(11, "fp32") == strong
    assert build_flags(10, "fp16") == build_flags(11, "fp16") == strong
    assert build_flags(10, "fp16", legacy_fp16_flag=True) == (FLAG_WEAKLY_TYPED_FP16, FLAG_TF32_OFF)
    with pytest.raises(UsageError, match="removed BuilderFlag.FP16"):
        build_flags(11, "fp16", legacy_fp16_flag=True)


def test_engine_cache_key_changes_with_every_input_and_only_then():
    base = {
        "onnx_sha256": "a" * 64,
        "trt_version": "10.13.3.9",
        "gpu_name": "NVIDIA L4",
        "compute_capability": "8.9",
        "precision": "fp32",
        "flags": (FLAG_STRONGLY_TYPED, FLAG_TF32_OFF),
        "workspace_bytes": 1 << 30,
    }
    key = engine_cache_key(**base)
    assert len(key) == 64 and key == engine_cache_key(**base)
    assert key == engine_cache_key(**{**base, "flags": (FLAG_TF32_OFF, FLAG_STRONGLY_TYPED)})
    changes = {
        "onnx_sha256": "b" * 64,
        "trt_version": "11.4.0.106",
        "gpu_name": "NVIDIA A100-SXM4-40GB",
        "compute_capability": "8.0",
        "precision": "fp16",
        "flags": (FLAG_WEAKLY_TYPED_FP16, FLAG_TF32_OFF),
        "workspace_bytes": 1 << 28,
    }
    keys = {field: engine_cache_key(**{**base, field: value}) for field, value in changes.items()}
    assert key not in keys.values() and len(set(keys.values())) == len(changes)


def test_engine_info_is_json_for_the_manifest():
    info = EngineInfo(
        engine_path="cbam.engine",
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
    data = json.loads(json.dumps(info.to_dict()))
    assert data["flags"] == [FLAG_STRONGLY_TYPED, FLAG_TF32_OFF]
    assert data["trt_version"] == "10.13.3.9" and data["cache_hit"] is False


@pytest.mark.skipif(REASON is None, reason="TensorRT and CUDA are available here")
def test_backend_says_why_it_cannot_run_here(tmp_path):
    with pytest.raises(EnvironmentMissingError) as raised:
        TensorRTBackend(tmp_path / "any.engine")
    assert str(raised.value) == REASON
