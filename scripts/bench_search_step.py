"""Time a float training step against a joint-search step, side by side in one process.

ResNet-8, batch 32, CIFAR-sized random data, weights {0,2,4,8} per channel. For each activation set
and each cost model: the median over >= 20 steps (after warm-up) of

* float step:  forward + CE + backward + Adam step of the float seed (with BatchNorm),
* search step: forward + CE + strength * cost + backward + Adam (weights) + SGD (alphas) steps,
* cost:        building the LayerSpecs + the cost + its gradient to the alphas (part of the search step).

Float and search steps alternate one by one so that machine noise hits both alike. The search step runs
the fused kernels (``trainer.search_step=fused``, the default) or the eager ones (``--step eager``);
``--step both`` gives one row per step kind. The float step is always eager. ``first_s`` is the wall time
of the first search step, which includes compiling the fused kernels (a later process reuses the compiled
code from torch's on-disk cache). Usage::

    python scripts/bench_search_step.py [--steps 60] [--device cpu|cuda] [--step fused|eager|both]
        [--threads N] [--json]

With ``--json`` the last line is a JSON list of rows (device, step, a_bits, cost, float_ms, search_ms,
ratio, cost_ms, cost_share, first_s).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from jpq.cost import get_cost, to_uniform
from jpq.data.base import InputQuant
from jpq.models.resnet8 import ResNet8
from jpq.search import convert
from jpq.train.memory import keep_freed_memory


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench(
    a_bits: tuple[int, ...],
    cost_name: str,
    steps: int,
    device: torch.device,
    batch: int = 32,
    step: str = "fused",
) -> dict[str, object]:
    torch.manual_seed(0)
    x = torch.rand(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    seed = ResNet8().to(device)
    opt_f = torch.optim.Adam(seed.parameters(), lr=1e-3, weight_decay=1e-4)
    net = convert(ResNet8(), x[:2].cpu(), w_bits=(0, 2, 4, 8), a_bits=a_bits, input_quant=InputQuant(),
                  fused=step == "fused").to(device)
    net.train()
    cost = get_cost(cost_name)
    scale = float(cost(to_uniform(net.layer_specs(fresh=True), 8, 8)))
    opt_w = torch.optim.Adam(net.weight_parameters() + net.clip_parameters(), lr=1e-3, weight_decay=1e-4)
    opt_a = torch.optim.SGD(net.arch_parameters(), lr=1e-2, momentum=0.9)

    def float_step() -> None:
        loss = F.cross_entropy(seed(x), y)
        opt_f.zero_grad(set_to_none=True)
        loss.backward()
        opt_f.step()

    def search_step() -> None:
        loss = F.cross_entropy(net(x), y) + 1.0 * cost(net.stacked_specs()) / scale
        opt_w.zero_grad(set_to_none=True)
        opt_a.zero_grad(set_to_none=True)
        loss.backward()
        opt_w.step()
        opt_a.step()

    alphas = net.arch_parameters()

    def cost_only() -> None:
        c = cost(net.stacked_specs()) / scale
        torch.autograd.grad(c, [a for a in alphas if a.requires_grad], retain_graph=True, allow_unused=True)

    def timed(fn, n: int) -> list[float]:
        out = []
        for _ in range(n):
            _sync(device)
            t = time.perf_counter()
            fn()
            _sync(device)
            out.append((time.perf_counter() - t) * 1e3)
        return out

    t_first = time.perf_counter()
    search_step()  # the first one compiles the fused kernels
    _sync(device)
    first_s = time.perf_counter() - t_first
    for _ in range(20):  # warm-up: allocator and oneDNN primitive caches settle
        float_step()
        search_step()
    f_ms, s_ms, c_ms = [], [], []
    while len(f_ms) < steps:  # strict alternation: a slow spell of the machine hits both alike
        f_ms += timed(float_step, 1)
        s_ms += timed(search_step, 1)
    net(x)  # a forward with graph for the cost-only timing
    c_ms = timed(cost_only, steps)
    f, s, c = statistics.median(f_ms), statistics.median(s_ms), statistics.median(c_ms)
    return {
        "device": device.type,
        "step": step,
        "a_bits": list(a_bits),
        "cost": cost_name,
        "float_ms": round(f, 3),
        "search_ms": round(s, 3),
        "ratio": round(s / f, 3),
        "cost_ms": round(c, 3),
        "cost_share": round(c / s, 4),
        "first_s": round(first_s, 2),
    }


def main() -> None:
    kept = keep_freed_memory()  # as jpq search does: both steps run with it
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=60, help="timed steps per configuration (>= 20)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--step", default="fused", choices=("fused", "eager", "both"), help="search step kind")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--costs", default="size,bitops,mpic,ne16")
    p.add_argument("--json", action="store_true", help="print the rows as one JSON line last")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: PyTorch's)")
    a = p.parse_args()
    if a.threads is not None:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    rows = []
    kinds = ("fused", "eager") if a.step == "both" else (a.step,)
    for a_bits in ((8,), (2, 4, 8)):
        for cost in a.costs.split(","):
            if cost == "ne16" and a_bits != (8,):
                continue  # NE16 models 8-bit activations only
            for kind in kinds:
                rows.append(bench(a_bits, cost, max(20, a.steps), device, a.batch, kind))
    t = Table(
        title=f"ResNet-8 search step vs float step (batch {a.batch}, {device}, "
        f"{torch.get_num_threads()} threads, median of {max(20, a.steps)}"
        f"{', freed memory kept' if kept else ''})"
    )
    cols = ("step", "a_bits", "cost", "float ms", "search ms", "search/float", "cost ms", "cost share")
    cols += ("first s",)
    for col in cols:
        t.add_column(col, justify="right")
    for r in rows:
        t.add_row(
            str(r["step"]),
            ",".join(map(str, r["a_bits"])),
            str(r["cost"]),
            f"{r['float_ms']:.2f}",
            f"{r['search_ms']:.2f}",
            f"{r['ratio']:.2f}x",
            f"{r['cost_ms']:.2f}",
            f"{100 * r['cost_share']:.1f}%",
            f"{r['first_s']:.1f}",
        )
    Console().print(t)
    if a.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
