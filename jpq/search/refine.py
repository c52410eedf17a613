"""NE16 precision promotion after the search (docs/method.md §5.9; cf. PLiNIO's newer "promotion").

NE16 pays per output tile of every per-precision sub-layer; raising a few low-precision channels to fill
a higher precision's tile can lower the latency. The cost side decides the counts per group
(:func:`jpq.cost.ne16.ne16_promote`); here the counts become concrete channels: within a group, the
channels promoted are those whose logits favour the higher precision most.
"""

from __future__ import annotations

import torch

from jpq.cost.ne16 import ne16_promote
from jpq.cost.spec import W_BITS_ALL
from jpq.search.net import SearchableNet


def promote_for_ne16(net: SearchableNet) -> dict[str, int]:
    """Apply NE16 promotion to a discretized net in place; returns ``{"channels_promoted": n}``."""
    specs = net.layer_specs(fresh=True)
    counts = ne16_promote(specs, [li.group for li in net.layers])
    promoted = 0
    for gi, n_w in counts.items():
        g = net.groups[gi]
        if g.per_layer:
            continue
        bits = g.channel_bits()
        target = {b: int(n_w[W_BITS_ALL.index(b)]) for b in W_BITS_ALL}
        if all(sum(1 for x in bits if x == b) == target[b] for b in W_BITS_ALL):
            continue
        alpha = g.alpha.detach()
        kept = [c for c, b in enumerate(bits) if b != 0]
        # highest precisions first: each takes the kept channels that are already at or closest to it
        new = list(bits)
        free = set(kept)
        for b in sorted((b for b in g.w_bits if b != 0), reverse=True):
            row = alpha[g.w_bits.index(b)]
            order = sorted(free, key=lambda c: (-bits[c], -float(row[c])))
            for c in order[: target[b]]:
                new[c] = b
                free.discard(c)
        promoted += sum(1 for a, b in zip(bits, new, strict=True) if a != b)
        net.set_channel_bits(gi, new)
    with torch.no_grad():
        net.discretize()
    return {"channels_promoted": promoted}
