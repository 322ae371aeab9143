"""Tiny random weights for the reference scripts (components.py, hf_layouts.py): one rule for both."""
import math

import torch


def randomize(model, gen, bfloat16=False):
    """Weights large enough that every nonlinearity and the attention pattern matter; with bfloat16,
    rounded to bfloat16 (so a checkpoint written in F16/BF16 holds exactly the float32 values)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen))
            elif name.endswith("bias"):
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))
            elif "embed" in name or p.dim() < 2:  # token, position and class embeddings
                p.copy_(torch.randn(p.shape, generator=gen))
            else:
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p[0].numel()))
            if bfloat16:
                p.copy_(p.bfloat16().float())
