"""``pit_mixprec``: the sequential baseline (docs/method.md §7). PIT pruning (``method.pit_strength``),
physical export and a float fine-tune, then the channel-wise mixed-precision search {2, 4, 8}
(``strength``) on the pruned seed, without a new warmup.
"""

from __future__ import annotations

from omegaconf import DictConfig
from rich.progress import Progress
from torch import nn

from jpq.methods.base import Method, MethodResult, RunContext
from jpq.methods.pit import pit_epochs, pit_stage
from jpq.methods.searched import Searched


class PitMixprec(Method):
    name = "pit_mixprec"
    steerable = True
    prunes_first = True

    def __init__(self) -> None:
        self.second = Searched(self.name)

    def epochs(self, cfg: DictConfig) -> int:
        return pit_epochs(cfg) + self.second.epochs(cfg)

    def run(self, ctx: RunContext, seed_model: nn.Module, progress: Progress) -> MethodResult:
        pruned, _, pit_s, pit_f = pit_stage(ctx, seed_model, progress)
        res = self.second.run(ctx, pruned, progress)
        res.stages = (pit_s, pit_f, *res.stages)
        res.wall_s_pit = sum(r.wall_s for r in (pit_s, pit_f) if r is not None)
        return res


METHODS: dict[str, Method] = {"pit_mixprec": PitMixprec()}
