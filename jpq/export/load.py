"""Rebuild the discrete searched network of a finished run from its folder.

A run folder holds Hydra's ``.hydra/config.yaml`` and ``checkpoints/final.pt``; the network is
re-converted from the seed architecture with the run's options, discretized, and loaded.
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from jpq.errors import RunDirError
from jpq.search import SearchableNet


def run_config(run_dir: Path) -> DictConfig:
    path = Path(run_dir) / ".hydra" / "config.yaml"
    if not Path(run_dir).is_dir():
        raise RunDirError(f"{run_dir} is not a folder")
    if not path.is_file():
        raise RunDirError(f"{run_dir} is not a jpq run folder (no .hydra/config.yaml)")
    cfg = OmegaConf.load(path)
    assert isinstance(cfg, DictConfig)
    return cfg


def load_run(run_dir: Path, *, map_location: str = "cpu") -> SearchableNet:
    """The fine-tuned discrete network of ``run_dir`` in eval mode."""
    from jpq.config import a_bits_of, w_bits_of
    from jpq.data import INPUT_QUANT
    from jpq.pipeline import build_model
    from jpq.search import convert

    cfg = run_config(run_dir)
    ckpt = Path(run_dir) / "checkpoints" / "final.pt"
    if not (Path(run_dir) / "result.json").is_file() or not ckpt.is_file():
        raise RunDirError(
            f"{run_dir} has no finished fine-tune (result.json and checkpoints/final.pt missing)"
        )
    try:
        state = torch.load(ckpt, map_location=map_location, weights_only=True)["state_dict"]
    except Exception as e:  # noqa: BLE001
        raise RunDirError(f"checkpoint {ckpt} is corrupt or unreadable: {e}") from e
    shape = tuple(cfg.dataset.input_shape)
    method = cfg.method.name
    if method == "pit":
        raise RunDirError(
            f"{run_dir} is a PIT run: its result is the float network "
            "checkpoints/pit_model.pt (torch.load(..., weights_only=False)), nothing to quantize"
        )
    if method == "pit_mixprec":  # the seed of the mixed-precision search is the pruned PIT network
        seed_path = Path(run_dir) / "checkpoints" / "pit_model.pt"
        try:
            model = torch.load(seed_path, map_location=map_location, weights_only=False)
        except Exception as e:  # noqa: BLE001
            raise RunDirError(f"{seed_path} is missing or corrupt: {e}") from e
    else:
        model = build_model(cfg, cfg.dataset.num_classes, shape[0])
    net = convert(
        model,
        torch.zeros(2, *shape),
        w_bits=w_bits_of(cfg),
        a_bits=a_bits_of(cfg),
        sampler=cfg.sampler.name,
        gumbel_hard=cfg.sampler.gumbel_hard,
        per_layer=cfg.method.per_layer,
        input_quant=INPUT_QUANT[cfg.dataset.name],
        keep_alive=cfg.keep_alive,
        rescale=False,
    )
    net.discretize()
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise RunDirError(f"checkpoint {ckpt} does not match the run's network: {e}") from e
    return net.eval()
