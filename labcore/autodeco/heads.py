"""AutoDeco's two heads on a frozen LM (official design, HF/TRL path).
Taught in notebooks/01_autodeco.ipynb, section "The heads".

temperature head: h -> Linear(d, 256) -> ReLU -> Linear(256, 1) -> sigmoid * 2      => T in (0, 2)
top-p head:       [h, T.detach(), 4 stats of softmax(l / (T + 1e-8))] -> Linear(d + 5, 256) -> ReLU
                  -> Linear(256, 1) -> sigmoid                                        => P in (0, 1)
"""

from __future__ import annotations

import torch
from torch import nn


def distribution_stats(logits: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """The top-p head's 4 extra inputs, without gradient: [max p, entropy, var(p) (unbiased), top-5 mass].

    Args: logits [..., V], temperature [...]. Returns [..., 4].
    """
    with torch.no_grad():
        p = torch.softmax(logits.float() / (temperature.float()[..., None] + 1e-8), dim=-1)
        entropy = -(p * torch.log(p + 1e-8)).sum(-1)
        top5 = p.topk(min(5, p.shape[-1]), dim=-1).values.sum(-1)
        var = p.var(-1, unbiased=True) if p.shape[-1] > 1 else torch.zeros_like(entropy)
        return torch.stack([p.max(-1).values, entropy, var, top5], dim=-1)


class AutoDecoHeads(nn.Module):
    """forward(hidden_states [..., d], logits [..., V]) -> (temperature [...], top_p [...])."""

    def __init__(self, d_model: int, hidden: int = 256):
        super().__init__()
        if d_model <= 0 or hidden <= 0:
            raise ValueError(f"d_model and hidden must be > 0, got {d_model}, {hidden}")
        self.temp_head = nn.Sequential(nn.Linear(d_model, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.top_p_head = nn.Sequential(nn.Linear(d_model + 5, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, hidden_states: torch.Tensor, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if hidden_states.shape[:-1] != logits.shape[:-1]:
            raise ValueError(f"hidden_states {tuple(hidden_states.shape)} and logits {tuple(logits.shape)} "
                             "must share leading dims")
        h = hidden_states.float()
        temperature = torch.sigmoid(self.temp_head(h)).squeeze(-1) * 2.0  # (0, 2)
        stats = distribution_stats(logits, temperature)  # no grad
        x = torch.cat([h, temperature.detach()[..., None], stats], dim=-1)  # [..., d + 5]
        top_p = torch.sigmoid(self.top_p_head(x)).squeeze(-1)  # (0, 1)
        return temperature, top_p
