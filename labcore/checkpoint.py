"""Safetensors checkpoints: crash-safe writes, required sha256, and the data/MANIFEST.json of artifacts.

No pickle anywhere: tensors go to .safetensors, small metadata (step, config) to its string header.

Crash safety (kill -9 at any instant leaves a loadable, verified checkpoint once one was saved):
    1. write the new file to a hidden temp file in the same folder, fsync      -> digest D_new
    2. atomically rewrite the `<path>.sha256` sidecar listing D_new *and* D_old  (old file still valid)
    3. os.replace(temp, path), fsync the folder                                  (new file now valid)
    4. atomically rewrite the sidecar with D_new alone
Between any two steps the sidecar lists the digest of whatever file `path` holds. Temp files left by
a killed writer are removed by the next save (and by `train` when it starts).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_bytes
from safetensors.torch import save_file

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / "data"
MANIFEST = DATA_DIR / "MANIFEST.json"
_HEX64 = re.compile(r"[0-9a-f]{64}")


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (power loss); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _tmp_prefix(path: Path) -> str:
    return f".{path.name}."


def clean_stale_tmp(path: str | os.PathLike) -> list[Path]:
    """Remove temp files a killed writer left next to `path` (and its sidecar); return what was removed.

    Only one process may write a given checkpoint (rank 0 under DDP), so any such file is an orphan.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    removed = []
    for tmp in path.parent.glob(f"{_tmp_prefix(path)}*.tmp"):
        try:
            tmp.unlink()
            removed.append(tmp)
        except FileNotFoundError:
            pass
    return removed


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_tmp_prefix(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _sidecar(path: Path) -> Path:
    return Path(str(path) + ".sha256")


def read_sidecar(path: str | os.PathLike) -> list[str]:
    """The digests the `<path>.sha256` sidecar accepts (first = newest). ValueError if missing/malformed."""
    path = Path(path)
    sidecar = _sidecar(path)
    if not sidecar.exists():
        raise ValueError(f"no sha256 for {path}: its sidecar {sidecar.name} is missing, so the file cannot "
                         "be verified; pass expected_sha256=... or re-save it with save_tensors")
    digests = [line.split()[0] for line in sidecar.read_text(errors="replace").splitlines() if line.split()]
    if not digests:
        raise ValueError(f"no sha256 for {path}: its sidecar {sidecar.name} is empty; "
                         "pass expected_sha256=... or re-save it with save_tensors")
    bad = [d for d in digests if not _HEX64.fullmatch(d)]
    if bad:
        raise ValueError(f"sha256 sidecar {sidecar} is malformed: {bad[0][:80]!r} is not a 64-digit hex "
                         "digest; re-save the checkpoint")
    return digests


def _write_sidecar(path: Path, digests: list[str]) -> None:
    lines = [f"{digests[0]}  {path.name}"] + [f"{d}  {path.name} (previous, during a save)" for d in digests[1:]]
    atomic_write_bytes(_sidecar(path), ("\n".join(lines) + "\n").encode())


def _current_digest(path: Path) -> str | None:
    """Digest of the complete checkpoint at `path` now, if it is a verified one (else None)."""
    if not path.exists():
        return None
    try:
        listed = read_sidecar(path)
    except ValueError:
        return None
    if len(listed) == 1:  # the steady state: trust the sidecar, no need to re-read the file
        return listed[0]
    actual = sha256_file(path)  # a save was interrupted: see which of the listed files this is
    return actual if actual in listed else None


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor],
                 metadata: dict[str, Any] | None = None) -> str:
    """Crash-safely save tensors (+ JSON-able metadata) as safetensors; return the file's sha256.

    A `<path>.sha256` sidecar is written too, so `load_tensors` can verify any checkpoint (see the
    module docstring for the write order that survives kill -9).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_tmp(path)
    # safetensors refuses shared storage (tied weights) and non-contiguous views: store plain copies
    plain = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    header = {"labcore": json.dumps(metadata or {}, sort_keys=True)}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_tmp_prefix(path), suffix=".tmp")
    os.close(fd)
    try:
        save_file(plain, tmp, metadata=header)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        digest = sha256_file(tmp)
        old = _current_digest(path)
        _write_sidecar(path, [digest] + ([old] if old and old != digest else []))
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _write_sidecar(path, [digest])
    return digest


def _header_metadata(data: bytes) -> dict[str, Any]:
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    return json.loads((header.get("__metadata__") or {}).get("labcore", "{}"))


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON metadata of a safetensors file (unverified: for display, not for loading)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return json.loads((f.metadata() or {}).get("labcore", "{}"))


def load_tensors(path: str | os.PathLike, expected_sha256: str | None = None,
                 device: str = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load a safetensors file after checking its sha256: `expected_sha256`, else the `.sha256` sidecar.

    The hash is required: a missing, empty or malformed sidecar raises ValueError (nothing loads
    unverified). The bytes that are hashed are the bytes that are parsed, so the file cannot change
    between the check and the load.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if expected_sha256 is not None:
        if not isinstance(expected_sha256, str) or not _HEX64.fullmatch(expected_sha256):
            raise ValueError(f"expected_sha256 must be a 64-digit lowercase hex string, got {expected_sha256!r}")
        accepted = [expected_sha256]
    else:
        accepted = read_sidecar(path)
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual not in accepted:
        raise ValueError(f"sha256 mismatch for {path}: expected {accepted[0]}, got {actual} "
                         "(file corrupted or replaced; rebuild it)")
    try:
        tensors = load_bytes(data)
        meta = _header_metadata(data)
    except Exception as e:  # the digest matched, so the writer stored something that is not safetensors
        raise ValueError(f"{path} matches its sha256 but is not a readable safetensors file: {e}") from e
    if device != "cpu":
        tensors = {k: v.to(device) for k, v in tensors.items()}
    return tensors, meta


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
