"""``--shape`` and ``--set`` parsers, with hypothesis; ``--dynamic``'s axis names."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from attn_export import modules
from attn_export.errors import UsageError
from attn_export.parsing import AXES, MAX_DIM, parse_assignment, parse_shape, parse_value

dims = st.lists(st.integers(1, MAX_DIM), min_size=1, max_size=6)


@given(dims, st.sampled_from([",", ", ", "x"]))
def test_shape_round_trip(values, separator):
    assert parse_shape(separator.join(map(str, values))) == tuple(values)


@given(dims)
def test_bracketed_shape(values):
    assert parse_shape(json.dumps(values)) == tuple(values)


@given(dims, st.integers(0, 5), st.integers(-(10**6), 0))
def test_zero_or_negative_dim_is_refused(values, position, bad):
    values = list(values)
    values.insert(min(position, len(values)), bad)
    with pytest.raises(UsageError, match="positive"):
        parse_shape(",".join(map(str, values)))


@given(st.text(alphabet="abc.;- _/", min_size=1, max_size=8))
def test_non_numeric_shape_is_refused(junk):
    with pytest.raises(UsageError):
        parse_shape(f"1,{junk},7")


@pytest.mark.parametrize("text", ["", ",", "1,,7", "1.5,2", "1e3"])
def test_malformed_shapes(text):
    with pytest.raises(UsageError):
        parse_shape(text)


@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=5),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
        ),
        max_leaves=8,
    )
)
def test_json_values_round_trip(value):
    assert parse_value(json.dumps(value)) == value


@pytest.mark.parametrize(
    "text, value",
    [
        ("true", True),
        ("false", False),
        ("True", True),
        ("null", None),
        ("None", None),
        ("[1,3]", [1, 3]),
        ("(1, 3)", (1, 3)),
        ("0.2", 0.2),
        ("relu", "relu"),
        ("'a'", "a"),
    ],
)
def test_literal_spellings(text, value):
    assert parse_value(text) == value


@given(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True), st.integers())
def test_assignment(key, number):
    assert parse_assignment(f"{key}={number}") == (key, number)


@pytest.mark.parametrize("text", ["channel", "=3", "1x=3", "channel=", "a b=1"])
def test_bad_assignments(text):
    with pytest.raises(UsageError):
        parse_assignment(text)


def test_the_cli_parser_knows_the_registry_axes():
    assert AXES == modules.DYNAMIC_AXES
