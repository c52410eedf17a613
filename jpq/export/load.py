"""Rebuild the discrete searched network of a finished run from its folder.

A run folder holds Hydra's ``.hydra/config.yaml`` and ``checkpoints/final.pt``; the network is
re-converted from the seed architecture with the run's options, discretized, and loaded.
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from jpq.errors import RunDirError
from jpq.io import load_tensors
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
    from jpq.build import build_seed_model, convert_from_cfg
    from jpq.data import INPUT_QUANT

    cfg = run_config(run_dir)
    ckpt = Path(run_dir) / "checkpoints" / "final.pt"
    if not (Path(run_dir) / "result.json").is_file() or not ckpt.is_file():
        raise RunDirError(
            f"{run_dir} has no finished fine-tune (result.json and checkpoints/final.pt missing)"
        )
    try:
        state = load_tensors(ckpt, map_location)["state_dict"]
    except (ValueError, KeyError, TypeError) as e:
        raise RunDirError(f"checkpoint {ckpt} is unreadable: {e}") from e
    shape = tuple(cfg.dataset.input_shape)
    method = cfg.method.name
    if method == "pit":
        raise RunDirError(
            f"{run_dir} is a PIT run: its result is a float network (checkpoints/pit_model.pt, rebuilt by "
            "jpq.export.pit.load_pit_model), nothing to quantize"
        )
    model = build_seed_model(cfg, cfg.dataset.num_classes, shape[0])
    if method == "pit_mixprec":  # the seed of the mixed-precision search is the pruned PIT network
        from jpq.export.pit import load_pit_model

        model = load_pit_model(Path(run_dir) / "checkpoints" / "pit_model.pt", model, torch.zeros(2, *shape))
    net = convert_from_cfg(cfg, model, torch.zeros(2, *shape), INPUT_QUANT[cfg.dataset.name], training=False)
    net.discretize()
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise RunDirError(f"checkpoint {ckpt} does not match the run's network: {e}") from e
    return net.eval()


def load_exported(run_dir: Path, *, map_location: str = "cpu") -> torch.nn.Module:
    """The exported plain network of ``run_dir`` (``jpq export``): rebuilt from the run by the export's
    graph surgery, with the tensors of ``RUN_DIR/export/model.pt`` loaded (``weights_only=True``)."""
    from jpq.export.export import MODEL_FORMAT
    from jpq.export.surgery import exported_model

    path = Path(run_dir) / "export" / "model.pt"
    if not path.is_file():
        raise RunDirError(f"{run_dir} has no export (run `jpq export {run_dir}` first)")
    try:
        payload = load_tensors(path, map_location)
    except ValueError as e:
        raise RunDirError(f"{path} is not a jpq export: {e}") from e
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise RunDirError(f"{path} is not a jpq export (format {MODEL_FORMAT!r} expected)")
    model = exported_model(load_run(run_dir, map_location=map_location))
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as e:
        raise RunDirError(f"{path} does not match the run's network: {str(e).splitlines()[0]}") from e
    return model.eval()
