"""The KWS front end: 49 x 10 MFCCs of a 1 s, 16 kHz clip (docs/benchmarks.md §3.3), vectorised in torch.

Same numbers as ``torchaudio.transforms.MFCC(sample_rate=16000, n_mfcc=10, dct_type=2, norm='ortho',
log_mels=True, melkwargs={n_fft: 512, win_length: 480, hop_length: 320, n_mels: 40, f_min: 20,
f_max: 4000, center: False, norm: None})`` without the torchaudio dependency (docs/benchmarks.md §8):

1. frames of 512 samples every 320 (no centring) -> 1 + (16000 - 512) // 320 = 49 frames;
2. periodic Hann(480) zero-padded to the middle of the 512-point frame (how ``torch.stft`` centres a
   shorter window), power spectrum |rfft|^2 (257 bins);
3. HTK mel filterbank, 40 triangles between 20 and 4000 Hz, no area normalisation;
4. ``log(mel + 1e-6)``; orthonormal DCT-II, first 10 coefficients.

Computed in float32 like torchaudio (constants built in float64); agrees with the float64 numpy
recipe of docs/benchmarks.md §3.3 to ~1e-4 absolute on clips at speech levels.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

SAMPLE_RATE = 16_000
CLIP_SAMPLES = 16_000
N_FFT = 512
WIN_LENGTH = 480
HOP_LENGTH = 320
N_MELS = 40
N_MFCC = 10
F_MIN_HZ = 20.0
F_MAX_HZ = 4000.0
LOG_OFFSET = 1e-6
N_FRAMES = 1 + (CLIP_SAMPLES - N_FFT) // HOP_LENGTH  # 49


def hann_window_padded(dtype: torch.dtype = torch.float64) -> Tensor:
    """Periodic Hann(480) placed at offset (512 - 480) // 2 = 16 of a 512-sample frame."""
    n = torch.arange(WIN_LENGTH, dtype=dtype)
    hann = 0.5 - 0.5 * torch.cos(2 * math.pi * n / WIN_LENGTH)
    window = torch.zeros(N_FFT, dtype=dtype)
    left = (N_FFT - WIN_LENGTH) // 2
    window[left : left + WIN_LENGTH] = hann
    return window


def _hz_to_mel(f: Tensor) -> Tensor:
    return 2595.0 * torch.log10(1.0 + f / 700.0)


def _mel_to_hz(m: Tensor) -> Tensor:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank(dtype: torch.dtype = torch.float64) -> Tensor:
    """HTK mel filterbank (257, 40): triangles on ``N_MELS + 2`` points equally spaced in mel."""
    n_freqs = N_FFT // 2 + 1
    all_f = torch.linspace(0.0, SAMPLE_RATE / 2, n_freqs, dtype=dtype)  # (257,)
    m_pts = torch.linspace(
        float(_hz_to_mel(torch.tensor(F_MIN_HZ, dtype=dtype))),
        float(_hz_to_mel(torch.tensor(F_MAX_HZ, dtype=dtype))),
        N_MELS + 2,
        dtype=dtype,
    )
    f_pts = _mel_to_hz(m_pts)  # (42,)
    f_diff = f_pts[1:] - f_pts[:-1]  # (41,)
    slopes = f_pts.unsqueeze(0) - all_f.unsqueeze(1)  # (257, 42)
    down = -slopes[:, :-2] / f_diff[:-1]  # rising edge: (f - f_m) / (f_{m+1} - f_m)
    up = slopes[:, 2:] / f_diff[1:]  # falling edge: (f_{m+2} - f) / (f_{m+2} - f_{m+1})
    return torch.clamp(torch.minimum(down, up), min=0.0)  # (257, 40)


def dct_matrix(dtype: torch.dtype = torch.float64) -> Tensor:
    """Orthonormal DCT-II as a (40, 10) matrix: ``log_mel (.., 40) @ D`` gives the 10 MFCCs."""
    n = torch.arange(N_MELS, dtype=dtype)
    k = torch.arange(N_MFCC, dtype=dtype)
    d = torch.cos(math.pi / N_MELS * (n.unsqueeze(1) + 0.5) * k.unsqueeze(0))  # (40, 10)
    d[:, 0] *= 1.0 / math.sqrt(2.0)
    return d * math.sqrt(2.0 / N_MELS)


class MfccFrontEnd:
    """MFCC extractor that builds window, filterbank and DCT once; maps (N, 16000) -> (N, 49, 10)."""

    def __init__(self) -> None:
        # Constants built in float64, applied in float32 like torchaudio (~10x faster than float64).
        # The two projections are done as gathers + last-dim sums instead of GEMMs: a GEMM's blocking
        # depends on the number of rows, so a clip's features would change with its position in the
        # chunk (archive vs folder order); a row-wise reduction is batch-invariant.
        self.window = hann_window_padded().to(torch.float32)
        fb = mel_filterbank()  # (257, 40), each band a short run of bins
        nonzero = [torch.nonzero(fb[:, m]).flatten() for m in range(N_MELS)]
        width = max(len(k) for k in nonzero)
        self.band_bins = torch.zeros(N_MELS, width, dtype=torch.int64)  # (40, W) bin indices, 0-padded
        self.band_weights = torch.zeros(N_MELS, width, dtype=torch.float32)  # (40, W), 0 where padded
        for m, k in enumerate(nonzero):
            self.band_bins[m, : len(k)] = k
            self.band_weights[m, : len(k)] = fb[k, m].to(torch.float32)
        self.dct_rows = dct_matrix().T.contiguous().to(torch.float32)  # (10, 40)

    def __call__(self, waveforms: Tensor) -> Tensor:
        """``waveforms`` (N, 16000) float in [-1, 1) -> MFCCs (N, 49, 10) float32 (time x coefficient)."""
        if waveforms.dim() != 2 or waveforms.shape[1] != CLIP_SAMPLES:
            raise ValueError(f"expected waveforms of shape (N, {CLIP_SAMPLES}), got {tuple(waveforms.shape)}")
        n = waveforms.shape[0]
        x = waveforms.to(torch.float32)
        frames = x.unfold(1, N_FFT, HOP_LENGTH) * self.window  # (N, 49, 512)
        spectrum = torch.view_as_real(torch.fft.rfft(frames, n=N_FFT))  # (N, 49, 257, 2)
        power = spectrum.square().sum(-1).reshape(n * N_FRAMES, N_FFT // 2 + 1)  # |X|^2, (N*49, 257)
        mel = (power[:, self.band_bins] * self.band_weights).sum(-1)  # (N*49, 40, W) -> (N*49, 40)
        log_mel = torch.log(mel + LOG_OFFSET)
        coeffs = (log_mel.unsqueeze(1) * self.dct_rows).sum(-1)  # (N*49, 10, 40) -> (N*49, 10)
        return coeffs.reshape(n, N_FRAMES, N_MFCC)  # (N, 49, 10)


def mfcc(waveforms: Tensor) -> Tensor:
    """One-shot convenience wrapper of :class:`MfccFrontEnd` (docs/benchmarks.md §3.3)."""
    return MfccFrontEnd()(waveforms)
