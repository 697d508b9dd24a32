"""The wheel ships every package of the source tree (pyproject lists them by hand, because
the zoo maps from ``modules/`` to ``attn_export.modules``)."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT

tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from 3.11")


def test_pyproject_lists_every_package():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    in_tree = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "attn_export").rglob("__init__.py")
    }
    in_tree |= {"attn_export.modules", "attn_export.data"}  # the zoo; the parser's op table
    assert set(config["packages"]) == in_tree
    assert config["package-dir"] == {"attn_export.modules": "modules"}
