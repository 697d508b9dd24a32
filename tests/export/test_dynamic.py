"""Dynamic shapes: symbolic axes in the graph, the min/opt/max profile, verification at its
corners."""

from __future__ import annotations

import pytest
import torch

import attn_export
from attn_export import modules
from attn_export.dynamic import profile_points, resolve_profiles
from attn_export.errors import UsageError, VerificationError
from attn_export.tolerances import FP32
from tests.builders import assert_file_matches, input_dims
from tests.conftest import read_manifest


def test_cbam_with_a_symbolic_batch_runs_at_1_3_and_8(cli, tmp_path):
    run = cli("cbam", "--shape", "1,512,7,7", "--dynamic", "batch", "--out", "out")
    assert run.returncode == 0, run.stdout + run.stderr
    assert input_dims(tmp_path / "out" / "cbam.onnx") == {"input": ["batch", 512, 7, 7]}
    manifest = read_manifest(tmp_path / "out", "cbam")
    assert manifest["inputs"][0]["dynamic"] == {
        "name": "input",
        "dynamic_axes": {"0": "batch"},
        "min": [1, 512, 7, 7],
        "opt": [1, 512, 7, 7],
        "max": [8, 512, 7, 7],
    }
    batches = sorted({d["shapes"][0][0] for d in manifest["draws"]["verify"]})
    assert batches == [1, 3, 8] and all(c["passed"] for c in manifest["checks"])


def test_a_dynamic_graph_matches_torch_at_sizes_it_was_never_checked_at(tmp_path):
    result = attn_export.export("se", shapes=[(2, 512, 7, 7)], out_dir=tmp_path, dynamic="batch")
    model = result.runners["built"].module
    for batch in (2, 5, 16):
        assert_file_matches(result.onnx_path, model, (batch, 512, 7, 7), seed=batch, tol=FP32)


def test_spatial_axes_with_a_given_profile(tmp_path):
    result = attn_export.export(
        "cbam",
        shapes=[(2, 64, 8, 8)],
        out_dir=tmp_path,
        kwargs={"channel": 64},
        dynamic="batch,height,width",
        min_shapes=[(1, 64, 4, 4)],
        max_shapes=[(4, 64, 16, 12)],
    )
    assert input_dims(result.onnx_path) == {"input": ["batch", 64, "height", "width"]}
    points = {
        d["point"]: d["shapes"][0]
        for d in result.manifest["draws"]["verify"]
        if d["point"] != "opt"
    }
    assert points["min"] == [1, 64, 4, 4] and points["max"] == [4, 64, 16, 12]
    assert 1 < points["between"][0] < 4 and result.passed


def test_an_axis_the_math_fixes_is_a_usage_error_that_says_why(cli):
    spec = modules.get_spec("gather_excite")
    assert "height" not in spec.dynamic and spec.fixed_because
    run = cli("gather_excite", "--dynamic", "batch,height")
    assert run.returncode == 2 and "cannot take a dynamic height" in run.stderr
    assert spec.fixed_because in run.stderr and run.stderr.count("\n") == 1


def test_a_batch_baked_into_a_reshape_fails_verification(tmp_path):
    class Baked(torch.nn.Module):
        def forward(self, x):
            # a Python int: the tracer freezes the export batch into the graph
            batch = int(x.shape[0])
            return torch.softmax(x.reshape(batch, 8, -1), -1).reshape(batch, 8, 4, 4)

    with pytest.raises(VerificationError, match="at min|at max|at between"):
        attn_export.export(Baked(), shapes=[(2, 8, 4, 4)], out_dir=tmp_path, dynamic="batch")
    assert not (tmp_path / "Baked.onnx").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dynamic", "depth"], "expected a comma-separated subset"),
        (["--min-shape", "1,512,7,7"], "give --dynamic too"),
        (["--dynamic", "tokens"], "cannot take a dynamic tokens"),
        (["--dynamic", "batch", "--max-shape", "0,512,7,7"], "dimensions must be positive"),
        (["--dynamic", "batch", "--min-shape", "4,512,7,7"], "min <= opt <= max"),
        (["--dynamic", "batch", "--max-shape", "8,256,7,7"], "dim 1 is not dynamic"),
    ],
)
def test_bad_dynamic_options_are_one_line_usage_errors(cli, args, message):
    run = cli("cbam", *args)
    assert run.returncode == 2 and message in run.stderr and run.stderr.count("\n") == 1, run.stderr


def test_default_profile_and_points():
    (profile,) = resolve_profiles(
        ["input"],
        [(2, 64, 8, 8)],
        ["batch", "height"],
        [{"batch": 0, "height": 2, "width": 3}],
        multiple=2,
        given={},
    )
    assert (profile.min, profile.opt, profile.max) == ((1, 64, 4, 8), (2, 64, 8, 8), (8, 64, 16, 8))
    points = dict(profile_points([profile], [(2, 64, 8, 8)], ["input"], multiple=2))
    between = points["between"][0]
    assert between[0] == 3 and between[2] % 2 == 0 and 8 < between[2] < 16
    with pytest.raises(UsageError, match="no input has a tokens axis"):
        resolve_profiles(
            ["input"], [(2, 64, 8, 8)], ["tokens"], [{"batch": 0, "height": 2, "width": 3}], 1, {}
        )
