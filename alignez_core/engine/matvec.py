"""Single-token linear layers as a fused multiply-reduce, for compiled decoding on CPUs.

Why: at batch 1–4 a decoding step is one matrix-vector product per weight, and on a 2-core CPU
the BLAS call behind `nn.Linear` streams the weights at about a quarter of the memory's read
bandwidth (SmolLM2's 210 products: 11 GB/s against 45 GB/s for a plain sum; it splits a small
product over one core). Written as `(x · W).sum(-1)` inside a compiled graph, inductor emits
one vectorised reduction per weight, parallel over its rows on every core, and the same weights
stream at 30–45 GB/s (`bench/decode_speed.py`). Products accumulate in float32 and round once, as
the BLAS kernels do; only the summation order differs.

Prompts (more than one token per row) and eager calls keep `nn.functional.linear`: there the
product is a real matrix product, or would be materialised, and BLAS is the fast path. Only the
compiled decoder's private clone is rewired (`use_matvec_linears`); the user's model keeps its
own `nn.Linear` modules.
"""

from __future__ import annotations

import torch
from torch import nn


class MatVecLinear(nn.Module):
    """`nn.Linear` over the same parameters, a multiply-reduce when each row holds one token."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.weight = linear.weight
        self.bias = linear.bias
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # outside a graph the product would be materialised (the prefill's last-token LM head:
        # 113 MB, 37 ms), so eager calls keep BLAS
        if not torch.compiler.is_compiling() or x.dim() < 2 or x.shape[-2] != 1:
            return nn.functional.linear(x, self.weight, self.bias)
        rows = x.reshape(-1, x.shape[-1]).float()
        weight = self.weight.float()
        # one reduction per row, stacked: inductor fuses them into one pass over the weight
        # (a base + edited pair then reads each weight once; a broadcast product read it twice)
        out = torch.stack([(weight * row).sum(-1) for row in rows.unbind()])
        if self.bias is not None:
            out = out + self.bias.float()
        return out.reshape(*x.shape[:-1], self.out_features).to(x.dtype)


def use_matvec_linears(model: nn.Module) -> int:
    """Replace every `nn.Linear` child of `model`'s modules by a `MatVecLinear` over the same
    parameters; returns how many. Meant for a private clone: it rewires the module tree."""
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear:
                setattr(parent, name, MatVecLinear(child))
                swapped += 1
    return swapped
