"""Search quantizers of one sharing group (docs/method.md §1.4, §3.1): per-channel weight-precision logits
and the activation-precision logits with one PACT clip per precision.

One :class:`GroupQuantizer` is shared by every Conv/Linear (and add) of its group, so all of them get the
same per-channel assignment and the same activation quantizer. :class:`ActQuantizer` alone is the
network-input quantizer (§1.5).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from jpq.cost.spec import A_BITS_ALL, W_BITS_ALL
from jpq.quant import mixed_pact
from jpq.quant.activations import pact_levels
from jpq.quant.weights import WeightGrid, weight_grid
from jpq.search.sampler import SamplerState, one_hot_argmax, sample


def _init_logits(bits: Sequence[int]) -> Tensor:
    """``alpha[i] = p_i / max(P)`` (§3.1): [0, .25, .5, 1] for (0, 2, 4, 8)."""
    top = max(bits)
    return torch.tensor([b / top for b in bits], dtype=torch.float32)


def _selector(bits: Sequence[int], all_bits: Sequence[int]) -> Tensor:
    """(len(all_bits), len(bits)) 0/1 matrix placing a per-``bits`` vector into the global layout."""
    m = torch.zeros(len(all_bits), len(bits))
    for j, b in enumerate(bits):
        m[all_bits.index(b), j] = 1.0
    return m


class ActQuantizer(nn.Module):
    """Mixture of PACT quantizers over the activation precisions ``bits`` (§2.2, §4).

    ``signed`` selects the signed PACT of the KWS/ImageNet input (clips ``lo``/``hi``).
    With a single precision ``theta`` is the constant 1 and the logits are inert.
    """

    def __init__(
        self,
        bits: Sequence[int],
        state: SamplerState,
        *,
        clip: float = 6.0,
        signed: bool = False,
        lo: float = -6.0,
    ) -> None:
        super().__init__()
        bad = [b for b in bits if b not in A_BITS_ALL]
        if not bits or bad:
            raise ValueError(f"activation bits must be a non-empty subset of {A_BITS_ALL}, got {tuple(bits)}")
        self.bits = tuple(int(b) for b in bits)
        self.signed = signed
        self.state = state
        self.frozen = False
        self._frozen_index: int | None = None  # the argmax precision once frozen, computed at first use
        self.alpha = nn.Parameter(_init_logits(self.bits))
        self.clip_val = nn.Parameter(torch.full((len(bits),), float(clip)))
        self.clip_lo = nn.Parameter(torch.full((len(bits),), float(lo))) if signed else None
        self.register_buffer("bits_t", torch.tensor(self.bits), persistent=False)
        self.register_buffer("levels", pact_levels(self.bits_t), persistent=False)
        self.register_buffer("one", torch.ones(1), persistent=False)
        self.register_buffer("sel", _selector(self.bits, A_BITS_ALL), persistent=False)
        self.last_theta: Tensor | None = None
        #: theta drawn ahead of this forward pass (:func:`jpq.search.layers.weight_side_ahead`): every
        #: call of the pass uses it instead of drawing its own
        self.step_theta: Tensor | None = None

    def theta(self) -> Tensor:
        if len(self.bits) == 1:
            return self.one
        if self.frozen:
            return one_hot_argmax(self.alpha.detach())
        return sample(self.alpha, self.state, self.training)

    def forward(self, x: Tensor) -> Tensor:
        th = self.theta() if self.step_theta is None else self.step_theta
        object.__setattr__(self, "last_theta", th)  # per call: skip nn.Module's attribute checks
        if len(self.bits) > 1 and (self.frozen or not (self.training or torch.is_grad_enabled())):
            # discrete (fine-tune, or evaluation without autograd): only the argmax precision is
            # computed; the same operations as the exported network's PACT, and no alpha gradient is lost
            j = self._frozen_index  # set only while frozen
            if j is None:
                j = self.bits.index(self.chosen_bits())
                if self.frozen:
                    self._frozen_index = j
            lo = None if self.clip_lo is None else self.clip_lo[j : j + 1]
            return mixed_pact(x, self.clip_val[j : j + 1], self.one, self.bits_t[j : j + 1], lo,
                              levels=self.levels[j : j + 1], fused=self.state.fused)
        return mixed_pact(x, self.clip_val, th, self.bits_t, self.clip_lo, levels=self.levels,
                          fused=self.state.fused)

    def freeze(self) -> None:
        """Discretize: the argmax precision from now on, logits frozen (§3.5)."""
        self.frozen = True
        self.alpha.requires_grad_(False)
        self.last_theta = None
        self._frozen_index = None

    def _load_from_state_dict(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self._frozen_index = None  # new logits: the argmax is recomputed
        super()._load_from_state_dict(*args, **kwargs)

    def current_theta(self) -> Tensor:
        """theta of the last forward call, or the argmax when none happened yet."""
        if self.last_theta is not None:
            return self.last_theta
        return self.one if len(self.bits) == 1 else one_hot_argmax(self.alpha.detach())

    def expected_scale(self, theta: Tensor) -> Tensor:
        """``s_a_eff = sum_j theta_j * clip_j / (2^a_j - 1)`` with clips detached (§2.3)."""
        span = self.clip_val.detach() if self.clip_lo is None else (self.clip_val - self.clip_lo).detach()
        if len(self.bits) == 1:  # theta is the constant 1: the same value in two ops less
            return (span / self.levels).sum()
        return (theta * span / self.levels).sum()

    def probs_all(self, theta: Tensor) -> Tensor:
        """theta placed into the global ``A_BITS_ALL`` layout (for LayerSpec.a_in)."""
        return self.sel @ theta

    def chosen_bits(self) -> int:
        return self.bits[int(torch.argmax(self.alpha.detach()))] if len(self.bits) > 1 else self.bits[0]


class ChannelGate(nn.Module):
    """The channel source of a sharing group: what its layers, the searchable net, the cost specs and the
    export ask of it (theta per forward call, the argmax, freezing, the chosen precision per channel).

    Subclasses set the logits ``alpha`` and give :meth:`argmax_theta` and :meth:`_sampled_theta` (theta
    while training): :class:`GroupQuantizer` here, PIT's :class:`~jpq.search.pit_gate.PitGate`.
    """

    alpha: nn.Parameter
    act: ActQuantizer | None
    per_layer: bool = False

    def __init__(
        self, index: int, channels: int, w_bits: Sequence[int], state: SamplerState, *,
        members: Sequence[str] = (), is_output: bool,
    ) -> None:
        super().__init__()
        self.index = index
        self.channels = channels
        self.w_bits = tuple(int(b) for b in w_bits)
        self.members = tuple(members)
        self.state = state
        self.frozen = False
        self._is_output = is_output
        self.register_buffer("bits_t", torch.tensor(self.w_bits), persistent=False)
        self.register_buffer("ones_theta", torch.ones(1, channels), persistent=False)
        self.register_buffer("sel", _selector(self.w_bits, W_BITS_ALL), persistent=False)
        self.last_theta: Tensor | None = None
        self._frozen_theta: Tensor | None = None

    def _load_from_state_dict(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self._frozen_theta = None  # new logits: the argmax is recomputed
        super()._load_from_state_dict(*args, **kwargs)

    @property
    def is_output(self) -> bool:
        return self._is_output

    @property
    def can_prune(self) -> bool:
        return 0 in self.w_bits

    def argmax_theta(self) -> Tensor:
        raise NotImplementedError

    def _sampled_theta(self) -> Tensor:
        raise NotImplementedError

    def theta(self) -> Tensor:
        """theta (P, C) for one member's forward call: sampled while training, else the argmax."""
        if len(self.w_bits) == 1:
            th = self.ones_theta
        elif self.frozen:
            if self._frozen_theta is None:
                self._frozen_theta = self.argmax_theta()
            th = self._frozen_theta
        elif not self.training:
            th = self.argmax_theta()
        else:
            th = self._sampled_theta()
        object.__setattr__(self, "last_theta", th)  # per call: skip nn.Module's attribute checks
        return th

    def current_theta(self) -> Tensor:
        """theta of the last forward call (what the cost must see, §5.1), else the argmax."""
        return self.last_theta if self.last_theta is not None else self.theta()

    def freeze(self) -> None:
        """Discretize: logits frozen, argmax assignment (§3.5, §6.1 fine-tune)."""
        self.frozen = True
        self.alpha.requires_grad_(False)
        self._frozen_theta = None
        self.last_theta = None

    def channel_bits(self) -> list[int]:
        """Chosen precision per output channel (0 = pruned)."""
        idx = torch.argmax(self.argmax_theta(), dim=0)
        return [self.w_bits[int(i)] for i in idx]


