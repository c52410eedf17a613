"""Batched, device-agnostic image augmentation (docs/benchmarks.md §2.3 CIFAR-10, §4.2 Tiny ImageNet).

The reference applies torchvision transforms per PIL image in DataLoader workers. Here the whole
mini-batch is transformed at once with tensor ops on whatever device it lives on; the random
parameters are drawn on the CPU from the given ``torch.Generator`` so a run is reproducible across
devices (data/base.py, ``batches``).

CIFAR-10 (§2.3): ``RandomRotation(15)`` (nearest, fill 0) -> ``RandomAffine(translate=(0.1, 0.1))``
-> ``RandomHorizontalFlip(0.5)``. An integer translation and a flip move pixel centres onto pixel
centres, so composing the three maps into *one* affine map sampled once with nearest interpolation
gives exactly the pixels of the sequential version (the rotation is the only resampling step).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

ROTATION_DEG = 15.0  # torchvision RandomRotation(15): angle ~ U(-15, 15) degrees
TRANSLATE_FRACTION = 0.1  # RandomAffine(translate=(0.1, 0.1)): shift ~ round(U(-0.1 W, 0.1 W)) pixels
FLIP_P = 0.5


def affine_nearest(x: Tensor, angle_deg: Tensor, shift_px: Tensor, flip: Tensor) -> Tensor:
    """Rotate, then shift, then horizontally flip each image of ``x`` (B, C, H, W); nearest, fill 0.

    ``angle_deg`` (B,): counter-clockwise rotation about the image centre (torchvision's sign).
    ``shift_px`` (B, 2): (dx, dy) in pixels, positive moves the content right / down.
    ``flip`` (B,) bool: mirror left-right after rotation and shift.

    Output pixel p (pixel units, centred) reads the input at ``R(-a) (F p - t)``, where F mirrors x
    when ``flip``; ``affine_grid`` wants that map in normalised coordinates (u = 2 p / W with
    ``align_corners=False``), hence the aspect factors for non-square images. Pixels whose pre-shift
    position falls outside the frame are zero, as in the sequential rotate -> shift -> flip.
    """
    b, _, h, w = x.shape
    # the (B,)-sized parameter maths runs on the CPU in float64; only theta and the mask move to x.device
    angle_deg, shift_px, flip = angle_deg.cpu(), shift_px.cpu(), flip.cpu().bool()
    a = torch.deg2rad(angle_deg.to(torch.float64))
    cos, sin = torch.cos(a), torch.sin(a)
    s = 1.0 - 2.0 * flip.to(torch.float64)  # -1 mirrors x
    dx, dy = shift_px[:, 0].to(torch.float64), shift_px[:, 1].to(torch.float64)
    # input(pixels, centred) = [[cos, -sin], [sin, cos]] @ ([s*x, y] - [dx, dy])   (y axis points down)
    theta = torch.zeros(b, 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = cos * s
    theta[:, 0, 1] = -sin * (h / w)  # p_y = v * H/2 -> u_in = 2/W * (-sin * p_y)
    theta[:, 0, 2] = (-cos * dx + sin * dy) * (2.0 / w)
    theta[:, 1, 0] = sin * s * (w / h)
    theta[:, 1, 1] = cos
    theta[:, 1, 2] = (-sin * dx - cos * dy) * (2.0 / h)
    theta = theta.to(device=x.device, dtype=x.dtype if x.is_floating_point() else torch.float32)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    # The sequential pipeline crops the rotated image to its frame before shifting, so output pixels
    # whose pre-shift position (F p - t) lies outside the frame are 0 even where R(-a)(F p - t) would
    # still hit the input (near rotated corners). Mask them to match it exactly.
    cols = torch.arange(w, dtype=torch.float64)
    rows = torch.arange(h, dtype=torch.float64)
    src_col = torch.where(flip.view(-1, 1), (w - 1) - cols, cols) - dx.view(-1, 1)  # (B, W)
    src_row = rows - dy.view(-1, 1)  # (B, H)
    row_ok = (src_row >= 0) & (src_row <= h - 1)
    col_ok = (src_col >= 0) & (src_col <= w - 1)
    valid = (row_ok.unsqueeze(2) & col_ok.unsqueeze(1)).unsqueeze(1).to(x.device)  # (B, 1, H, W)
    return torch.where(valid, out, torch.zeros((), dtype=out.dtype, device=out.device))


def cifar10_params(
    batch: int, height: int, width: int, generator: torch.Generator
) -> tuple[Tensor, Tensor, Tensor]:
    """Draw (angle_deg, shift_px, flip) for ``batch`` images on the CPU (docs/benchmarks.md §2.3).

    The shift is rounded to whole pixels like torchvision's ``RandomAffine`` (±3 px on 32 px images).
    """
    angle = (torch.rand(batch, generator=generator, dtype=torch.float64) * 2.0 - 1.0) * ROTATION_DEG
    max_shift = torch.tensor([TRANSLATE_FRACTION * width, TRANSLATE_FRACTION * height], dtype=torch.float64)
    uniform = torch.rand(batch, 2, generator=generator, dtype=torch.float64) * 2.0 - 1.0  # (B, 2) in [-1, 1)
    shift = torch.round(uniform * max_shift)
    flip = torch.rand(batch, generator=generator) < FLIP_P
    return angle, shift, flip


def augment_cifar10(x: Tensor, generator: torch.Generator) -> Tensor:
    """The CIFAR-10 training augmentation of docs/benchmarks.md §2.3 on a batch (B, C, H, W)."""
    b, _, h, w = x.shape
    angle, shift, flip = cifar10_params(b, h, w, generator)
    return affine_nearest(x, angle, shift, flip)


def hflip(x: Tensor, generator: torch.Generator, p: float = FLIP_P) -> Tensor:
    """``RandomHorizontalFlip(p)`` on a batch (B, C, H, W): each image mirrored with probability ``p``.

    Tiny ImageNet's only augmentation (docs/benchmarks.md §4.2). Exact (no resampling).
    """
    flip = (torch.rand(x.shape[0], generator=generator) < p).to(x.device)
    return torch.where(flip.view(-1, *([1] * (x.dim() - 1))), x.flip(-1), x)


def augment_tiny_imagenet(x: Tensor, generator: torch.Generator) -> Tensor:
    """Tiny ImageNet 64 px training augmentation (docs/benchmarks.md §4.2): horizontal flip, p = 0.5."""
    return hflip(x, generator)

