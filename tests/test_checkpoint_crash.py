"""Checkpoints survive kill -9 at any instant: a child process saves in a loop and is SIGKILLed at
random moments; after every kill the loader must find a complete, sha256-verified checkpoint (the new
or the previous one), and the next start must leave no orphan temp file. Plus the hash is required and
resume refuses a changed config."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from labcore import checkpoint
from labcore.nn import GPT, GPTConfig
from labcore.train import TrainConfig, batch_generator, train

KILLS = 20


# A fork server: one interpreter imports torch once (single-threaded, so forking is safe), then forks a
# fresh save loop per kill. Each child saves forever, step i holding tensors filled with i (so data and
# metadata must agree); the server reaps it after the test's SIGKILL.
# fsync is near-free on tmpfs; a real disk takes milliseconds, which is what opens the crash windows
SERVER = r"""
import os, sys, time, torch
torch.set_num_threads(1)
_fsync = os.fsync
os.fsync = lambda fd: (time.sleep(0.002), _fsync(fd))[1]
from labcore import checkpoint
for line in sys.stdin:
    path, step = line.split()
    pid = os.fork()
    if pid == 0:
        try:
            try:  # Linux: die with the server, so a failed test never leaves a save loop running
                import ctypes
                ctypes.CDLL(None).prctl(1, 9)
            except Exception:
                pass
            i = int(step)
            while True:
                i += 1
                checkpoint.save_tensors(path, {"w": torch.full((64, 1024), float(i)),
                                               "b": torch.full((7,), float(i))}, {"step": i})
        finally:
            os._exit(1)
    print(pid, flush=True)
    os.waitpid(pid, 0)
    print("reaped", flush=True)
"""


def _orphans(path):
    return sorted(p.name for p in path.parent.glob(f".{path.name}.*.tmp"))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")
def test_kill9_during_save_loop_always_leaves_a_verified_checkpoint(tmp_path):
    path = tmp_path / "last.safetensors"
    checkpoint.save_tensors(path, {"w": torch.zeros(64, 1024), "b": torch.zeros(7)}, {"step": 0})
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              env=env, text=True, cwd=Path(__file__).parents[1])
    rng = random.Random(0)
    loadable, mid_save, last_step, pid = 0, 0, 0, None
    try:
        t0 = time.monotonic()
        for _ in range(KILLS):
            server.stdin.write(f"{path} {last_step}\n")
            server.stdin.flush()
            line = server.stdout.readline().strip()
            assert line.isdigit(), f"fork server said {line!r}"
            pid = int(line)
            time.sleep(rng.uniform(0.0, 0.05))
            os.kill(pid, signal.SIGKILL)
            assert server.stdout.readline().strip() == "reaped"
            orphans = _orphans(path)
            mid_save += bool(orphans) or len(checkpoint.read_sidecar(path)) > 1
            tensors, meta = checkpoint.load_tensors(path)  # raises if no verified checkpoint is there
            assert torch.all(tensors["w"] == meta["step"]) and torch.all(tensors["b"] == meta["step"]), \
                "data and metadata come from different saves"
            assert meta["step"] >= last_step, "the loader went back past the previous complete checkpoint"
            last_step = meta["step"]
            loadable += 1
            checkpoint.clean_stale_tmp(path)  # what the next start (save_tensors, train) does first
            assert not _orphans(path), "a temp file survived the next start"
        elapsed = time.monotonic() - t0
    finally:  # never leave a save loop behind, whatever failed above
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        server.kill()
        server.wait(timeout=30)
    print(f"kill -9: {KILLS} kills, {loadable} loadable, {mid_save} landed mid-save, "
          f"last step {last_step}, {elapsed:.1f} s")
    assert loadable == KILLS
    assert mid_save >= 1, "no kill landed inside a save: the test did not exercise the crash window"
    assert last_step > 0, "the child never completed a save"
    assert elapsed < 30


def test_hash_is_required(tmp_path):
    path = tmp_path / "w.safetensors"
    checkpoint.save_tensors(path, {"a": torch.arange(4.0)})
    sidecar = tmp_path / "w.safetensors.sha256"
    sidecar.write_text("")
    with pytest.raises(ValueError, match="sidecar .* is empty"):
        checkpoint.load_tensors(path)
    sidecar.unlink()
    with pytest.raises(ValueError, match="sidecar .* is missing"):
        checkpoint.load_tensors(path)  # even an intact file does not load unverified
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="missing"):
        checkpoint.load_tensors(path)  # a corrupted file without sidecar must not load silently
    sidecar.write_text("nothex  w.safetensors\n")
    with pytest.raises(ValueError, match="malformed"):
        checkpoint.load_tensors(path)
    with pytest.raises(ValueError, match="expected_sha256"):
        checkpoint.load_tensors(path, expected_sha256="abc")


def test_interrupted_save_keeps_previous_checkpoint_loadable(tmp_path, monkeypatch):
    """The crash window by construction: die right after the sidecar lists both digests."""
    path = tmp_path / "c.safetensors"
    checkpoint.save_tensors(path, {"a": torch.zeros(3)}, {"step": 1})

    real_replace = os.replace

    def die(src, dst):
        if str(dst) == str(path):  # stands in for kill -9 between the sidecar write and the rename
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(checkpoint.os, "replace", die)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_tensors(path, {"a": torch.ones(3)}, {"step": 2})
    monkeypatch.undo()
    assert len(checkpoint.read_sidecar(path)) == 2  # new and previous digests listed
    tensors, meta = checkpoint.load_tensors(path)
    assert meta["step"] == 1 and torch.equal(tensors["a"], torch.zeros(3))
    checkpoint.save_tensors(path, {"a": torch.ones(3)}, {"step": 3})
    assert len(checkpoint.read_sidecar(path)) == 1
    assert checkpoint.load_tensors(path)[1]["step"] == 3


CFG = GPTConfig(vocab_size=20, block_size=8, n_layer=1, n_head=1, d_model=8)


def _bf(step, rank, world):
    x = torch.randint(0, 20, (2, 9), generator=batch_generator(0, step, rank))
    return x[:, :-1], x[:, 1:]


def _lf(model, batch):
    return F.cross_entropy(model(batch[0]).reshape(-1, 20), batch[1].reshape(-1))


def _model():
    torch.manual_seed(0)
    return GPT(CFG)


def test_resume_refuses_changed_config_unless_overridden(tmp_path):
    base = dict(steps=4, ckpt_every=1, ckpt_dir=str(tmp_path), progress=False)
    train(_model(), _lf, _bf, TrainConfig(**base, stop_at=2))
    (tmp_path / ".last.safetensors.orphan.tmp").write_bytes(b"half a file")
    with pytest.raises(ValueError, match=r"\['weight_decay', 'betas'\]"):
        train(_model(), _lf, _bf, TrainConfig(**base, weight_decay=0.1, betas=(0.8, 0.9)))
    assert not list(tmp_path.glob("*.tmp")), "train's start should clean orphan temp files"
    with pytest.raises(ValueError, match="override must name"):
        train(_model(), _lf, _bf, TrainConfig(**base), override=("dropout",))
    model = _model()
    res = train(model, _lf, _bf, TrainConfig(**base, weight_decay=0.1), override=("weight_decay",))
    assert res.start_step == 2 and len(res.losses) == 2
    meta = checkpoint.load_tensors(tmp_path / "last.safetensors")[1]
    assert meta["param_groups"][0]["weight_decay"] == 0.1, "the overridden value must win"
    assert meta["config"]["weight_decay"] == 0.1
