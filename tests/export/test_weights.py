"""Loading a user's weights: wrapped state dicts as they are, damaged files as one-line errors."""

from __future__ import annotations

import warnings

import pytest
import torch
from safetensors.torch import save_file

from attn_export import modules
from attn_export.errors import UsageError
from attn_export.weights import load_weights, read_state_dict
from tests.conftest import damaged_copies


def test_weights_saved_from_data_parallel_load_as_they_are(tmp_path):
    torch.manual_seed(3)
    trained = modules.create_module("se", channel=32)
    # every key under `module.`
    torch.save(torch.nn.DataParallel(trained).state_dict(), tmp_path / "dp.pt")
    fresh = modules.create_module("se", channel=32)
    load_weights(fresh, tmp_path / "dp.pt")
    pairs = zip(fresh.state_dict().values(), trained.state_dict().values())
    assert all(torch.equal(a, b) for a, b in pairs)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_damaged_weight_files_are_usage_errors(tmp_path, suffix):
    """Random bytes, and real files cut short or with bytes flipped: every one a one-line
    UsageError, whatever the loader underneath raises."""
    good = tmp_path / f"good{suffix}"
    state = {
        k: v.contiguous()
        for k, v in modules.create_module("se", channel=16, reduction=4).state_dict().items()
    }
    if suffix == ".pt":
        torch.save(state, good)
    else:
        save_file(state, str(good))
    path = tmp_path / f"damaged{suffix}"
    blobs = damaged_copies(good.read_bytes(), seed=1234, random_blobs=60, truncated=30, flipped=30)
    blobs.append(b"\x80\xdc" + bytes(64))  # pickle PROTO 220: torch warns, then fails
    for blob in blobs:
        path.write_bytes(blob)
        with warnings.catch_warnings(record=True) as caught:  # the error is the only output
            warnings.simplefilter("always")
            try:
                read_state_dict(path)
            except UsageError as error:
                assert "\n" not in str(error) and "weights" in str(error)
        assert not caught, [str(w.message) for w in caught]
        # a flipped byte inside tensor data leaves a loadable file: that is not an error
