"""Golden parity: our modules, loaded with the reference modules' weights, give their outputs.

The vectors in ``tests/zoo/golden`` were made by running the reference implementations (see
``tests/zoo/golden/README.md``). Tolerance: ``attn_export.tolerances.GOLDEN``, the fp32 bound
the golden set was published with; the reference ops and ours differ only in summation order.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from attn_export import modules
from attn_export.tolerances import GOLDEN

GOLDEN_DIR = Path(__file__).parent / "golden"
INDEX = json.loads((GOLDEN_DIR / "index.json").read_text())
DEFAULTS = json.loads((GOLDEN_DIR / "defaults.json").read_text())
ATOL, RTOL = GOLDEN.atol, GOLDEN.rtol  # the bound the golden set was published with


def load_golden(name: str):
    with np.load(GOLDEN_DIR / f"{name}.npz") as data:
        state = {
            k[len("state/") :]: torch.from_numpy(data[k])
            for k in data.files
            if k.startswith("state/")
        }
        n_inputs = sum(1 for k in data.files if k.startswith("input_"))
        inputs = [torch.from_numpy(data[f"input_{i}"]) for i in range(n_inputs)]
        output = torch.from_numpy(data["output"])
    return state, inputs, output


@pytest.mark.parametrize("name", sorted(INDEX))
def test_golden_parity(name):
    entry = INDEX[name]
    if name not in modules.list_modules():
        pytest.fail(f"{name} is in the golden index but not registered")
    spec = modules.get_spec(name)
    assert spec.class_name == entry["class"], "class name must match the reference"
    model = modules.create_module(name, **entry["kwargs"]).eval()
    state, inputs, expected = load_golden(name)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == {k: tuple(v) for k, v in entry["state_dict"].items()}, (
        "state_dict keys/shapes differ"
    )
    model.load_state_dict(state, strict=True)
    assert [list(x.shape) for x in inputs] == entry["inputs"]
    with torch.no_grad():
        out = model(*inputs)
    assert list(out.shape) == entry["output"]
    torch.testing.assert_close(out, expected, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("name", sorted(INDEX))
def test_registry_defaults_match_reference_readme(name):
    if name not in modules.list_modules():
        pytest.fail(f"{name} is not registered")
    spec = modules.get_spec(name)
    assert spec.kwargs == DEFAULTS[name]["kwargs"]
    assert [list(s) for s in spec.shapes] == DEFAULTS[name]["shapes"]


def test_every_registered_module_has_a_golden_test():
    missing = sorted(set(modules.list_modules()) - set(INDEX))
    assert not missing, f"registered modules without golden vectors: {missing}"


@pytest.mark.parametrize("name", sorted(INDEX))
def test_class_importable_under_reference_name(name):
    assert getattr(modules, INDEX[name]["class"], None) is not None
