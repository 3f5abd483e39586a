"""AutoDeco's training loss (official HF/TRL variant). Taught in notebooks/01_autodeco.ipynb, "The loss".

    w      = stopgrad(softmax(l)[y])                       (base model at T = 1; weights both terms)
    L_temp = mean over kept tokens  of w * CE(l / max(T, 0.01), y)
    L_topp = mean over valid tokens of w * -log(p~[y] + 1e-9),  p~ = soft_top_p(l, T, P, alpha)
    L      = L_temp + L_topp
Kept = valid (label != -100) minus "easy" tokens (argmax l == y) dropped with prob 0.6, drawn afresh each
call; as in the HF/TRL code the mask applies to L_temp only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from labcore.autodeco.soft_top_p import soft_top_p
from labcore.nn import IGNORE_INDEX
from labcore.validate import check_ids, check_real, check_tensor


def autodeco_loss(logits: torch.Tensor, temperature: torch.Tensor, top_p: torch.Tensor,
                  labels: torch.Tensor, alpha: float = 30.0, easy_drop: float = 0.6,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Args: logits [B, T, V] (frozen base, detached), temperature/top_p [B, T], labels [B, T] with
    -100 on prompt/padding. Returns (L, metrics)."""
    check_real("easy_drop", easy_drop, 0.0, 1.0, hi_open=True)
    check_tensor("logits", logits, min_dim=1, kind="float")
    lead = tuple(logits.shape[:-1])
    check_tensor("labels", labels, shape=lead)
    check_ids("labels", labels, logits.shape[-1], ignore=IGNORE_INDEX)
    check_tensor("temperature", temperature, shape=lead)
    check_tensor("top_p", top_p, shape=lead)
    valid = labels != IGNORE_INDEX
    if not valid.any():
        raise ValueError("labels has no valid (!= -100) position")
    logits, T, P, y = logits[valid].float(), temperature[valid], top_p[valid], labels[valid]  # [N, V], [N]
    with torch.no_grad():
        w = torch.softmax(logits, -1).gather(-1, y[:, None]).squeeze(-1)  # DFT-style weight
        easy = logits.argmax(-1) == y
        u = torch.rand(y.shape, generator=generator, device="cpu").to(y.device)
        keep = ~(easy & (u < easy_drop))
    ce = F.cross_entropy(logits / T.clamp_min(0.01)[:, None], y, reduction="none")
    l_temp = (w * ce)[keep].mean() if keep.any() else ce.sum() * 0.0
    p_tilde = soft_top_p(logits, T, P, alpha)
    l_topp = (w * -torch.log(p_tilde.gather(-1, y[:, None]).squeeze(-1) + 1e-9)).mean()
    metrics = {"l_temp": float(l_temp.detach()), "l_topp": float(l_topp.detach()),
               "mean_T": float(T.detach().mean()), "mean_P": float(P.detach().mean())}
    return l_temp + l_topp, metrics
