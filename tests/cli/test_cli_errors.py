"""Bad invocations through the real CLI: exit code, one-line message, no traceback, no files left.

Each case runs ``python -m attn_export`` in a fresh folder with ``--out out`` (where the
command takes it) and checks what a user sees.
"""

from __future__ import annotations

import os
import pickle
import random
from pathlib import Path

import pytest
import torch

from attn_export import modules
from tests.conftest import run_cli

USAGE, VERIFY, ENVIRONMENT = 2, 1, 3


class _RunsCode:
    """Unpickling this object would run a shell command (it must never happen)."""

    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def _write_weights(folder: Path) -> None:
    """Every weights file the cases below refer to."""
    torch.save(modules.create_module("cbam").state_dict(), folder / "cbam.pt")
    torch.save(modules.create_module("se", channel=64).state_dict(), folder / "se64.pt")
    good = folder / "se.pt"
    torch.save(modules.create_module("se").state_dict(), good)
    data = good.read_bytes()
    (folder / "truncated.pt").write_bytes(data[: len(data) // 2])
    (folder / "garbage.pt").write_bytes(random.Random(0).randbytes(4096))
    (folder / "empty.pt").write_bytes(b"")
    (folder / "truncated.safetensors").write_bytes(b'\x10\x00\x00\x00\x00\x00\x00\x00{"a":')
    torch.save({"weight": _RunsCode()}, folder / "evil.pt")
    (folder / "evil.pkl").write_bytes(pickle.dumps(_RunsCode()))
    torch.save([torch.zeros(2)], folder / "list.pt")
    (folder / "adir").mkdir()
    (folder / "a_file").write_text("not a folder")
    (folder / "corrupt.onnx").write_bytes(b"\x08\x07garbage" * 10)
    (folder / "oom.py").write_text(
        "import torch\n"
        "class Block(torch.nn.Module):\n"
        "    def forward(self, x):\n"
        "        raise MemoryError('Unable to allocate 40.0 GiB for an array')\n"
    )
    (folder / "bare.py").write_text(
        "import torch\n"
        "class Block(torch.nn.Module):\n"
        "    def forward(self, x):\n"
        "        assert x.shape[-1] % 8 == 0\n"
        "        return x * 2\n"
    )
    (folder / "nanmodel.py").write_text(
        "import torch\n"
        "class NaNBlock(torch.nn.Module):\n"
        "    def forward(self, x):\n"
        "        return x * float('nan')\n"
    )


CASES = [
    # (id, args, exit code, words the message must contain)
    ("unknown-module", ["cbma"], USAGE, "did you mean"),
    ("unknown-no-match", ["qqqqqqq"], USAGE, "unknown module"),
    ("name-is-a-path", ["./models/cbam.py"], USAGE, "looks like a file path"),
    ("shape-rank", ["cbam", "--shape", "1,512,7"], USAGE, "rank 4"),
    ("shape-non-numeric", ["cbam", "--shape", "1,a,7,7"], USAGE, "not an integer"),
    ("shape-zero", ["cbam", "--shape", "1,0,7,7"], USAGE, "positive"),
    ("shape-negative", ["cbam", "--shape", "1,-512,7,7"], USAGE, "positive"),
    ("shape-empty", ["cbam", "--shape", ""], USAGE, "--shape"),
    (
        "shape-count",
        ["self_attention", "--shape", "1,49,512", "--shape", "1,49,512"],
        USAGE,
        "takes 3 input",
    ),
    (
        "channels-disagree-default",
        ["cbam", "--shape", "1,256,7,7"],
        USAGE,
        "cannot take input shape",
    ),
    (
        "channels-disagree-set",
        ["se", "--set", "channel=64", "--shape", "1,32,7,7"],
        USAGE,
        "cannot take input shape",
    ),
    (
        "groups-not-dividing",
        ["shuffle", "--set", "channel=60", "--shape", "1,60,7,7"],
        USAGE,
        "shuffle",
    ),
    ("unknown-set-key", ["cbam", "--set", "channels=64"], USAGE, "accepted: channel"),
    ("set-wrong-type", ["cbam", "--set", "reduction=abc"], USAGE, "cannot build cbam"),
    ("set-twice", ["se", "--set", "channel=64", "--set", "channel=128"], USAGE, "given twice"),
    ("set-no-equals", ["cbam", "--set", "reduction"], USAGE, "KEY=VALUE"),
    ("weights-missing", ["se", "--weights", "nope.pt"], USAGE, "does not exist"),
    ("weights-directory", ["se", "--weights", "adir"], USAGE, "not a file"),
    ("weights-garbage", ["se", "--weights", "garbage.pt"], USAGE, "cannot read weights"),
    ("weights-empty", ["se", "--weights", "empty.pt"], USAGE, "cannot read weights"),
    ("weights-truncated", ["se", "--weights", "truncated.pt"], USAGE, "cannot read weights"),
    ("safetensors-truncated", ["se", "--weights", "truncated.safetensors"], USAGE, "safetensors"),
    ("weights-other-module", ["se", "--weights", "cbam.pt"], USAGE, "missing keys"),
    ("weights-wrong-shapes", ["se", "--weights", "se64.pt"], USAGE, "wrong shapes"),
    ("weights-not-a-state-dict", ["se", "--weights", "list.pt"], USAGE, "state dict"),
    ("weights-run-code", ["se", "--weights", "evil.pt"], USAGE, "refused"),
    ("weights-raw-pickle", ["se", "--weights", "evil.pkl"], USAGE, "weights"),
    ("out-is-a-file", ["cbam", "--out", "a_file"], USAGE, "is a file"),
    ("out-under-a-file", ["cbam", "--out", "a_file/sub"], USAGE, "cannot create --out"),
    ("opset-low", ["cbam", "--opset", "8"], USAGE, "opset 8"),
    ("opset-high", ["cbam", "--opset", "30"], USAGE, "opset 30"),
    ("opset-not-int", ["cbam", "--opset", "seventeen"], USAGE, "integer"),
    ("atol-negative", ["cbam", "--atol", "-1e-4"], USAGE, "--atol"),
    ("rtol-negative", ["cbam", "--rtol", "-0.5"], USAGE, "--rtol"),
    ("atol-nan", ["cbam", "--atol", "nan"], USAGE, "--atol"),
    ("no-arguments", [], USAGE, "required"),
    ("unknown-option", ["cbam", "--frobnicate"], USAGE, "unrecognized"),
    ("info-unknown", ["info", "cbma"], USAGE, "did you mean"),
    ("check-missing", ["check", "missing.onnx"], USAGE, "missing.onnx"),
    ("check-corrupt", ["check", "corrupt.onnx"], USAGE, "corrupt.onnx"),
    ("import-missing", ["nosuchpkg.models:build", "--shape", "1,3,8,8"], USAGE, "cannot import"),
    ("import-no-attr", ["nanmodel:Missing", "--shape", "1,3,8,8"], USAGE, "no attribute"),
    ("import-needs-shape", ["nanmodel:NaNBlock"], USAGE, "--shape"),
    ("nan-output", ["nanmodel:NaNBlock", "--shape", "1,3,8,8"], VERIFY, "NaN"),
    (
        "bare-assert-in-model",
        ["bare:Block", "--shape", "1,3,5,5"],
        USAGE,
        "bare.py:4: assert x.shape[-1] % 8 == 0",
    ),
    ("model-out-of-memory", ["oom:Block", "--shape", "1,3,4,4"], ENVIRONMENT, "out of memory"),
    ("shape-too-big-for-memory", ["se", "--shape", "1,512,100000,100000"], USAGE, "GiB of memory"),
    (
        "shape-not-window-multiple",
        ["biformer", "--shape", "1,30,30,64"],
        USAGE,
        "multiples of n_win=7",
    ),
    # bench checks its output files before the (long) run, not when writing them
    ("bench-unknown-module", ["bench", "cbma"], USAGE, "did you mean"),
    ("bench-json-no-folder", ["bench", "se", "--json", "nowhere/b.json"], USAGE, "does not exist"),
    ("bench-json-is-folder", ["bench", "se", "--json", "adir"], USAGE, "is a folder"),
    ("bench-plot-not-png", ["bench", "se", "--plot", "b.svg"], USAGE, ".png"),
    ("bench-threads-zero", ["bench", "se", "--threads", "0"], USAGE, "--threads"),
    ("bench-import-needs-shape", ["bench", "nanmodel:NaNBlock"], USAGE, "--shape"),
    (
        "bench-shape-for-two-names",
        ["bench", "se", "cbam", "--shape", "1,512,7,7"],
        USAGE,
        "exactly one NAME",
    ),
    ("bench-bad-shape", ["bench", "cbam", "--shape", "1,512,7"], USAGE, "rank 4"),
    ("bench-names-and-all", ["bench", "--all", "se"], USAGE, "not both"),
    (
        "all-pattern-matches-nothing",
        ["all", "--pattern", "zz*"],
        USAGE,
        "no registered module matches",
    ),
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad-input")
    _write_weights(folder)
    return folder


@pytest.mark.parametrize("args, code, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_invocation(args, code, words, workdir, tmp_path):
    before = set(os.listdir(workdir))
    takes_out = args and args[0] not in ("info", "check", "list", "bench") and "--out" not in args
    run = run_cli(list(args) + (["--out", str(tmp_path / "out")] if takes_out else []), cwd=workdir)
    output = run.stdout + run.stderr
    assert run.returncode == code, output
    assert "Traceback" not in output
    message = (
        run.stderr.strip().splitlines()
        if code in (USAGE, ENVIRONMENT)
        else [run.stdout.strip().splitlines()[-1]]
    )
    assert len(message) == 1, f"expected one line, got: {run.stderr!r}"
    assert words.lower() in message[0].lower(), message[0]
    leftovers = list((tmp_path / "out").rglob("*")) if (tmp_path / "out").exists() else []
    assert not leftovers, f"files left in --out: {leftovers}"
    assert set(os.listdir(workdir)) - {"__pycache__"} == before - {"__pycache__"}, (
        "files appeared in the working folder"
    )
    assert not (workdir / "PWNED").exists(), "unpickling ran code"


def test_at_least_thirty_cases():
    assert len(CASES) >= 30
