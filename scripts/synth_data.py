"""Write a synthetic dataset in the official file format, for trying jpq without the real data.

Random content (noise plus a weak class pattern) in exactly the layout the loaders read
(docs/benchmarks.md §2.1, §3.1, §4.1; see ``jpq.data.synthetic``). Accuracy on it means nothing; it is for
smoke runs, timing (``scripts/time_recipe.py``) and checking a set-up end to end. Usage::

    python scripts/synth_data.py cifar10 DIR [--scale 1.0] [--archive] [--seed 0]
    python scripts/synth_data.py gsc DIR --scale 0.1
    python scripts/synth_data.py tiny_imagenet DIR --scale 0.05
    jpq search dataset=cifar10 model=resnet8 data_dir=DIR ...

``--scale 1.0`` is the real size: CIFAR-10 50,000 + 10,000 images (~180 MB); Speech Commands 35 x 3,024
clips + 12 x 408 test clips + the official 668 + 121 silence windows (~3.5 GB of WAV); Tiny ImageNet
200 x 500 + 200 x 50 + 10,000 test JPEGs (~0.5 GB). A fraction scales every count (at least one per
class). An existing dataset under DIR is never overwritten.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from jpq.data.synthetic import GSC_WORDS, write_cifar10, write_gsc, write_tiny_imagenet


def _count(full: int, scale: float, minimum: int = 1) -> int:
    return max(minimum, round(full * scale))


def sizes(dataset: str, scale: float) -> dict[str, Any]:
    """The writer's keyword arguments for ``dataset`` at ``scale`` (1.0 = the real counts)."""
    if dataset == "cifar10":
        return {"n_train": _count(50_000, scale, 5), "n_test": _count(10_000, scale)}
    if dataset == "gsc":
        return {
            "clips_per_word": _count(3_024, scale, 3),
            "test_per_label": _count(408, scale),
            "noise_fraction": scale,
        }
    if dataset == "tiny_imagenet":
        return {
            "per_class": _count(500, scale),
            "val_per_class": _count(50, scale),
            "test_images": _count(10_000, scale, 0),
        }
    raise ValueError(f"unknown dataset {dataset!r}")


def _describe(dataset: str, kw: dict[str, Any]) -> str:
    if dataset == "cifar10":
        return f"{kw['n_train']:,} train + {kw['n_test']:,} test images"
    if dataset == "gsc":
        return (
            f"{len(GSC_WORDS)} words x {kw['clips_per_word']:,} clips + 12 x {kw['test_per_label']:,} test "
            f"clips, background noise x{kw['noise_fraction']:g}"
        )
    return (
        f"200 classes x {kw['per_class']:,} train + x {kw['val_per_class']:,} val images, "
        f"{kw['test_images']:,} test images"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dataset", choices=("cifar10", "gsc", "tiny_imagenet"))
    p.add_argument("dir", type=Path, help="the data_dir to pass to jpq")
    p.add_argument("--scale", type=float, default=1.0, help="fraction of the real size (default 1.0)")
    p.add_argument("--archive", action="store_true", help="write the official archive(s) instead of folders")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if not a.scale > 0:
        p.error("--scale must be > 0")
    kw = sizes(a.dataset, a.scale)
    writer = {"cifar10": write_cifar10, "gsc": write_gsc, "tiny_imagenet": write_tiny_imagenet}[a.dataset]
    print(f"{a.dataset}: writing {_describe(a.dataset, kw)} into {a.dir} ...", flush=True)
    t0 = time.perf_counter()
    try:
        path = writer(a.dir, seed=a.seed, archive=a.archive, **kw)
    except FileExistsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path} in {time.perf_counter() - t0:.1f} s (synthetic: accuracy on it means nothing)")
    print(f"use it with: jpq search dataset={a.dataset} data_dir={a.dir} ...")
    return 0


if __name__ == "__main__":
    sys.exit(main())
