"""The 49 x 10 MFCC front end (jpq/data/mfcc.py) against the numpy recipe of docs/benchmarks.md §3.3."""

from __future__ import annotations

import math

import numpy as np
import torch

from jpq.data.mfcc import N_FRAMES, dct_matrix, mel_filterbank, mfcc


def _spec_numpy_mfcc(x: np.ndarray) -> np.ndarray:
    """docs/benchmarks.md §3.3 numpy re-implementation, written out step by step (float64)."""
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(480) / 480)
    w = np.zeros(512)
    w[16:496] = hann
    frames = np.stack([x[i * 320 : i * 320 + 512] for i in range(49)]) * w
    p = np.abs(np.fft.rfft(frames, 512)) ** 2

    def mel(f: np.ndarray | float) -> np.ndarray:
        return 2595 * np.log10(1 + np.asarray(f) / 700)

    def mel2hz(m: np.ndarray) -> np.ndarray:
        return 700 * (10 ** (m / 2595) - 1)

    f_pts = mel2hz(np.linspace(mel(20), mel(4000), 42))
    all_f = np.linspace(0, 8000, 257)
    fb = np.zeros((257, 40))
    for m in range(40):
        fb[:, m] = np.maximum(0, np.minimum((all_f - f_pts[m]) / (f_pts[m + 1] - f_pts[m]),
                                            (f_pts[m + 2] - all_f) / (f_pts[m + 2] - f_pts[m + 1])))
    d = np.array([np.cos(np.pi / 40 * (np.arange(40) + 0.5) * k) for k in range(10)])
    d[0] *= 1 / np.sqrt(2)
    d *= np.sqrt(2 / 40)
    return np.log(p @ fb + 1e-6) @ d.T


def test_matches_spec_recipe_on_several_signals() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    signals = np.stack([
        np.clip(rng.standard_normal(16000) * 0.1, -1, 1),
        0.5 * np.sin(2 * np.pi * 440 * t),
        np.concatenate([0.3 * np.sin(2 * np.pi * 1000 * t[:8000]), np.zeros(8000)]),  # a padded short clip
        np.round(rng.uniform(-1, 1, 16000) * 32767) / 32768,
    ])
    out = mfcc(torch.from_numpy(signals))
    assert out.shape == (4, 49, 10) and out.dtype == torch.float32
    for i in range(4):
        ref = _spec_numpy_mfcc(signals[i])
        # float32 like torchaudio; the deepest spectral nulls of a pure tone move the log by ~2e-4
        np.testing.assert_allclose(out[i].numpy(), ref, rtol=1e-4, atol=1e-3)


def test_digital_silence_golden() -> None:
    """c0 of silence = sqrt(40) * log(1e-6) = -87.3766 (docs/benchmarks.md §3.3); other coefficients 0."""
    out = mfcc(torch.zeros(2, 16000))
    assert N_FRAMES == 49
    assert math.isclose(float(out[0, 0, 0]), math.sqrt(40) * math.log(1e-6), rel_tol=1e-6)
    assert math.isclose(float(out[0, 0, 0]), -87.3766, abs_tol=1e-3)
    assert float(out[..., 1:].abs().max()) < 1e-4


def test_filterbank_and_dct_properties() -> None:
    fb = mel_filterbank()
    assert fb.shape == (257, 40)
    assert float(fb.max()) <= 1.0 and float(fb.min()) == 0.0
    assert float(fb[:, 0].sum()) > 0 and float(fb[:, -1].sum()) > 0
    # nothing above f_max = 4000 Hz (bin 128 is exactly 4000 Hz and is a triangle edge)
    assert float(fb[129:].abs().max()) == 0.0
    d = dct_matrix()
    assert d.shape == (40, 10)
    torch.testing.assert_close(d.T @ d, torch.eye(10, dtype=torch.float64))  # orthonormal columns


def test_features_do_not_depend_on_batch_composition() -> None:
    """A clip's MFCCs must not change with its chunk position (archive vs folder order, cache keys)."""
    x = torch.rand(300, 16000, generator=torch.Generator().manual_seed(2)) * 2 - 1
    full = mfcc(x)
    assert torch.equal(full, torch.cat([mfcc(x[:1]), mfcc(x[1:123]), mfcc(x[123:])]))
    assert torch.equal(full, mfcc(x.flip(0)).flip(0))
