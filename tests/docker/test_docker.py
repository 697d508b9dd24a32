"""Static checks of the Docker images (no Docker engine needed): what a build would trip on.

Every base image is pinned (a tag other than ``latest``, or a digest); every COPY/ADD source
exists in the build context (the repo root) and is not dropped by ``.dockerignore``; both
images run ``attn-export`` as their entrypoint with ``/work`` as the working folder; the CPU
image takes torch from the PyTorch CPU index and the TensorRT image installs the ``gpu``
extra; ``.dockerignore`` keeps the virtualenv and git history out of the context.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT

DOCKERFILES = {
    "cpu": ROOT / "docker" / "Dockerfile.cpu",
    "trt": ROOT / "docker" / "Dockerfile.trt",
}


@dataclass
class Instruction:
    keyword: str
    arguments: str
    line: int


def parse_dockerfile(path: Path) -> list[Instruction]:
    """Instructions with line continuations joined and comments dropped."""
    instructions: list[Instruction] = []
    pending, start = "", 0
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction
        start = start if pending else number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        instructions.append(Instruction(keyword.upper(), arguments.strip(), start))
        pending = ""
    assert not pending, f"{path.name}: the file ends inside a continued line"
    return instructions


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    last_from = max(i for i, ins in enumerate(instructions) if ins.keyword == "FROM")
    return instructions[last_from:]


def image_reference(from_arguments: str, args: dict[str, str]) -> str:
    """The image of a FROM line, with ARG defaults substituted and --platform dropped."""
    words = [w for w in from_arguments.split() if not w.startswith("--")]
    reference = words[0]
    for name, value in args.items():
        reference = reference.replace(f"${{{name}}}", value).replace(f"${name}", value)
    return reference


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def ignored_by_dockerignore(relative: str, patterns: list[str]) -> bool:
    """Docker's rule, for the patterns we use: the last matching pattern wins, ``!`` re-includes,
    and a path is excluded when it or a folder above it matches."""
    parts = Path(relative).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        glob = pattern.lstrip("!").strip("/")
        globs = [glob, glob[3:]] if glob.startswith("**/") else [glob]
        if any(fnmatch.fnmatchcase(c, g) for c in candidates for g in globs):
            excluded = not negate
    return excluded


def copy_sources(instruction: Instruction) -> list[str]:
    """Sources of a COPY/ADD (shell or JSON form); [] for COPY --from=<stage>."""
    arguments = instruction.arguments
    words = json.loads(arguments) if arguments.startswith("[") else shlex.split(arguments)
    if any(w.startswith("--from=") for w in words):
        return []
    paths = [w for w in words if not w.startswith("--")]
    assert len(paths) >= 2, (
        f"line {instruction.line}: {instruction.keyword} needs a source and a destination"
    )
    return paths[:-1]


@pytest.fixture(params=sorted(DOCKERFILES), scope="module")
def dockerfile(request):
    path = DOCKERFILES[request.param]
    assert path.is_file(), f"{path} is missing"
    return request.param, parse_dockerfile(path)


def test_every_base_image_is_pinned(dockerfile):
    name, instructions = dockerfile
    args: dict[str, str] = {}
    stages: list[str] = []
    froms = 0
    for ins in instructions:
        if ins.keyword == "ARG" and "=" in ins.arguments:
            key, _, value = ins.arguments.partition("=")
            args[key.strip()] = value.strip().strip('"')
        if ins.keyword != "FROM":
            continue
        froms += 1
        reference = image_reference(ins.arguments, args)
        alias = re.search(r"\s+AS\s+(\S+)\s*$", ins.arguments, flags=re.IGNORECASE)
        if reference in stages:  # FROM an earlier stage
            continue
        assert "$" not in reference, f"{name} line {ins.line}: unresolved variable in {reference!r}"
        image, _, digest = reference.partition("@")
        tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
        assert digest.startswith("sha256:") or (tag and tag != "latest"), (
            f"{name} line {ins.line}: base image {reference!r} is not pinned to a tag or digest"
        )
        if alias:
            stages.append(alias.group(1))
    assert froms >= 1, f"{name}: no FROM"


def test_copy_sources_exist_in_the_build_context(dockerfile):
    name, instructions = dockerfile
    patterns = dockerignore_patterns()
    copies = [ins for ins in instructions if ins.keyword in ("COPY", "ADD")]
    assert copies, f"{name}: the image copies nothing from the repo"
    for ins in copies:
        for source in copy_sources(ins):
            assert not source.startswith(("http://", "https://")), f"{name}: ADD from a URL"
            matches = (
                list(ROOT.glob(source)) if any(c in source for c in "*?[") else [ROOT / source]
            )
            assert matches and all(m.exists() for m in matches), (
                f"{name} line {ins.line}: {source!r} is not in the build context (repo root)"
            )
            for match in matches:
                relative = match.relative_to(ROOT).as_posix()
                assert not ignored_by_dockerignore(relative, patterns), (
                    f"{name} line {ins.line}: {relative!r} is excluded by .dockerignore"
                )


def test_entrypoint_is_attn_export_in_work(dockerfile):
    name, instructions = dockerfile
    stage = final_stage(instructions)
    entrypoints = [ins for ins in stage if ins.keyword == "ENTRYPOINT"]
    assert entrypoints, f"{name}: no ENTRYPOINT in the final stage"
    assert json.loads(entrypoints[-1].arguments) == ["attn-export"]
    workdirs = [ins.arguments for ins in stage if ins.keyword == "WORKDIR"]
    assert workdirs and workdirs[-1] == "/work", f"{name}: outputs belong in /work"


def run_commands(path: Path) -> str:
    """All RUN commands of a Dockerfile, with the ARG defaults substituted."""
    instructions = parse_dockerfile(path)
    text = " ".join(ins.arguments for ins in instructions if ins.keyword == "RUN")
    for ins in instructions:
        if ins.keyword == "ARG" and "=" in ins.arguments:
            key, _, value = ins.arguments.partition("=")
            text = text.replace(f"${{{key.strip()}}}", value.strip().strip('"'))
    return text


def test_images_install_through_the_pyproject():
    runs = {name: run_commands(path) for name, path in DOCKERFILES.items()}
    assert re.search(r"pip install[^&]*\s\.(\s|$)", runs["cpu"]), "cpu image: pip install ."
    assert "download.pytorch.org/whl/cpu" in runs["cpu"] and "+cpu" in runs["cpu"]
    assert re.search(r"pip install[^&]*[\"']?\.\[[^\]]*\bgpu\b[^\]]*\]", runs["trt"]), (
        "trt image: pip install '.[gpu]'"
    )


def test_the_gpu_extra_brings_tensorrt_and_onnxruntime_gpu():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    gpu = " ".join(project["optional-dependencies"]["gpu"])
    assert "onnxruntime-gpu" in gpu and "tensorrt" in gpu
    assert project["scripts"]["attn-export"]


def test_dockerignore_keeps_environment_and_history_out():
    patterns = dockerignore_patterns()
    for path in (".venv", ".venv/bin/python", ".git", ".git/HEAD", "attn_export_out/cbam.onnx"):
        assert ignored_by_dockerignore(path, patterns), f".dockerignore lets {path} in"
    for path in ("pyproject.toml", "README.md", "attn_export/cli.py", "modules/cbam.py"):
        assert not ignored_by_dockerignore(path, patterns), f".dockerignore drops {path}"
