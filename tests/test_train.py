"""The trainer: exact resume, checkpoints, DDP on CPU (gloo), schedule, errors."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from labcore.checkpoint import load_tensors
from labcore.nn import GPT, GPTConfig
from labcore.train import TrainConfig, batch_generator, lr_at, train

CFG = GPTConfig(vocab_size=40, block_size=16, n_layer=1, n_head=2, d_model=32, dropout=0.1)


def batch_fn(step, rank, world):
    x = torch.randint(0, 40, (4, 17), generator=batch_generator(3, step, rank))
    return x[:, :-1], x[:, 1:]


def loss_fn(model, batch):
    x, y = batch
    return F.cross_entropy(model(x).reshape(-1, 40), y.reshape(-1))


def fresh_model():
    torch.manual_seed(0)
    return GPT(CFG)


def test_killed_and_resumed_run_matches_uninterrupted(tmp_path):
    # dropout is on, so this also checks the RNG state travels with the checkpoint
    full = train(fresh_model(), loss_fn, batch_fn, TrainConfig(steps=8, lr=1e-2, progress=False))
    cfg = dict(steps=8, lr=1e-2, progress=False, ckpt_dir=str(tmp_path), ckpt_every=2)
    first = train(fresh_model(), loss_fn, batch_fn, TrainConfig(**cfg, stop_at=5))  # "killed" after 5
    assert len(first.losses) == 5
    torch.manual_seed(1234)  # a new process would start from another RNG state
    resumed = train(fresh_model(), loss_fn, batch_fn, TrainConfig(**cfg))
    assert resumed.start_step == 5
    # exact equality is expected: same batches, same states, same op order on one thread pool
    assert resumed.losses == full.losses[5:], "resume must reproduce the uninterrupted losses exactly"


def test_checkpoint_is_safetensors_with_sha256(tmp_path):
    model = fresh_model()
    train(model, loss_fn, batch_fn, TrainConfig(steps=2, lr=1e-3, progress=False, ckpt_dir=str(tmp_path),
                                                ckpt_every=1))
    ckpt = tmp_path / "last.safetensors"
    assert ckpt.exists() and Path(str(ckpt) + ".sha256").exists()
    assert not list(tmp_path.glob("*.tmp")), "atomic write left a temp file behind"
    tensors, meta = load_tensors(ckpt)
    assert meta["step"] == 2
    torch.testing.assert_close(tensors["model.tok_emb.weight"], model.tok_emb.weight.detach())
    data = bytearray(ckpt.read_bytes())
    data[-1] ^= 0xFF  # corrupt one byte
    ckpt.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256 mismatch"):
        load_tensors(ckpt)


def test_eval_hook_and_grad_clip():
    model = fresh_model()
    res = train(model, loss_fn, batch_fn,
                TrainConfig(steps=4, lr=1e-3, eval_every=2, grad_clip=1e-3, progress=False),
                eval_fn=lambda m: {"val": 1.0})
    assert [e["step"] for e in res.evals] == [2, 4]
    assert all(r["grad_norm"] > 0 for r in res.history)


def test_lr_schedule_warmup_then_cosine():
    cfg = TrainConfig(steps=100, lr=1.0, warmup=10, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1)
    assert lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(100, cfg) == pytest.approx(0.1)
    assert lr_at(55, cfg) == pytest.approx(0.55)


@pytest.mark.parametrize("kwargs, match", [
    (dict(steps=0), "steps"), (dict(steps=1, lr=0), "lr"), (dict(steps=1, grad_clip=-1), "grad_clip"),
    (dict(steps=1, ckpt_every=1), "ckpt_dir"), (dict(steps=2, lr=float("nan")), "lr"),
    (dict(steps=2, lr=float("inf")), "lr"), (dict(steps=2.5), "steps"),
    (dict(steps=2, weight_decay=-1.0), "weight_decay"),
    (dict(steps=2, betas=(1.5, 0.9)), "betas"), (dict(steps=2, warmup=-1), "warmup"),
    (dict(steps=2, min_lr_ratio=2.0), "min_lr_ratio"), (dict(steps=2, grad_clip=float("nan")), "grad_clip")])
def test_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


@pytest.mark.slow
def test_ddp_two_gloo_ranks_hold_identical_weights(tmp_path):
    worker = Path(__file__).with_name("ddp_worker.py")
    with socket.socket() as sock:  # a free port: torchrun's --master_port 0 does not rendezvous here
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_addr", "127.0.0.1", "--master_port", str(port), str(worker), str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    w0, m0 = load_tensors(tmp_path / "rank0.safetensors")
    w1, m1 = load_tensors(tmp_path / "rank1.safetensors")
    assert m0["world"] == m1["world"] == 2
    assert m0["first_loss"] != m1["first_loss"], "ranks should see different batches"
    for k in w0:
        torch.testing.assert_close(w0[k], w1[k], rtol=0, atol=0, msg=f"{k} differs between ranks")
    torch.manual_seed(0)
    init = GPT(GPTConfig(vocab_size=32, block_size=16, n_layer=1, n_head=2, d_model=32)).state_dict()
    assert not torch.equal(init["tok_emb.weight"], w0["tok_emb.weight"]), "weights never changed"
