"""The CLI end to end, through a subprocess, as a user runs it."""

from __future__ import annotations

import hashlib
import json

import onnx
import pytest
import torch

from attn_export import modules
from attn_export.backends.tensorrt import tensorrt_unavailable_reason
from attn_export.tolerances import FP32_SMALL
from tests.builders import assert_file_matches, build_registered
from tests.conftest import read_manifest


def test_main_job_writes_verified_onnx_and_manifest(cli, tmp_path):
    run = cli("cbam", "--shape", "1,512,7,7", "--out", "out")
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.strip().splitlines()
    assert lines[-1].startswith("PASSED cbam")
    for step in ("torch", "export", "onnxruntime"):
        assert any(line.strip().startswith(step) and " s " in line for line in lines), (
            f"no timed {step} line"
        )
    onnx_file = tmp_path / "out" / "cbam.onnx"
    manifest = read_manifest(tmp_path / "out", "cbam")
    assert manifest["module"] == "cbam" and manifest["class"] == "CBAMBlock"
    assert manifest["kwargs"] == {"channel": 512, "reduction": 16, "kernel_size": 7}
    assert manifest["inputs"] == [{"name": "input", "shape": [1, 512, 7, 7], "dtype": "float32"}]
    assert manifest["onnx"]["file"] == "cbam.onnx"
    assert manifest["onnx"]["sha256"] == hashlib.sha256(onnx_file.read_bytes()).hexdigest()
    assert manifest["onnx"]["opset"] == 17
    assert manifest["onnx"]["nodes_exported"] >= manifest["onnx"]["nodes_simplified"] > 0
    for package in ("torch", "onnx", "onnxruntime", "onnxsim"):
        assert manifest["versions"][package]
    checks = manifest["checks"]
    assert len(checks) == 4 and all(c["draw"].startswith("fresh") for c in checks)  # never traced
    for check in checks:
        assert {"backend", "draw", "max_abs_err", "worst_nrmse"} <= set(check)
        assert {"atol", "rtol", "max_nrmse", "passed"} <= set(check)
        assert check["passed"] and check["atol"] == 1e-4 and check["rtol"] == 1e-4
        assert check["worst_nrmse"] < 1e-3
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")], (
        "temporary files left behind"
    )


def test_same_module_same_weights_gives_byte_identical_onnx(cli, tmp_path):
    for folder in ("a", "b"):
        run = cli("cbam", "--out", folder)
        assert run.returncode == 0, run.stderr
    first, second = (read_manifest(tmp_path / folder, "cbam") for folder in ("a", "b"))
    graphs = [(tmp_path / folder / "cbam.onnx").read_bytes() for folder in ("a", "b")]
    assert graphs[0] == graphs[1]
    assert first["onnx"]["sha256"] == second["onnx"]["sha256"]
    # The manifest holds what reproduces the file: module, kwargs, seed, opset, versions.
    for key in ("module", "kwargs", "seed", "inputs", "versions"):
        assert first[key] == second[key]
    other_seed = cli("cbam", "--out", "c", "--seed", "1")
    assert other_seed.returncode == 0
    assert read_manifest(tmp_path / "c", "cbam")["onnx"]["sha256"] != first["onnx"]["sha256"]


def test_user_weights_with_other_arguments_and_shape(cli, tmp_path):
    model = build_registered("se", weight_seed=123, channel=64)
    torch.save(model.state_dict(), tmp_path / "w.pt")
    run = cli("se", "--weights", "w.pt", "--set", "channel=64", "--shape", "2,64,5,9", "--out", "o")
    assert run.returncode == 0, run.stdout + run.stderr
    manifest = read_manifest(tmp_path / "o", "se")
    assert manifest["kwargs"]["channel"] == 64
    assert manifest["inputs"][0]["shape"] == [2, 64, 5, 9]
    weights_sha = hashlib.sha256((tmp_path / "w.pt").read_bytes()).hexdigest()
    assert manifest["weights"]["sha256"] == weights_sha
    # The exported graph computes the user's trained module, not the seeded initial one.
    assert_file_matches(tmp_path / "o" / "se.onnx", model, (2, 64, 5, 9), seed=5, tol=FP32_SMALL)


