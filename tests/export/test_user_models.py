"""Whole user models, as people deploy them: a user's own package beside the command.

Each case is a small model written for this suite (not a zoo entry), in the package
tests/export/userproj (see its ``__init__``): a YOLO-style detector with cached anchors and
dict outputs, a smaller one with trained BatchNorm weights, models the verification must
reject; besides it, a user project with its own package called ``modules`` and the Python
API from a user's pytest.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

import attn_export
from attn_export.errors import VerificationError
from attn_export.tolerances import FP32
from tests.builders import assert_file_matches
from tests.conftest import read_manifest


def test_detector_with_cached_anchors_and_dict_outputs_exports_and_passes(cli, user_project):
    run = cli(
        "userproj.models:build", "--shape", "1,3,64,64", "--set", "num_classes=3", "--out", "out"
    )
    assert run.returncode == 0, run.stdout + run.stderr
    manifest = read_manifest(user_project / "out", "Detector")  # the class's name, not `build`
    outputs = {o["name"]: o for o in manifest["outputs"]}
    assert list(outputs) == ["output_0", "output_1.scores", "output_1.features"]
    scores = outputs["output_1.scores"]
    assert scores["path"] == [1, "scores"] and scores["shape"] == [1, 3, 64]
    assert manifest["passed"] and len(manifest["checks"]) == 4
    assert all(c["draw"].startswith("fresh") for c in manifest["checks"])  # never the traced input


def test_name_sets_the_artifact_names(cli, user_project):
    run = cli("userproj.models:build", "--shape", "1,3,32,32", "--name", "det-v2", "--out", "out")
    assert run.returncode == 0, run.stdout + run.stderr
    written = sorted(p.name for p in (user_project / "out").iterdir())
    assert written == ["det-v2.json", "det-v2.onnx"]
    assert "out/det-v2.onnx" in run.stdout


def trained_tiny_detector(num_classes: int) -> torch.nn.Module:
    """userproj.tiny's detector with weights from seed 3 and non-trivial BatchNorm statistics,
    as a trained model has."""
    build = importlib.import_module("userproj.tiny").build
    torch.manual_seed(3)
    model = build(num_classes=num_classes).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                assert module.running_mean is not None and module.running_var is not None
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return model


def test_user_model_by_import_path_with_weights(cli, user_project):
    model = trained_tiny_detector(num_classes=3)
    torch.save(model.state_dict(), user_project / "det.pt")
    run = cli(
        "userproj.tiny:build",
        "--shape", "1,3,64,64",
        "--set", "num_classes=3",
        "--weights", "det.pt",
        "--out", "o",
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    manifest = read_manifest(user_project / "o", "TinyDetector")
    assert manifest["source"] == "userproj.tiny:build" and manifest["class"] == "TinyDetector"
    assert manifest["outputs"][0]["shape"] == [1, 8, 8, 8]
    graph = user_project / "o" / "TinyDetector.onnx"
    assert_file_matches(graph, model, (1, 3, 64, 64), seed=0, tol=FP32)


def test_user_class_by_import_path(cli, user_project):
    run = cli("userproj.tiny:TinyDetector", "--shape", "2,3,32,48", "--out", "o")
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_frozen_data_dependent_branch_fails_for_every_seed(cli, user_project, seed):
    run = cli("userproj.branchy:Branchy", "--shape", "1,8,6,6", "--seed", str(seed), "--out", "out")
    assert run.returncode == 1, run.stdout + run.stderr
    failure = run.stdout.strip().splitlines()[-1]
    # names the draw it failed on
    assert failure.startswith("FAILED userproj.branchy:Branchy") and "fresh" in failure
    assert "Converting a tensor to a Python boolean" in run.stdout  # the tracer's, one line
    assert not (user_project / "out" / "Branchy.onnx").exists()  # a wrong graph is never written


def test_a_halo_style_block_exports_through_the_dynamo_fallback_quietly(cli, user_project):
    run = cli("userproj.branchy:HaloStyle", "--shape", "1,8,8,8", "--out", "out")
    assert run.returncode == 0, run.stdout + run.stderr
    # no IR dump
    assert "dynamo" in run.stdout and len(run.stdout.splitlines()) < 12 and not run.stderr
    onnx = read_manifest(user_project / "out", "HaloStyle")["onnx"]
    assert onnx["exporter"] == "dynamo" and "unfold" in onnx["exporter_fallback"]


def test_tiny_outputs_are_judged_by_their_variation_not_by_atol(user_project, tmp_path):
    with pytest.raises(VerificationError, match="of the output's variation"):
        attn_export.export(
            "userproj.branchy:TinyFlip", shapes=[(1, 8, 6, 6)], out_dir=tmp_path / "flip"
        )
    result = attn_export.export(
        "userproj.branchy:Tiny", shapes=[(1, 8, 6, 6)], out_dir=tmp_path / "tiny"
    )
    assert result.passed and result.manifest["checks"][0]["worst_nrmse"] < 1e-3


def test_users_own_modules_package_is_not_shadowed_by_the_zoo(cli, tmp_path):
    (tmp_path / "modules").mkdir()
    (tmp_path / "modules" / "__init__.py").write_text("")
    (tmp_path / "modules" / "net.py").write_text(
        "from torch import nn\n\nclass Net(nn.Sequential):\n    def __init__(self):\n"
        "        super().__init__(nn.Conv2d(3, 4, 3), nn.ReLU())\n"
    )
    run = cli("modules.net:Net", "--shape", "1,3,8,8", "--out", "out")
    assert run.returncode == 0, run.stdout + run.stderr
    assert (tmp_path / "out" / "Net.onnx").exists()


def test_user_inputs_are_verified_and_named_by_position_or_parameter(user_project, tmp_path):
    images = np.random.default_rng(5).random((2, 3, 32, 32), dtype=np.float32)  # images in [0, 1)
    np.savez(tmp_path / "pos.npz", images)
    np.savez(tmp_path / "named.npz", x=images)
    result = attn_export.export(
        "userproj.models:build",
        inputs=[tmp_path / "pos.npz", tmp_path / "named.npz"],
        out_dir=tmp_path / "out",
    )
    assert result.passed
    assert result.manifest["inputs"][0]["shape"] == [2, 3, 32, 32]  # the shape came from the inputs
    assert [c["draw"] for c in result.manifest["checks"]][-2:] == ["pos.npz", "named.npz"]


def test_user_inputs_that_do_not_fit_are_a_usage_error(cli, user_project, tmp_path):
    np.savez(tmp_path / "bad.npz", np.zeros((1, 3, 16, 16), np.float32))
    run = cli(
        "userproj.models:build", "--shape", "1,3,32,32", "--inputs", str(tmp_path / "bad.npz")
    )
    assert run.returncode == 2 and run.stdout.strip() == "attn-export userproj.models:build"
    assert run.stderr.count("\n") == 1 and "1,3,16,16" in run.stderr and "1,3,32,32" in run.stderr


def test_python_api_inside_a_users_pytest(tmp_path):
    result = attn_export.export(
        "cbam", shapes=[(2, 64, 9, 9)], out_dir=tmp_path, kwargs={"channel": 64}
    )
    assert result.passed and result.onnx_path == tmp_path / "cbam.onnx"
    assert result.onnx_path.exists()
    assert result.manifest["kwargs"]["channel"] == 64


def test_fp16_is_checked_on_the_users_inputs_at_their_own_scale(user_project, tmp_path):
    images = np.random.default_rng(7).random((1, 3, 32, 32), dtype=np.float32)  # images in [0, 1)
    np.savez(tmp_path / "images.npz", images=images)
    result = attn_export.export(
        "userproj.models:build",
        inputs=[tmp_path / "images.npz"],
        out_dir=tmp_path / "out",
        fp16=True,
    )
    fp16 = result.manifest["fp16"]
    assert result.passed and fp16["passed"] and "images.npz" in fp16["check"]["draws"]
    assert fp16["check"]["scales"] == [1.0]  # not x10 / x100: the inputs are the distribution
    assert (tmp_path / "out" / "Detector.fp16.onnx").exists()


def test_a_failed_fp16_check_still_writes_the_verified_fp32_graph(cli, tmp_path):
    (tmp_path / "bigconv.py").write_text(
        "from torch import nn\n\nclass Big(nn.Sequential):\n    def __init__(self):\n"
        "        super().__init__(nn.Conv2d(8, 8, 3, padding=1))\n"
    )
    run = cli("bigconv:Big", "--shape", "1,8,8,8", "--fp16", "--fp16-scales", "1e6", "--out", "o")
    assert run.returncode == 1, run.stdout + run.stderr
    last = run.stdout.splitlines()[-1]
    assert "fp16 graph fails" in last and "o/Big.onnx" in last
    manifest = read_manifest(tmp_path / "o", "Big")
    assert manifest["passed"] is False
    assert manifest["fp16"]["passed"] is False and manifest["fp16"]["reason"]
    assert all(c["passed"] for c in manifest["checks"])  # the fp32 graph itself verified
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["Big.json", "Big.onnx"]