class GroupQuantizer(ChannelGate):
    """Weight-precision logits of a sharing group plus its activation quantizer.

    ``alpha`` has shape (|P_W|, C_g) for the per-channel search, (|P_W|, 1) for the per-layer one
    (EdMIPS-like baseline, §1.2). ``act`` is None for the output group, whose logits stay float (§1.4).
    """

    def __init__(
        self,
        index: int,
        channels: int,
        w_bits: Sequence[int],
        a_bits: Sequence[int] | None,
        state: SamplerState,
        *,
        per_layer: bool = False,
        keep_alive: bool = True,
        clip: float = 6.0,
        members: Sequence[str] = (),
        is_output: bool | None = None,
    ) -> None:
        bad = [b for b in w_bits if b not in W_BITS_ALL]
        if not w_bits or bad:
            raise ValueError(f"weight bits must be a non-empty subset of {W_BITS_ALL}, got {tuple(w_bits)}")
        if list(w_bits) != sorted(w_bits) or len(set(w_bits)) != len(w_bits):
            raise ValueError(f"weight bits must be sorted and unique, got {tuple(w_bits)}")
        out = (a_bits is None) if is_output is None else is_output
        super().__init__(index, channels, w_bits, state, members=members, is_output=out)
        self.per_layer = per_layer
        self.keep_alive = keep_alive
        cols = 1 if per_layer else channels
        self.alpha = nn.Parameter(_init_logits(self.w_bits).unsqueeze(1).repeat(1, cols))
        grid = weight_grid(self.bits_t)
        self.register_buffer("grid_levels", grid.levels, persistent=False)
        self.register_buffer("grid_upper", grid.upper, persistent=False)
        self.register_buffer("grid_nonzero", grid.nonzero, persistent=False)
        self.act = ActQuantizer(a_bits, state, clip=clip) if a_bits is not None else None
        self._warned = False

    @property
    def grid(self) -> WeightGrid:
        return WeightGrid(self.grid_levels, self.grid_upper, self.grid_nonzero)

    # -- theta -------------------------------------------------------------------------------------
    def argmax_theta(self) -> Tensor:
        """One-hot (P, C) of the argmax (§3.5), with the keep-alive rule when enabled (§11 item 5)."""
        a = self.alpha.detach()
        th = one_hot_argmax(a)
        if self.can_prune and self.w_bits[0] == 0 and not self.per_layer and bool((th[0] == 1).all()):
            if self.keep_alive:
                # keep the channel whose best non-zero precision is closest to winning
                margin = a[1:].amax(0) - a[0]
                c = int(torch.argmax(margin))
                th[:, c] = 0.0
                th[1 + int(torch.argmax(a[1:, c])), c] = 1.0
            elif not self._warned:
                warnings.warn(
                    f"sharing group {self.index} ({', '.join(self.members)}) is fully pruned: its "
                    "output is all zeros (keep_alive is off)",
                    stacklevel=2,
                )
                self._warned = True
        return th.expand(-1, self.channels) if self.per_layer else th

    def _sampled_theta(self) -> Tensor:
        th = sample(self.alpha, self.state, True)
        return th.expand(-1, self.channels) if self.per_layer else th

    def freeze(self) -> None:
        """Discretize: alphas frozen, argmax assignment (§3.5, §6.1 fine-tune)."""
        super().freeze()
        if self.act is not None:
            self.act.freeze()

    # -- reporting ---------------------------------------------------------------------------------
    def init_rescale(self) -> float:
        """``1 / sum_{p != 0} theta_init[p]`` (§3.3): 1.1770 for (0, 2, 4, 8) at T = 1."""
        if not self.can_prune:
            return 1.0
        logits = _init_logits(self.w_bits) / self.state.temperature
        th = torch.softmax(logits, 0)
        return float(1.0 / th[1:].sum())
