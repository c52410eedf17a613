"""Batched augmentation (jpq/data/augment.py): exact geometry, parameter ranges, determinism."""

from __future__ import annotations

import torch

from jpq.data.augment import (
    affine_nearest,
    augment_cifar10,
    augment_tiny_imagenet,
    cifar10_params,
    hflip,
)
from jpq.data.base import Split, batches


def _no(b: int) -> torch.Tensor:
    return torch.zeros(b, dtype=torch.bool)


def _shift_ref(x: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """Content moves right by dx and down by dy, zero fill (integer translation by slicing)."""
    out = torch.zeros_like(x)
    h, w = x.shape[-2:]
    out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = \
        x[..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)]
    return out


def test_identity_and_exact_maps() -> None:
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    z = torch.zeros(3)
    assert torch.equal(affine_nearest(x, z, torch.zeros(3, 2), _no(3)), x)
    # 90 degrees counter-clockwise about the centre maps pixel centres onto pixel centres
    assert torch.equal(affine_nearest(x, torch.full((3,), 90.0), torch.zeros(3, 2), _no(3)),
                       torch.rot90(x, 1, (2, 3)))
    assert torch.equal(affine_nearest(x, torch.full((3,), -90.0), torch.zeros(3, 2), _no(3)),
                       torch.rot90(x, -1, (2, 3)))
    assert torch.equal(affine_nearest(x, z, torch.zeros(3, 2), torch.ones(3, dtype=torch.bool)), x.flip(-1))
    for dx, dy in [(2, -1), (-3, 3), (0, 1)]:
        shift = torch.tensor([[float(dx), float(dy)]]).repeat(3, 1)
        assert torch.equal(affine_nearest(x, z, shift, _no(3)), _shift_ref(x, dx, dy))


def test_non_square_images() -> None:
    x = torch.rand(2, 1, 16, 32, generator=torch.Generator().manual_seed(1))
    out = affine_nearest(x, torch.full((2,), 180.0), torch.zeros(2, 2), _no(2))
    assert torch.equal(out, x.flip(-1).flip(-2))
    shift = torch.tensor([[3.0, -2.0], [3.0, -2.0]])
    assert torch.equal(affine_nearest(x, torch.zeros(2), shift, _no(2)), _shift_ref(x, 3, -2))


def test_composition_equals_rotate_then_shift_then_flip() -> None:
    """One nearest resampling of the composed map = torchvision's sequential rotate -> translate -> flip."""
    g = torch.Generator().manual_seed(3)
    x = torch.rand(16, 3, 32, 32, generator=g)
    angle, shift, flip = cifar10_params(16, 32, 32, torch.Generator().manual_seed(4))
    composed = affine_nearest(x, angle, shift, flip)
    rotated = affine_nearest(x, angle, torch.zeros(16, 2), _no(16))
    for i in range(16):
        ref = _shift_ref(rotated[i], int(shift[i, 0]), int(shift[i, 1]))
        ref = ref.flip(-1) if flip[i] else ref
        assert torch.equal(composed[i], ref), i


def test_rotation_fills_corners_with_zero_and_keeps_centre() -> None:
    x = torch.ones(1, 3, 32, 32)
    out = affine_nearest(x, torch.tensor([15.0]), torch.zeros(1, 2), _no(1))
    assert out.shape == x.shape
    assert torch.all(out[..., 0, 0] == 0) and torch.all(out[..., 16, 16] == 1)
    lost = int((out[0, 0] == 0).sum())
    assert 0 < lost < 32 * 32 // 4


def test_cifar10_param_ranges() -> None:
    """docs/benchmarks.md §2.3: angle U(-15, 15); shift round(U(-3.2, 3.2)) in [-3, 3]; flip p=0.5."""
    angle, shift, flip = cifar10_params(20_000, 32, 32, torch.Generator().manual_seed(5))
    assert angle.abs().max() <= 15.0 and angle.abs().max() > 14.9
    assert abs(float(angle.mean())) < 0.3
    assert torch.equal(shift, shift.round()) and shift.abs().max() == 3.0
    assert set(shift.flatten().tolist()) == {-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0}
    # |U(-3.2, 3.2)| < 2.5 <=> round in [-2, 2]: probability 2.5 / 3.2 = 0.78125
    assert abs(float((shift.abs() <= 2).double().mean()) - 2.5 / 3.2) < 0.01
    assert abs(float(flip.double().mean()) - 0.5) < 0.02


def test_augment_deterministic_per_generator_and_shape() -> None:
    x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    a = augment_cifar10(x, torch.Generator().manual_seed(7))
    b = augment_cifar10(x, torch.Generator().manual_seed(7))
    c = augment_cifar10(x, torch.Generator().manual_seed(8))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b) and not torch.equal(a, c)
    # nearest sampling only moves existing values (or fills zeros)
    assert torch.isin(a, torch.cat([x.flatten(), torch.zeros(1)])).all()


def test_hflip_exact() -> None:
    x = torch.arange(5 * 2 * 4 * 4, dtype=torch.float32).view(5, 2, 4, 4)
    g = torch.Generator().manual_seed(9)
    expected_flip = torch.rand(5, generator=torch.Generator().manual_seed(9)) < 0.5
    out = hflip(x, g)
    for i in range(5):
        assert torch.equal(out[i], x[i].flip(-1) if expected_flip[i] else x[i])
    assert torch.equal(hflip(x, g, p=1.0), x.flip(-1)) and torch.equal(hflip(x, g, p=0.0), x)
    y = augment_tiny_imagenet(x, torch.Generator().manual_seed(9))
    assert torch.equal(y, out)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_batches_with_augmentation_are_reproducible() -> None:
    split = Split(torch.rand(10, 3, 32, 32, generator=torch.Generator().manual_seed(0)), torch.arange(10))
    run1 = list(batches(split, 4, shuffle=True, generator=_gen(1), augment=augment_cifar10))
    run2 = list(batches(split, 4, shuffle=True, generator=_gen(1), augment=augment_cifar10))
    assert [b[0].shape[0] for b in run1] == [4, 4, 2]
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(run1, run2, strict=True))
