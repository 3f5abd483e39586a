"""Safetensors checkpoints: atomic writes, sha256, and the data/MANIFEST.json of shipped artifacts.

No pickle anywhere: tensors go to .safetensors, small metadata (step, config) to its string header.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / "data"
MANIFEST = DATA_DIR / "MANIFEST.json"


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor],
                 metadata: dict[str, Any] | None = None) -> str:
    """Atomically save tensors (+ JSON-able metadata) as safetensors; return the file's sha256.

    A `<path>.sha256` sidecar is written too, so `load_tensors` can verify any checkpoint.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # safetensors refuses shared storage (tied weights) and non-contiguous views: store plain copies
    plain = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    header = {"labcore": json.dumps(metadata or {}, sort_keys=True)}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(plain, tmp, metadata=header)
        digest = sha256_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    atomic_write_bytes(str(path) + ".sha256", f"{digest}  {path.name}\n".encode())
    return digest


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return json.loads((f.metadata() or {}).get("labcore", "{}"))


def load_tensors(path: str | os.PathLike, expected_sha256: str | None = None,
                 device: str = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load a safetensors file after checking its sha256 (given, or from the .sha256 sidecar)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    sidecar = Path(str(path) + ".sha256")
    if expected_sha256 is None and sidecar.exists():
        expected_sha256 = sidecar.read_text().split()[0]
    if expected_sha256 is not None:
        actual = sha256_file(path)
        if actual != expected_sha256:
            raise ValueError(f"sha256 mismatch for {path}: expected {expected_sha256}, got {actual} "
                             "(file corrupted or replaced; rebuild it)")
    return load_file(str(path), device=device), read_metadata(path)


# ---- data/MANIFEST.json: the shipped artifacts ---------------------------------------------------

def read_manifest(manifest: str | os.PathLike = MANIFEST) -> dict[str, dict[str, Any]]:
    p = Path(manifest)
    return json.loads(p.read_text())["artifacts"] if p.exists() else {}


def register_artifact(name: str, path: str | os.PathLike, provenance: str, rebuild: str,
                      manifest: str | os.PathLike = MANIFEST) -> dict[str, Any]:
    """Record an artifact (sha256, size, how it was made, the command that rebuilds it)."""
    path = Path(path)
    entries = read_manifest(manifest)
    entry = {"path": os.path.relpath(path, Path(manifest).parent), "sha256": sha256_file(path),
             "bytes": path.stat().st_size, "provenance": provenance, "rebuild": rebuild}
    entries[name] = entry
    body = json.dumps({"artifacts": dict(sorted(entries.items()))}, indent=2) + "\n"
    atomic_write_bytes(manifest, body.encode())
    return entry


def artifact_path(name: str, manifest: str | os.PathLike = MANIFEST, verify: bool = True) -> Path:
    """Path of a shipped artifact, sha256-checked against the manifest."""
    entries = read_manifest(manifest)
    if name not in entries:
        raise KeyError(f"artifact {name!r} not in {manifest}; known: {sorted(entries)}")
    entry = entries[name]
    path = Path(manifest).parent / entry["path"]
    if verify and sha256_file(path) != entry["sha256"]:
        raise ValueError(f"artifact {name!r} at {path} does not match its sha256 in the manifest; "
                         f"rebuild with: {entry['rebuild']}")
    return path
