"""TensorRT engines and ONNX Runtime's CUDA provider against PyTorch on a real GPU.

GPU tests carry the ``gpu`` marker and skip, with the reason from
``tensorrt_unavailable_reason()``, where TensorRT or a CUDA device is missing; with
``ATTN_EXPORT_REQUIRE_GPU=1`` (the GPU CI job) a missing TensorRT or CUDA fails the run
instead. The CPU side of the same backend (arguments, profiles, shape checks, cache keys)
is tested everywhere in ``tests/backends/test_tensorrt_cpu.py``. ``make test-gpu`` runs
them; expect tens of minutes for the whole zoo on one GPU (two engine builds per module;
the timing cache only lives for the session).

For every registered module at its registry kwargs and input shapes: export as the pipeline
does (``tests.builders.export_module``), then compare with PyTorch run on the same GPU (TF32
off in torch too) on the same standard-normal inputs:
- an fp32 engine (TF32 off) within ``tolerances.TENSORRT["fp32"]`` (atol = rtol = 1e-3,
  nrmse <= 1.4e-2),
- an fp16 engine built strongly typed from ``attn_export.fp16.convert_to_fp16``'s graph
  within ``tolerances.TENSORRT["fp16"]`` (atol 5e-2, rtol 2e-2, nrmse <= 4.5e-2); both are
  justified where they are defined, in ``attn_export/tolerances.py``,
- ONNX Runtime's CUDA provider within atol 5e-2, rtol 2e-2 and nrmse <= 1.4e-2 (what a
  cosine of 0.9999 allows): the provider allows TF32 by default (provider option
  ``use_tf32``) and ``OnnxRuntimeBackend`` passes no provider options. TF32 rounds only
  matmul/conv inputs to 11 significant bits (fp32 storage and accumulation), so its error is
  at most fp16 storage's: fp16's elementwise bounds, fp32 TensorRT's nrmse bound.
Parameters are redrawn at random (fan-in scaled) before export, so no branch hides behind
a zero-initialised gate (CrissCross's gamma, SGE's and Shuffle Attention's scales) and a
wrong engine errs by O(1).

Dynamic shapes: graphs exported with symbolic dims (``export_module(dynamic_axes=...)``)
build with an optimization profile and must match PyTorch, within the fp32 tolerances, at
every shape run inside the profile (min, opt, max and one in between); a shape outside it
is a one-line UsageError.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

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
    BuiltEngine,
    ShapeRange,
    TensorRTBackend,
    build_engine,
    tensorrt_unavailable_reason,
    trt_major_version,
)
from attn_export.compare import compare
from attn_export.errors import UsageError, VerificationError
from attn_export.fp16 import convert_to_fp16
from attn_export.onnx_export import input_names_for
from attn_export.tolerances import ORT_CUDA, TENSORRT, Tolerance
from tests.builders import build_registered, export_module

REASON = tensorrt_unavailable_reason()
if REASON is not None and os.environ.get("ATTN_EXPORT_REQUIRE_GPU") == "1":
    # A GPU CI runner must run these tests, not report them skipped.
    pytest.fail(f"ATTN_EXPORT_REQUIRE_GPU=1 but {REASON}", pytrace=False)
GPU_ONLY = [
    pytest.mark.gpu,
    pytest.mark.skipif(REASON is not None, reason=f"TensorRT/CUDA unavailable: {REASON}"),
]
ZOO = modules.list_modules()
SEED = 0


@dataclass
class ZooCase:
    name: str
    onnx_path: Path
    model: onnx.ModelProto
    feeds: dict[str, np.ndarray]
    reference: list[np.ndarray]  # PyTorch on the GPU, fp32, TF32 off


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
    backend: str, case: ZooCase, outputs: list[np.ndarray], tolerance: Tolerance
) -> None:
    check = compare(backend, case.reference, outputs, tolerance)
    assert check.passed, f"{case.name}: " + "; ".join(check.failures())


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
    cases: dict[str, ZooCase] = {}

    def prepare(name: str) -> ZooCase:
        if name not in cases:
            shapes = modules.get_spec(name).shapes
            module = build_registered(name, SEED)
            randomize_parameters(module, SEED)
            model = export_module(module, shapes)
            onnx_path = gpu_workdir / f"{name}.onnx"
            onnx.save(model, str(onnx_path))
            rng = np.random.default_rng(SEED)
            arrays = [rng.standard_normal(shape, dtype=np.float32) for shape in shapes]
            names = input_names_for(len(arrays))
            feeds = dict(zip(names, arrays, strict=True))
            reference = TorchBackend(module, names, device="cuda").run(feeds)
            cases[name] = ZooCase(name, onnx_path, model, feeds, reference)
        return cases[name]

    return prepare


def fp16_graph(case: ZooCase, directory: Path) -> Path:
    result = convert_to_fp16(case.model, case.feeds)
    path = directory / f"{case.name}.fp16.onnx"
    onnx.save(result.model, str(path))
    return path


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def run_matches(backend: TensorRTBackend, case: ZooCase, precision: str) -> None:
    assert_matches(backend.name, case, backend.run(case.feeds), TENSORRT[precision])


@pytest.mark.parametrize("name", ZOO)
class TestZooOnGpu:
    pytestmark = GPU_ONLY

    def test_fp32_engine_matches_pytorch(self, name, zoo_case, gpu_workdir):
        case = zoo_case(name)
        built = build_engine(
            case.onnx_path, precision="fp32", timing_cache=gpu_workdir / "timing.cache"
        )
        assert isinstance(built, BuiltEngine) and built.info.profile is None
        assert built.info.flags == (FLAG_STRONGLY_TYPED, FLAG_TF32_OFF)
        assert built.info.engine_sha256 == sha256(built.engine) and not built.info.cache_hit
        backend = TensorRTBackend(built.engine, precision="fp32")
        assert backend.name == "tensorrt-fp32" and backend.input_names == list(case.feeds)
        run_matches(backend, case, "fp32")
        backend.close()

    def test_fp16_engine_matches_pytorch(self, name, zoo_case, gpu_workdir):
        case = zoo_case(name)
        built = build_engine(
            fp16_graph(case, gpu_workdir),
            precision="fp16",
            timing_cache=gpu_workdir / "timing.cache",
        )
        assert built.info.precision == "fp16" and built.info.flags == (
            FLAG_STRONGLY_TYPED,
            FLAG_TF32_OFF,
        )
        backend = TensorRTBackend(built.engine, precision="fp16")
        assert backend.name == "tensorrt-fp16"
        run_matches(backend, case, "fp16")
        backend.close()

    def test_onnxruntime_cuda_matches_pytorch(self, name, zoo_case):
        case = zoo_case(name)
        backend = OnnxRuntimeBackend(str(case.onnx_path), provider="CUDAExecutionProvider")
        # ONNX Runtime falls back to CPU when the CUDA provider fails to load: insist it did not.
        assert backend.session.get_providers()[0] == "CUDAExecutionProvider"
        assert_matches(backend.name, case, backend.run(case.feeds), ORT_CUDA)


class TestEngineBuildOnGpu:
    pytestmark = GPU_ONLY

    def test_engine_cache_hits_on_same_inputs_and_misses_on_any_change(self, zoo_case, tmp_path):
        case = zoo_case("cbam")
        cache, timing = tmp_path / "cache", tmp_path / "timing.cache"
        first = build_engine(case.onnx_path, cache_dir=cache, timing_cache=timing)
        assert not first.info.cache_hit and first.info.build_seconds > 0
        assert timing.stat().st_size > 0, "the timing cache was not saved"
        assert (cache / f"{first.info.cache_key}.engine").read_bytes() == first.engine

        # the same graph as bytes: same key, engine from the cache, written where asked
        second = build_engine(case.onnx_path.read_bytes(), tmp_path / "b.engine", cache_dir=cache)
        assert second.info.cache_hit and second.info.build_seconds == 0.0
        assert second.info.cache_key == first.info.cache_key and second.engine == first.engine
        assert (tmp_path / "b.engine").read_bytes() == first.engine
        backend = TensorRTBackend(tmp_path / "b.engine", precision="fp32")  # from a file
        run_matches(backend, case, "fp32")
        backend.close()

        smaller = build_engine(case.onnx_path, cache_dir=cache, workspace_bytes=1 << 28)
        assert not smaller.info.cache_hit and smaller.info.cache_key != first.info.cache_key

        (cache / f"{first.info.cache_key}.engine").write_bytes(b"corrupted")
        rebuilt = build_engine(case.onnx_path, cache_dir=cache)
        assert not rebuilt.info.cache_hit, "a cache entry whose sha256 does not match was reused"
        assert rebuilt.info.cache_key == first.info.cache_key

    def test_engine_cache_misses_when_precision_changes(self, zoo_case, tmp_path):
        case = zoo_case("cbam")
        cache = tmp_path / "cache"
        fp32 = build_engine(case.onnx_path, cache_dir=cache)
        fp16_onnx = fp16_graph(case, tmp_path)
        fp16 = build_engine(fp16_onnx, precision="fp16", cache_dir=cache)
        assert not fp16.info.cache_hit and fp16.info.cache_key != fp32.info.cache_key
        again = build_engine(fp16_onnx, precision="fp16", cache_dir=cache)
        assert again.info.cache_hit and again.info.engine_sha256 == fp16.info.engine_sha256

    def test_legacy_fp16_flag_only_on_tensorrt_10(self, zoo_case):
        import tensorrt

        case = zoo_case("cbam")
        if trt_major_version(tensorrt.__version__) >= 11:
            with pytest.raises(UsageError, match="removed BuilderFlag.FP16"):
                build_engine(case.onnx_path, precision="fp16", legacy_fp16_flag=True)
            return
        built = build_engine(case.onnx_path, precision="fp16", legacy_fp16_flag=True)
        assert built.info.flags == (FLAG_WEAKLY_TYPED_FP16, FLAG_TF32_OFF)
        backend = TensorRTBackend(built.engine, precision="fp16")
        run_matches(backend, case, "fp16")
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
        with pytest.raises(VerificationError) as raised:
            build_engine(model.SerializeToString(), tmp_path / "never.engine")
        message = str(raised.value)
        assert "mystery" in message and "FrobnicateXyz" in message and "\n" not in message
        assert not (tmp_path / "never.engine").exists()

    def test_backend_rejects_an_engine_it_cannot_deserialize(self, tmp_path):
        garbage = tmp_path / "garbage.engine"
        garbage.write_bytes(b"\x00" * 1024)
        for engine in (garbage, garbage.read_bytes()):
            with pytest.raises(VerificationError, match="cannot deserialize"):
                TensorRTBackend(engine)


# ----------------------------------------------------------------------------- dynamic shapes


@dataclass
class DynamicCase:
    name: str
    onnx: bytes
    module: torch.nn.Module  # on the GPU, for references at any shape
    input_names: list[str]


@pytest.fixture(scope="module")
def dynamic_case(
    no_tf32,
) -> Callable[[str, Sequence[tuple[int, ...]], Mapping[int, str]], DynamicCase]:
    def prepare(
        name: str, export_shapes: Sequence[tuple[int, ...]], axes: Mapping[int, str]
    ) -> DynamicCase:
        module = build_registered(name, SEED)
        randomize_parameters(module, SEED)
        data = export_module(module, export_shapes, dynamic_axes=axes).SerializeToString()
        return DynamicCase(name, data, module.cuda(), input_names_for(len(export_shapes)))

    return prepare


def assert_runs_like_pytorch(
    case: DynamicCase, backend: TensorRTBackend, shapes: Sequence[tuple[int, ...]]
) -> None:
    """Standard-normal inputs of ``shapes`` through the engine and PyTorch (fp32, TF32 off)."""
    rng = np.random.default_rng(SEED + sum(map(sum, shapes)))
    feeds = {n: rng.standard_normal(s, dtype=np.float32) for n, s in zip(case.input_names, shapes)}
    reference = TorchBackend(case.module, case.input_names, device="cuda").run(feeds)
    outputs = backend.run(feeds)
    assert [o.shape for o in outputs] == [r.shape for r in reference], f"{case.name} at {shapes}"
    check = compare(backend.name, reference, outputs, TENSORRT["fp32"])
    assert check.passed, f"{case.name} at {shapes}: " + "; ".join(check.failures())


class TestDynamicShapesOnGpu:
    pytestmark = GPU_ONLY

    def test_batch_profile_runs_every_batch_in_range(self, dynamic_case):
        # three (B, N, C) inputs, each with a symbolic batch; exported at batch 2 so the
        # tracer does not specialise a size-1 batch
        case = dynamic_case("self_attention", [(2, 49, 512)] * 3, {0: "batch"})
        one_range = ((1, 49, 512), (1, 49, 512), (8, 49, 512))  # batch (min, opt, max) = (1, 1, 8)
        profile = {name: one_range for name in case.input_names}
        built = build_engine(case.onnx, profile=profile)
        assert built.info.profile == profile
        assert built.info.to_dict()["profile"]["input_0"] == {
            "min": [1, 49, 512],
            "opt": [1, 49, 512],
            "max": [8, 49, 512],
        }
        backend = TensorRTBackend(built.engine, precision="fp32")
        assert backend.input_ranges == profile
        for batch in (1, 3, 8, 3):  # back down again: buffers follow the shapes both ways
            assert_runs_like_pytorch(case, backend, [(batch, 49, 512)] * 3)
        backend.close()

    def test_spatial_profile_runs_at_min_opt_and_max(self, dynamic_case, tmp_path):
        case = dynamic_case("cbam", [(2, 512, 14, 14)], {0: "batch", 2: "height", 3: "width"})
        ranges: ShapeRange = ((1, 512, 7, 7), (2, 512, 14, 14), (4, 512, 28, 28))
        cache = tmp_path / "cache"
        built = build_engine(case.onnx, profile={"input": ranges}, cache_dir=cache)
        backend = TensorRTBackend(built.engine, precision="fp32")
        for shape in (*ranges, (3, 512, 9, 20)):
            assert_runs_like_pytorch(case, backend, [shape])
        backend.close()

        # the profile is part of the engine cache key
        again = build_engine(case.onnx, profile={"input": ranges}, cache_dir=cache)
        assert again.info.cache_hit and again.engine == built.engine
        wider = build_engine(
            case.onnx, profile={"input": (ranges[0], ranges[1], (4, 512, 56, 56))}, cache_dir=cache
        )
        assert not wider.info.cache_hit and wider.info.cache_key != built.info.cache_key

    def test_a_shape_outside_the_profile_is_a_one_line_error(self, dynamic_case):
        case = dynamic_case("cbam", [(2, 512, 7, 7)], {0: "batch"})
        ranges: ShapeRange = ((1, 512, 7, 7), (1, 512, 7, 7), (8, 512, 7, 7))
        backend = TensorRTBackend(build_engine(case.onnx, profile={"input": ranges}).engine)
        for shape in ((9, 512, 7, 7), (2, 512, 8, 7)):
            with pytest.raises(UsageError) as raised:
                backend.run({"input": np.zeros(shape, dtype=np.float32)})
            message = str(raised.value)
            assert message == (
                f"input 'input' shape {shape} is outside the engine's profile: "
                "min (1, 512, 7, 7), max (8, 512, 7, 7)"
            )
        assert_runs_like_pytorch(case, backend, [(8, 512, 7, 7)])  # the context still works
        backend.close()

    def test_a_dynamic_graph_without_a_profile_names_the_input(self, dynamic_case):
        case = dynamic_case("cbam", [(2, 512, 7, 7)], {0: "batch"})
        with pytest.raises(
            UsageError, match="input 'input' has dynamic dims \\(batch, 512, 7, 7\\)"
        ):
            build_engine(case.onnx)
