"""Launched by tests/test_train.py under `torchrun --nproc_per_node 2`: trains a tiny GPT with DDP
(gloo on CPU) and saves each rank's final weights, so the test can compare them."""

import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F

from labcore.checkpoint import save_tensors
from labcore.nn import GPT, GPTConfig
from labcore.train import TrainConfig, batch_generator, train


def main(out_dir: str) -> None:
    torch.manual_seed(0)  # same init on every rank (DDP also broadcasts rank 0's weights)
    model = GPT(GPTConfig(vocab_size=32, block_size=16, n_layer=1, n_head=2, d_model=32))

    def batch_fn(step, rank, world):
        x = torch.randint(0, 32, (4, 17), generator=batch_generator(0, step, rank))
        return x[:, :-1], x[:, 1:]

    def loss_fn(m, batch):
        x, y = batch
        return F.cross_entropy(m(x).reshape(-1, 32), y.reshape(-1))

    res = train(model, loss_fn, batch_fn, TrainConfig(steps=5, lr=1e-2, progress=False))
    rank = dist.get_rank()
    save_tensors(f"{out_dir}/rank{rank}.safetensors", model.state_dict(),
                 {"rank": rank, "world": dist.get_world_size(), "first_loss": res.losses[0]})
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
