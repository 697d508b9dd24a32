"""Whole user models, as people deploy them: a user's own package beside the command.

Each case is a small model written for this suite (not a zoo entry): a YOLO-style detector
with the zoo's CBAM and SE inside and a head that caches its anchor grid and returns a
tuple holding a dict; models the verification must reject (a data-dependent branch, a
sign-flipped branch with outputs around 1e-5); a user project with its own package called
``modules``; the Python API from a user's pytest.
"""

from __future__ import annotations

import json
import sys
import textwrap

import numpy as np
import pytest

import attn_export
from attn_export.errors import VerificationError

DETECTOR = '''
import torch
from torch import nn
from attn_export.modules import CBAMBlock, SEAttention


class Detect(nn.Module):
    """Caches its anchor grid on the first call, as Ultralytics' Detect does."""

    def __init__(self, channels, num_classes):
        super().__init__()
        self.box = nn.Conv2d(channels, 4, 1)
        self.cls = nn.Conv2d(channels, num_classes, 1)
        self.grid = torch.empty(0)

    def forward(self, x):
        b, _, h, w = x.shape
        if self.grid.shape[-2:] != (h, w):
            ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
            self.grid = torch.stack((xs, ys), 0).float().view(1, 2, h, w)
        box = self.box(x)
        xy = (box[:, :2].sigmoid() * 2 - 0.5 + self.grid) * 8
        wh = box[:, 2:].exp()
        return torch.cat((xy, wh), 1).flatten(2), {"scores": self.cls(x).sigmoid().flatten(2), "features": x}


class Detector(nn.Module):
    def __init__(self, num_classes=3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.SiLU(), nn.Conv2d(16, 32, 3, 2, 1), nn.SiLU())
        self.cbam = CBAMBlock(channel=32, reduction=4, kernel_size=7)
        self.down = nn.Sequential(nn.Conv2d(32, 64, 3, 2, 1), nn.SiLU())
        self.se = SEAttention(channel=64, reduction=8)
        self.head = Detect(64, num_classes)

    def forward(self, x):
        return self.head(self.se(self.down(self.cbam(self.stem(x)))))


def build(num_classes=3):
    return Detector(num_classes)
'''

BRANCHY = '''
import torch
from torch import nn


class Branchy(nn.Module):
    """Takes another path for inputs with a negative mean: the tracer records only one."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        if x.mean() > 0:
            return self.conv(x)
        return self.conv(x).relu()


class TinyFlip(nn.Module):
    """Outputs around 1e-5, whose sign depends on the data: an atol of 1e-4 cannot see it."""

    def forward(self, x):
        y = torch.tanh(x) * 1e-5
        if x.mean() > 0:
            return y
        return -y


class HaloStyle(nn.Module):
    """Pads, then cuts overlapping blocks with unfold: the TorchScript exporter cannot (input size not accessible)."""

    def forward(self, x):
        padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
        blocks = padded.unfold(2, 4, 2).unfold(3, 4, 2)  # (B, C, nh, nw, 4, 4)
        return blocks.mean(dim=(-1, -2))


class Tiny(nn.Module):
    """Outputs around 1e-5, computed the same way for every input: must pass."""

    def forward(self, x):
        return torch.tanh(x) * 1e-5
'''


@pytest.fixture
def user_project(tmp_path, monkeypatch):
    """A folder holding the user's package ``userproj``, importable as the CLI would import it."""
    package = tmp_path / "userproj"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "models.py").write_text(textwrap.dedent(DETECTOR))
    (package / "branchy.py").write_text(textwrap.dedent(BRANCHY))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [n for n in sys.modules if n == "userproj" or n.startswith("userproj.")]:
        del sys.modules[name]


