"""The registry: lookup, patterns, defaults, errors."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch

from attn_export import modules
from attn_export.modules import UnknownModuleError


def test_unknown_name_lists_close_matches():
    with pytest.raises(UnknownModuleError, match=r"did you mean .*cbam"):
        modules.create_module("cbma")


def test_unknown_name_without_close_match_still_says_how_to_list():
    with pytest.raises(UnknownModuleError, match="attn-export list"):
        modules.get_spec("zzzzzzzz")


def test_list_modules_pattern():
    names = modules.list_modules("*self_attention")
    assert (
        names == sorted(names)
        and "self_attention" in names
        and "simplified_self_attention" in names
    )
    assert modules.list_modules("no-such-*") == []


def test_create_module_without_keywords_uses_registry_defaults():
    spec = modules.get_spec("cbam")
    model = modules.create_module("cbam")
    assert isinstance(model, spec.cls)
    out = model.eval()(*(torch.randn(s) for s in spec.shapes))
    assert tuple(out.shape) == spec.shapes[0]


def test_keywords_override_defaults():
    model = modules.create_module("se", channel=64, reduction=4)
    assert model(torch.randn(2, 64, 3, 5)).shape == (2, 64, 3, 5)


@pytest.mark.parametrize("name", modules.list_modules())
def test_every_spec_is_complete(name):
    spec = modules.get_spec(name)
    assert spec.paper and spec.url.startswith("http")
    assert spec.shapes and all(all(d > 0 for d in s) for s in spec.shapes)
    doc = __import__(spec.cls.__module__, fromlist=["_"]).__doc__ or ""
    assert spec.url in doc, f"{spec.cls.__module__} docstring should cite {spec.url}"


GOLDEN_DIR = Path(__file__).parent / "golden"


@pytest.mark.parametrize("name", modules.list_modules())
def test_one_name_per_module(name):
    """File = registry name = golden file = test id: a module is found from its name alone."""
    spec = modules.get_spec(name)
    defined_in = Path(inspect.getfile(spec.cls))
    assert defined_in.stem == name, f"{spec.class_name} is registered as {name!r} in {defined_in}"
    assert (GOLDEN_DIR / f"{name}.npz").is_file(), f"no golden vectors tests/zoo/golden/{name}.npz"
