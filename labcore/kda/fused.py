"""The decode step's dispatch: KDA's recurrence through the fused Triton kernel (kernels/kda_recurrent.py).
Taught in notebooks/02_kda.ipynb, section "Recurrent form, from scratch".
labcore calls the kernel, never the reverse.
"""

from __future__ import annotations

import torch

from labcore.kda.naive import check_inputs, empty_result, recurrent_kda


def fused_recurrent_kda(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor,
                        beta: torch.Tensor, scale: float | None = None,
                        initial_state: torch.Tensor | None = None,
                        output_final_state: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Recurrent KDA with the Triton kernel (inference); same arguments and results as recurrent_kda.

    q, k, g: [B, T, H, K]; v: [B, T, H, V]; beta: [B, T, H]; initial_state: [B, H, K, V].
    Forward only: when gradients are needed it runs the torch reference instead.
    """
    if torch.is_grad_enabled() and any(x is not None and x.requires_grad
                                       for x in (q, k, v, g, beta, initial_state)):
        return recurrent_kda(q, k, v, g, beta, scale, initial_state, output_final_state)
    check_inputs(q, k, v, g, beta, initial_state)
    empty = empty_result(q, v, initial_state, output_final_state)
    if empty is not None:
        return empty
    from kernels.kda_recurrent import fused_recurrent_kda_fwd

    scale = q.shape[-1] ** -0.5 if scale is None else scale
    return fused_recurrent_kda_fwd(q, k, v, g, beta, scale, initial_state, output_final_state)
