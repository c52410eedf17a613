"""Random assignments for the export tests: one group's channel precisions and activation quantizer."""

from __future__ import annotations

import torch
from torch import Tensor


def choose(grp: object, idx: Tensor, g: torch.Generator) -> None:
    """Give group ``grp`` the precision index ``idx[c]`` for channel ``c`` (one-hot logits), and its
    activation quantizer, if any, a random clip (30-100 % of its value) and random precision logits."""
    p, c = grp.alpha.shape  # type: ignore[attr-defined]
    alpha = torch.zeros(p, c)
    alpha[idx, torch.arange(c)] = 1.0
    grp.alpha.data.copy_(alpha)  # type: ignore[attr-defined]
    act = grp.act  # type: ignore[attr-defined]
    if act is not None:
        act.clip_val.data.mul_(0.3 + 0.7 * torch.rand(act.clip_val.shape, generator=g))
        act.alpha.data.copy_(torch.rand(act.alpha.shape, generator=g))
