"""The workflows users bring: their own model by import path, NHWC graphs, the zoo report, bench."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import onnxruntime as ort
import pytest
import torch

DETECTOR = textwrap.dedent(
    """
    '''A YOLO-style toy detector with attention blocks from attn-export inserted.'''
    import torch
    from torch import nn

    from attn_export.modules import CBAMBlock, SEAttention


    def conv(c_in, c_out, stride):
        return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.SiLU())


    class TinyDetector(nn.Module):
        def __init__(self, num_classes: int = 80, width: int = 16):
            super().__init__()
            self.stem = conv(3, width, 2)
            self.stage1 = nn.Sequential(conv(width, 2 * width, 2), SEAttention(channel=2 * width, reduction=4))
            self.stage2 = nn.Sequential(conv(2 * width, 4 * width, 2), CBAMBlock(channel=4 * width, reduction=4, kernel_size=3))
            self.head = nn.Conv2d(4 * width, 5 + num_classes, 1)

        def forward(self, x):
            return self.head(self.stage2(self.stage1(self.stem(x))))


    def build(num_classes: int = 80, width: int = 16) -> nn.Module:
        return TinyDetector(num_classes=num_classes, width=width)
    """
)


@pytest.fixture
def detector_package(tmp_path):
    package = tmp_path / "mydet"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "models.py").write_text(DETECTOR)
    return tmp_path


def test_user_model_by_import_path_with_weights(cli, detector_package):
    import sys

    sys.path.insert(0, str(detector_package))
    try:
        from mydet.models import build

        torch.manual_seed(3)
        model = build(num_classes=3).eval()
        with torch.no_grad():  # non-trivial BatchNorm statistics, as a trained model has
            for module in model.modules():
                if isinstance(module, torch.nn.BatchNorm2d):
                    module.running_mean.uniform_(-0.5, 0.5)
                    module.running_var.uniform_(0.5, 2.0)
        torch.save(model.state_dict(), detector_package / "det.pt")
    finally:
        sys.path.remove(str(detector_package))
        sys.modules.pop("mydet.models", None)
        sys.modules.pop("mydet", None)
    run = cli(
        "mydet.models:build",
        "--shape",
        "1,3,64,64",
        "--set",
        "num_classes=3",
        "--weights",
        "det.pt",
        "--out",
        "o",
    )
    assert run.returncode == 0, run.stdout + run.stderr
    manifest = json.loads((detector_package / "o" / "TinyDetector.json").read_text())
    assert manifest["source"] == "mydet.models:build" and manifest["class"] == "TinyDetector"
    assert manifest["outputs"][0]["shape"] == [1, 8, 8, 8]
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64), dtype=np.float32)
    (got,) = ort.InferenceSession(str(detector_package / "o" / "TinyDetector.onnx")).run(
        None, {"input": x}
    )
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)


def test_bench_takes_a_user_model_and_other_shapes(cli, detector_package):
    run = cli(
        "bench",
        "mydet.models:build",
        "--shape",
        "1,3,64,64",
        "--set",
        "num_classes=3",
        "--json",
        "b.json",
        "--threads",
        "1",
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    (row,) = json.loads((detector_package / "b.json").read_text())["rows"]
    assert row["name"] == "TinyDetector" and row["shapes"] == [
        [1, 3, 64, 64]
    ]  # named as export names it
    # the FLOPs are those of the model built with --set, at --shape
    import sys

    from torch.utils.flop_counter import FlopCounterMode

    sys.path.insert(0, str(detector_package))
    try:
        from mydet.models import build

        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            build(num_classes=3).eval()(torch.zeros(1, 3, 64, 64))
    finally:
        sys.path.remove(str(detector_package))
        sys.modules.pop("mydet.models", None)
        sys.modules.pop("mydet", None)
    assert row["flops"] == counter.get_total_flops()
    registry = cli(
        "bench",
        "cbam",
        "--shape",
        "1,512,14,14",
        "--set",
        "reduction=8",
        "--json",
        "c.json",
        timeout=600,
    )
    assert registry.returncode == 0, registry.stdout + registry.stderr
    assert json.loads((detector_package / "c.json").read_text())["rows"][0]["shapes"] == [
        [1, 512, 14, 14]
    ]


def test_user_class_by_import_path(cli, detector_package):
    run = cli("mydet.models:TinyDetector", "--shape", "2,3,32,48", "--out", "o")
    assert run.returncode == 0, run.stdout + run.stderr


def test_nhwc_graph_takes_and_returns_channel_last(cli, tmp_path):
    run = cli("cbam", "--nhwc", "--shape", "1,7,9,64", "--set", "channel=64", "--out", "o")
    assert run.returncode == 0, run.stdout + run.stderr
    session = ort.InferenceSession(str(tmp_path / "o" / "cbam.onnx"))
    assert session.get_inputs()[0].shape == [1, 7, 9, 64]
    assert session.get_outputs()[0].shape == [1, 7, 9, 64]
    # Parity against PyTorch on the permuted tensors, with the same seeded weights.
    from attn_export import modules

    torch.manual_seed(0)
    module = modules.create_module("cbam", channel=64).eval()
    x = np.random.default_rng(1).standard_normal((1, 7, 9, 64), dtype=np.float32)
    (got,) = session.run(None, {"input": x})
    with torch.no_grad():
        expected = module(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)
    assert json.loads((tmp_path / "o" / "cbam.json").read_text())["layout"] == "NHWC"


def test_nhwc_refuses_other_ranks(cli):
    run = cli("external", "--nhwc", "--out", "o")
    assert run.returncode == 2 and "four-dimensional" in run.stderr


def test_all_writes_every_graph_and_three_reports(cli, tmp_path):
    run = cli("all", "--pattern", "e*", "--out", "zoo", "--fp16")
    assert run.returncode == 0, run.stdout + run.stderr
    from attn_export import modules

    names = modules.list_modules("e*")
    zoo = tmp_path / "zoo"
    for name in names:
        assert (zoo / f"{name}.onnx").exists() and (zoo / f"{name}.json").exists()
    report = json.loads((zoo / "report.json").read_text())
    assert report["summary"]["passed"] == len(names)
    backends = {(r["module"], r["backend"]): r for r in report["rows"]}
    for name in names:
        assert backends[(name, "onnxruntime-cpu")]["status"] == "passed"
        if not torch.cuda.is_available():
            for gpu_backend in ("onnxruntime-cuda", "tensorrt-fp32", "tensorrt-fp16"):
                assert backends[(name, gpu_backend)]["status"] == "not run: no GPU"
        # the fp16 graph's CPU check stands in the TensorRT fp16 row: its verdict and fp32 islands
        kept = len(json.loads((zoo / f"{name}.json").read_text())["fp16"]["fp32_nodes"])
        assert backends[(name, "tensorrt-fp16")]["note"] == (
            f"fp16 graph checked on CPU (float16 storage simulated): passed, {kept} node(s) kept in fp32"
        )
        assert (zoo / f"{name}.fp16.onnx").exists()
    assert "| onnxruntime-cpu | static | passed |" in (zoo / "report.md").read_text()
    assert (zoo / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_prints_ratios_and_writes_json_and_plot(cli, tmp_path):
    run = cli(
        "bench",
        "se",
        "eca",
        "--json",
        "b.json",
        "--plot",
        "b.png",
        "--sweep",
        "--profile",
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "geometric mean eager/ORT time ratio" in run.stdout and "matmul peak" in run.stdout
    data = json.loads((tmp_path / "b.json").read_text())
    assert [r["name"] for r in data["rows"]] == ["se", "eca"]
    for row in data["rows"]:
        assert row["eager"]["median_ms"] > 0 and row["ort"]["median_ms"] > 0
        assert row["ratio"] == pytest.approx(row["eager"]["median_ms"] / row["ort"]["median_ms"])
        # --profile: ORT's own per-op kernel times; both modules pool with ReduceMean
        kernels = row["ort_kernel_ms"]
        assert "ReduceMean" in kernels and all(ms > 0 for ms in kernels.values()), kernels
        assert f"profile {row['name']}: kernels" in run.stdout
    assert {s["name"] for s in data["sweep"]} == {"se", "eca"}
    assert (tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"


def test_profile_summary_gives_shares_and_the_gemm_share():
    from attn_export.bench import describe_profile

    line = describe_profile({"MatMul": 3.0, "Softmax": 1.0, "Gather": 0.5, "FusedMatMul": 0.5})
    assert line.startswith(
        "kernels 5.000 ms/run: MatMul 60%, Softmax 20%, Gather 10%, FusedMatMul 10%"
    )
    assert line.endswith("matmul/conv kernels 70% of kernel time")
    assert describe_profile({}) == "no kernel events"


def test_bench_needs_names_or_all(cli):
    run = cli("bench")
    assert run.returncode == 2 and "--all" in run.stderr


def test_sweep_tells_quadratic_from_linear_and_constant():
    from attn_export.bench import sweep_module

    growth = {
        name: sweep_module(name)
        for name in ("simplified_self_attention", "crisscross", "bam", "se")
    }
    # self-attention's N x N scores; criss-cross: each pixel attends along its row and column,
    # N * (H + W - 1); BAM's convs grow with H*W; SE's FC layers see only the pooled vector
    assert {name: entry["growth"] for name, entry in growth.items()} == {
        "simplified_self_attention": "quadratic",
        "crisscross": "N^1.5",
        "bam": "linear",
        "se": "constant",
    }, {name: entry["term_shares"] for name, entry in growth.items()}
    attention = growth["simplified_self_attention"]
    assert [p["positions"] for p in attention["points"]] == [49, 196, 784, 1764, 3136]
    assert [p["positions"] for p in growth["bam"]["points"]] == [
        49,
        196,
        784,
        1764,
        3136,
    ]  # 7x7 .. 56x56
    fixed = sweep_module("gfnet")  # its filter is built for 14x14 tokens: one size, no growth law
    assert [p["positions"] for p in fixed["points"]] == [196] and fixed["growth"] is None


def test_flop_growth_splits_exact_power_laws():
    from attn_export.bench import SWEEP_SIDES, flop_growth

    sides = np.array(SWEEP_SIDES, dtype=np.int64)
    n = sides * sides
    mixed = flop_growth(
        list(n), list(300 * n + n * n)
    )  # equal linear and quadratic terms at 300 positions
    assert mixed["growth"] == "quadratic"
    assert mixed["term_shares"]["quadratic"] == pytest.approx(3136 / (300 + 3136), abs=1e-6)
    assert mixed["flop_exponent"] == pytest.approx(
        np.log((300 * 3136 + 3136**2) / (300 * 1764 + 1764**2)) / np.log(3136 / 1764)
    )
    criss_cross = flop_growth(list(n), list(n * (2 * sides - 1)))  # N * (H + W - 1)
    assert criss_cross["growth"] == "N^1.5" and criss_cross["term_shares"]["linear"] < 0
    shrinking_conv = flop_growth(
        list(n), list(9 * (sides - 2) ** 2)
    )  # padding 0: (H - 2)^2 outputs
    assert shrinking_conv["growth"] == "linear"
    assert flop_growth(list(n), list(7 * n))["growth"] == "linear"
    assert flop_growth(list(n), [5] * 5)["growth"] == "constant"
    assert flop_growth(list(n), [0] * 5)["growth"] == "constant"
    # counts rounded by strides are no sum of powers: the last step's exponent decides
    rounded = flop_growth(list(n), [100 * (s // 3) ** 2 for s in SWEEP_SIDES])
    assert rounded["growth"] == "linear" and rounded["term_shares"] == {}
    assert flop_growth([49], [10])["growth"] is None  # one size says nothing about growth
