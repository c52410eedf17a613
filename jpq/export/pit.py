"""The PIT baseline's pruned float network as a file of tensors and plain data, and back.

PIT (the first half of the sequential baseline) ends with a float network whose pruned channels are
physically removed. Its file (``checkpoints/pit_model.pt``) is not a pickle of that network: it holds the
discretized PIT search net's state_dict (its mask logits decide which channels survive), the pruned
network's state_dict and the kept channel count of every sharing group. Rebuilding converts the seed
architecture again, loads the mask logits, repeats the graph surgery and checks the channel counts, so
reading the file runs no code (``torch.load(..., weights_only=True)``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor, nn

from jpq.errors import RunDirError
from jpq.io import atomic_torch_save, cpu_state, load_tensors
from jpq.search import SearchableNet, convert

FORMAT = "jpq-pit-model-1"


def pruned_float_model(net: SearchableNet) -> nn.Module:
    """The PIT result as a plain float network with the pruned channels physically removed, built by the
    export's graph surgery (consumers' input channels follow, adds and flattens included)."""
    from jpq.export.surgery import exported_model

    return exported_model(net).train()


def kept_channels(net: SearchableNet) -> list[int]:
    """Kept output channels per sharing group of a discretized PIT net."""
    from jpq.export.plan import plan_groups

    return [len(p.order) for p in plan_groups(net)]


def save_pit_model(path: str | Path, pit_net: SearchableNet, pruned: nn.Module) -> None:
    payload = {
        "format": FORMAT,
        "pit_net": cpu_state(pit_net),
        "state_dict": cpu_state(pruned),
        "kept": kept_channels(pit_net),
    }
    atomic_torch_save(path, payload)


def pit_net_of(seed: nn.Module, example: Tensor) -> SearchableNet:
    """The PIT search net of a float seed (what the PIT stage trains)."""
    return convert(seed.cpu(), example.cpu(), pit=True, keep_alive=True)


def load_pit_model(path: str | Path, seed: nn.Module, example: Tensor) -> nn.Module:
    """Rebuild the pruned float network saved by :func:`save_pit_model` from the untrained seed
    architecture ``seed``; raises :class:`RunDirError` for a missing, foreign or mismatching file."""
    path = Path(path)
    try:
        payload: Any = load_tensors(path)
    except FileNotFoundError as e:
        raise RunDirError(f"{path} is missing") from e
    except ValueError as e:
        raise RunDirError(f"{path} is not a jpq PIT model file: {e}") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise RunDirError(f"{path} is not a jpq PIT model file (format {FORMAT!r} expected)")
    net = pit_net_of(seed, example)
    try:
        net.load_state_dict(payload["pit_net"])
        net.discretize()
        kept = kept_channels(net)
        if kept != list(payload["kept"]):
            raise RunDirError(f"{path}: kept channels {kept} rebuilt, the file says {payload['kept']}")
        model = pruned_float_model(net)
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, KeyError) as e:
        raise RunDirError(f"{path} does not match the run's seed network: {str(e).splitlines()[0]}") from e
    return model
