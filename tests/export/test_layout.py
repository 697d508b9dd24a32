"""``--nhwc``: a graph that takes and returns channel-last tensors, computing the module."""

from __future__ import annotations

import torch

from attn_export.tolerances import FP32
from tests.builders import assert_file_matches, build_registered, input_dims, output_dims
from tests.conftest import read_manifest


def test_nhwc_graph_takes_and_returns_channel_last(cli, tmp_path):
    run = cli("cbam", "--nhwc", "--shape", "1,7,9,64", "--set", "channel=64", "--out", "o")
    assert run.returncode == 0, run.stdout + run.stderr
    graph = tmp_path / "o" / "cbam.onnx"
    assert list(input_dims(graph).values()) == [[1, 7, 9, 64]]
    assert list(output_dims(graph).values()) == [[1, 7, 9, 64]]
    # Parity against PyTorch on the permuted tensors, with the same seeded weights.
    module = build_registered("cbam", weight_seed=0, channel=64)

    def channels_last(x: torch.Tensor) -> torch.Tensor:
        return module(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)

    assert_file_matches(graph, channels_last, (1, 7, 9, 64), seed=1, tol=FP32)
    assert read_manifest(tmp_path / "o", "cbam")["layout"] == "NHWC"


def test_nhwc_refuses_other_ranks(cli):
    run = cli("external", "--nhwc", "--out", "o")
    assert run.returncode == 2 and "four-dimensional" in run.stderr