def test_detector_with_cached_anchors_and_dict_outputs_exports_and_passes(cli, user_project):
    run = cli(
        "userproj.models:build", "--shape", "1,3,64,64", "--set", "num_classes=3", "--out", "out"
    )
    assert run.returncode == 0, run.stdout + run.stderr
    manifest = json.loads(
        (user_project / "out" / "Detector.json").read_text()
    )  # named after the class, not `build`
    outputs = {o["name"]: o for o in manifest["outputs"]}
    assert list(outputs) == ["output_0", "output_1.scores", "output_1.features"]
    assert outputs["output_1.scores"]["path"] == [1, "scores"] and outputs["output_1.scores"][
        "shape"
    ] == [1, 3, 64]
    assert manifest["passed"] and len(manifest["checks"]) == 4
    assert all(c["draw"].startswith("fresh") for c in manifest["checks"])  # never the traced input


def test_name_sets_the_artifact_names(cli, user_project):
    run = cli("userproj.models:build", "--shape", "1,3,32,32", "--name", "det-v2", "--out", "out")
    assert run.returncode == 0, run.stdout + run.stderr
    assert sorted(p.name for p in (user_project / "out").iterdir()) == [
        "det-v2.json",
        "det-v2.onnx",
    ]
    assert "out/det-v2.onnx" in run.stdout


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_frozen_data_dependent_branch_fails_for_every_seed(cli, user_project, seed):
    run = cli("userproj.branchy:Branchy", "--shape", "1,8,6,6", "--seed", str(seed), "--out", "out")
    assert run.returncode == 1, run.stdout + run.stderr
    failure = run.stdout.strip().splitlines()[-1]
    assert (
        failure.startswith("FAILED userproj.branchy:Branchy") and "fresh" in failure
    )  # names the draw it failed on
    assert (
        "Converting a tensor to a Python boolean" in run.stdout
    )  # the tracer's warning, kept, one line
    assert not (user_project / "out" / "Branchy.onnx").exists()  # a wrong graph is never written


def test_a_halo_style_block_exports_through_the_dynamo_fallback_quietly(cli, user_project):
    run = cli("userproj.branchy:HaloStyle", "--shape", "1,8,8,8", "--out", "out")
    assert run.returncode == 0, run.stdout + run.stderr
    assert (
        "dynamo" in run.stdout and len(run.stdout.splitlines()) < 12 and not run.stderr
    )  # no IR dump
    manifest = json.loads((user_project / "out" / "HaloStyle.json").read_text())
    assert (
        manifest["onnx"]["exporter"] == "dynamo"
        and "unfold" in manifest["onnx"]["exporter_fallback"]
    )


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
    assert (
        result.passed and result.onnx_path == tmp_path / "cbam.onnx" and result.onnx_path.exists()
    )
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
    assert fp16["check"]["scales"] == [
        1.0
    ]  # not x10 / x100: the user's inputs are the distribution
    assert (tmp_path / "out" / "Detector.fp16.onnx").exists()


def test_a_failed_fp16_check_still_writes_the_verified_fp32_graph(cli, tmp_path):
    (tmp_path / "bigconv.py").write_text(
        "from torch import nn\n\nclass Big(nn.Sequential):\n    def __init__(self):\n"
        "        super().__init__(nn.Conv2d(8, 8, 3, padding=1))\n"
    )
    run = cli("bigconv:Big", "--shape", "1,8,8,8", "--fp16", "--fp16-scales", "1e6", "--out", "o")
    assert run.returncode == 1, run.stdout + run.stderr
    assert (
        "fp16 graph fails" in run.stdout.splitlines()[-1]
        and "o/Big.onnx" in run.stdout.splitlines()[-1]
    )
    manifest = json.loads((tmp_path / "o" / "Big.json").read_text())
    assert (
        manifest["passed"] is False
        and manifest["fp16"]["passed"] is False
        and manifest["fp16"]["reason"]
    )
    assert all(c["passed"] for c in manifest["checks"])  # the fp32 graph itself verified
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["Big.json", "Big.onnx"]
