"""The engine cache and the timing cache.

The engine cache stores ``cache_dir/<key>.engine`` with a ``<key>.json`` record beside it,
where the key hashes everything that decides the engine's content: the ONNX graph's sha256,
the TensorRT version, the GPU name and compute capability, the precision, the build flags,
the workspace limit and the profile. Any change there is a different key, so a stale engine
is never reused; an entry whose bytes do not match the sha256 in its record is rebuilt.

The timing cache file (tactic timings) is loaded before and saved after each build, so
builds of the same layers on the same GPU get faster; it does not change what is correct.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...atomic import atomic_write
from .profile import Profile, profile_to_json

# Bumped when the cache entry layout or the meaning of a build flag changes.
CACHE_SCHEMA = "attn-export-engine-v2"


def engine_cache_key(
    onnx_sha256: str,
    trt_version: str,
    gpu_name: str,
    compute_capability: str,
    precision: str,
    flags: Sequence[str],
    workspace_bytes: int,
    profile: Profile | None = None,
) -> str:
    """sha256 over everything that decides an engine's content: equal keys, same engine.

    ``profile`` is the normalized one :func:`resolve_profile` returns (None: static graph).
    """
    identity = {
        "schema": CACHE_SCHEMA,
        "onnx_sha256": onnx_sha256,
        "trt_version": trt_version,
        "gpu_name": gpu_name,
        "compute_capability": compute_capability,
        "precision": precision,
        "flags": sorted(flags),
        "workspace_bytes": int(workspace_bytes),
        "profile": profile_to_json(profile),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def cache_entry(cache_dir: str | os.PathLike[str], key: str) -> Path:
    """Where the engine with cache key ``key`` lives in ``cache_dir``."""
    return Path(cache_dir) / f"{key}.engine"


def read_cache_entry(engine: Path) -> bytes | None:
    """The cached engine if its sha256 matches the one recorded beside it, else None (rebuild)."""
    record = engine.with_suffix(".json")
    if not (engine.is_file() and record.is_file()):
        return None
    try:
        recorded = json.loads(record.read_text())["engine_sha256"]
    except (ValueError, KeyError, TypeError):
        return None
    data = engine.read_bytes()
    return data if hashlib.sha256(data).hexdigest() == recorded else None


def write_cache_entry(engine_file: Path, engine: bytes, record: dict[str, Any]) -> None:
    """Store an engine and its record (which holds the sha256 :func:`read_cache_entry` checks)."""
    atomic_write(engine_file, engine)
    atomic_write(engine_file.with_suffix(".json"), json.dumps(record, indent=2))


def load_timing_cache(config: Any, path: Path) -> None:
    """Start from the saved timing cache; an unreadable or foreign one gives way to an empty one."""
    saved = path.read_bytes() if path.is_file() else b""
    try:
        cache = config.create_timing_cache(saved)
        loaded = cache is not None and config.set_timing_cache(cache, ignore_mismatch=False)
    except (RuntimeError, TypeError, ValueError):  # a truncated file must not block the build
        loaded = False
    if not loaded:
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)


def save_timing_cache(config: Any, path: Path) -> None:
    """Write the timing cache the build extended back to ``path``."""
    atomic_write(path, bytes(memoryview(config.get_timing_cache().serialize())))
