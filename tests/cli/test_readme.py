"""The README's zoo table is the registry's (regenerate with `attn-export list --markdown`)."""

from __future__ import annotations

from attn_export import modules
from attn_export.cli import zoo_table
from tests.conftest import ROOT

README = ROOT / "README.md"
START, END = "<!-- zoo table: attn-export list --markdown -->", "<!-- end of zoo table -->"


def test_readme_zoo_table_lists_every_registered_module_as_registered():
    text = README.read_text()
    assert START in text and END in text, "the README has no generated zoo table"
    table = text.split(START, 1)[1].split(END, 1)[0].strip()
    assert table == zoo_table(modules.all_specs()), (
        "README zoo table is stale: paste `attn-export list --markdown`"
    )