def test_safetensors_weights(cli, tmp_path):
    from safetensors.torch import save_file

    model = modules.create_module("eca")
    save_file(model.state_dict(), str(tmp_path / "w.safetensors"))
    run = cli("eca", "--weights", "w.safetensors", "--out", "o")
    assert run.returncode == 0, run.stdout + run.stderr


def test_set_values_parse_as_json_or_python_literals(cli):
    run = cli(
        "sk", "--set", "kernels=[1,3]", "--set", "channel=64", "--shape", "1,64,7,7", "--out", "o"
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_list_json_covers_the_registry(cli):
    run = cli("list", "--json")
    assert run.returncode == 0
    rows = json.loads(run.stdout)
    assert [r["name"] for r in rows] == modules.list_modules()
    assert {"name", "class", "shapes", "kwargs", "paper"} <= set(rows[0])
    text = cli("list")
    assert text.stdout.strip().splitlines()[-1] == f"{len(rows)} modules"


def test_list_pattern_plain_text_matches_anywhere(cli):
    plain = cli("list", "self", "--json")
    assert [r["name"] for r in json.loads(plain.stdout)] == [
        "self_attention",
        "simplified_self_attention",
    ]
    glob = cli("list", "self*")
    assert glob.stdout.split()[0] == "self_attention" and glob.stdout.strip().endswith("1 module")


def test_info_shows_defaults_and_paper(cli):
    run = cli("info", "cbam")
    assert run.returncode == 0
    assert "CBAMBlock" in run.stdout and "arxiv.org" in run.stdout and "1,512,7,7" in run.stdout


def test_help_documents_exit_codes(cli):
    run = cli("--help")
    assert run.returncode == 0
    for line in (
        "0  passed",
        "1  verification failed",
        "2  usage or input error",
        "3  environment missing",
    ):
        assert line in run.stdout


def test_trt_without_tensorrt_keeps_verified_onnx_and_exits_3(cli, tmp_path):
    reason = tensorrt_unavailable_reason()
    if reason is None:
        pytest.skip("TensorRT and CUDA are present here; tests/gpu/test_gpu.py covers --trt")
    run = cli("cbam", "--trt", "--out", "o")
    assert run.returncode == 3, run.stdout + run.stderr
    message = (run.stdout + run.stderr).strip().splitlines()[-1]
    assert "no TensorRT engine built" in message and "Traceback" not in run.stderr
    assert (tmp_path / "o" / "cbam.onnx").exists()
    manifest = read_manifest(tmp_path / "o", "cbam")
    assert manifest["tensorrt"]["status"] == "not run" and manifest["tensorrt"]["reason"] == reason
    assert not (tmp_path / "o" / "cbam.engine").exists()


def test_fp16_graph_is_written_with_its_islands_and_checked(cli, tmp_path):
    run = cli("simam", "--fp16", "--out", "o")
    assert run.returncode == 0, run.stdout + run.stderr
    fp16 = read_manifest(tmp_path / "o", "simam")["fp16"]
    assert fp16["passed"] and fp16["trt_parser_check"]["passed"]
    assert {c["scale"] for c in fp16["checks"]} == {1, 10, 100}
    assert fp16["fp32_nodes"], "simam overflows float16 at x100; its island must be listed"
    graph = onnx.load(str(tmp_path / "o" / "simam.fp16.onnx")).graph
    float_ = onnx.TensorProto.FLOAT
    assert [i.type.tensor_type.elem_type for i in graph.input] == [float_]
    assert [o.type.tensor_type.elem_type for o in graph.output] == [float_]
    assert any(n.op_type == "Cast" for n in graph.node)
