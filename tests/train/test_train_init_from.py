"""``warmup.init_from``: a user checkpoint initialises the float seed; every bad file is one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from jpq.errors import ConfigError
from jpq.models.digits import DigitsCNN
from jpq.models.resnet8 import ResNet8
from jpq.pipeline import apply_init, read_init


def load_init(model: torch.nn.Module, path: str) -> None:
    apply_init(model, read_init(path), path)


@pytest.mark.parametrize("wrap", ["bare", "state_dict", "warmup_cache"])
def test_checkpoint_formats_load(tmp_path: Path, wrap: str) -> None:
    torch.manual_seed(0)
    src = DigitsCNN()
    sd = src.state_dict()
    payload = {"bare": sd, "state_dict": {"state_dict": sd},
               "warmup_cache": {"state": sd, "result": {}}}[wrap]
    path = tmp_path / "seed.pt"
    torch.save(payload, path)
    torch.manual_seed(1)
    dst = DigitsCNN()
    assert not torch.equal(dst.conv1.weight, src.conv1.weight)
    load_init(dst, str(path))
    assert all(torch.equal(a, b) for a, b in zip(dst.state_dict().values(), sd.values(), strict=True))


def test_bad_checkpoints_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_init(DigitsCNN(), str(tmp_path / "missing.pt"))
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(ConfigError, match="not a checkpoint written by torch.save"):
        load_init(DigitsCNN(), str(tmp_path / "text.pt"))
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pt")  # a whole module, not a state_dict
    with pytest.raises(ConfigError, match=r"holds Python objects.*state_dict\(\)"):
        load_init(DigitsCNN(), str(tmp_path / "module.pt"))
    torch.save(DigitsCNN().state_dict(), tmp_path / "digits.pt")
    with pytest.raises(ConfigError, match="not a state_dict of ResNet8.*size mismatch") as e:
        load_init(ResNet8(), str(tmp_path / "digits.pt"))
    assert "\n" not in str(e.value)
    sd = DigitsCNN().state_dict()
    sd.pop("fc.bias")
    sd["extra.weight"] = torch.zeros(1)
    torch.save(sd, tmp_path / "partial.pt")
    with pytest.raises(ConfigError, match=r"1 missing keys \(fc.bias\); 1 unexpected keys \(extra.weight\)"):
        load_init(DigitsCNN(), str(tmp_path / "partial.pt"))
