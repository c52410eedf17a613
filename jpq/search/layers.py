"""Searchable Conv/Linear layers: one conv on the mixed weight tensor (docs/method.md §4).

::

    theta_W = sample(alpha_W^g)                                  (P, C_out)
    W_eff   = sum_i theta_W[i] * Q_{p_i}(W)                      per output channel
    b_eff   = quantize_bias(b, s_a_eff(theta_A_in) * s_w_eff(theta_W))
    y       = conv(x, W_eff, b_eff)
    out     = sum_j theta_A[j] * PACT_{a_j}(y)      (identity for the output group)

The layer holds references to its group quantizer (shared with the other members) and to the
activation quantizer of its *input* (the producer group's, or the network-input quantizer); both are
registered once elsewhere, so they are stored as plain attributes here.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jpq.quant import mixed_weight, quantize_bias
from jpq.quant.params import mixed_layer_params
from jpq.quant.weights import grid_scales
from jpq.search.quantizers import ActQuantizer, GroupQuantizer


class SearchLayer(nn.Module):
    """Common part of searchable Conv1d/Conv2d/Linear: folded weight and bias (every layer has a bias)."""

    op: str  # "conv" | "dw" | "linear"
    #: this forward pass's (W_eff, b_eff), computed ahead with the other layers' (weight_side_ahead)
    step_params: tuple[Tensor, Tensor] | None = None

    def __init__(
        self, weight: Tensor, bias: Tensor | None, group: GroupQuantizer, in_quant: ActQuantizer | None
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone())
        b = torch.zeros(weight.shape[0]) if bias is None else bias.detach().clone()
        self.bias = nn.Parameter(b)
        object.__setattr__(self, "group", group)  # shared: not a submodule of this layer
        object.__setattr__(self, "in_quant", in_quant)

    def quantized_params(self) -> tuple[Tensor, Tensor]:
        """Mixed (fake-quantized) weight and bias of this forward call."""
        if self.step_params is not None:  # computed ahead with the other layers'
            out = self.step_params
            object.__setattr__(self, "step_params", None)
            return out
        g: GroupQuantizer = self.group  # type: ignore[assignment]
        theta = g.theta()
        iq: ActQuantizer | None = self.in_quant  # type: ignore[assignment]
        s_a = iq.expected_scale(iq.current_theta()) if iq is not None else torch.ones(())
        if g.state.fused:  # the same values from one fused kernel (jpq.quant.fused)
            from jpq.quant.fused import layer_params_kernel

            return layer_params_kernel(self.weight).apply(
                self.weight, self.bias, theta, s_a.to(theta.device), g.grid_levels, g.grid_upper,
                g.grid_nonzero, int(g.w_bits[0] == 0),
            )
        if g.state.layer_node:  # the composition below as one autograd node (same values)
            return mixed_layer_params(self.weight, self.bias, theta, s_a, g.grid, g.w_bits[0] == 0)
        grid = g.grid
        scales = grid_scales(self.weight, grid)  # (P, C, 1), no grad
        w = mixed_weight(self.weight, theta, g.bits_t, grid=grid, scales=scales)
        s_w = (theta * scales.squeeze(-1)).sum(0)  # (C,), carries the gradient to theta (§2.3)
        b = quantize_bias(self.bias, s_a * s_w)
        return w, b

    def _linear_op(self, x: Tensor, w: Tensor, b: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        w, b = self.quantized_params()
        y = self._linear_op(x, w, b)
        act = self.group.act  # type: ignore[attr-defined]
        return y if act is None else act(y)


class SearchConv(SearchLayer):
    """Searchable Conv1d/Conv2d, standard or depthwise."""

    def __init__(
        self,
        conv: nn.Conv1d | nn.Conv2d,
        group: GroupQuantizer,
        in_quant: ActQuantizer | None,
        bias: Tensor | None = None,
    ) -> None:
        super().__init__(conv.weight, conv.bias if bias is None else bias, group, in_quant)
        self.dims = 1 if isinstance(conv, nn.Conv1d) else 2
        self.stride = conv.stride
        self.padding = conv.padding
        self.dilation = conv.dilation
        self.groups = conv.groups
        self.in_channels = conv.in_channels
        self.out_channels = conv.out_channels
        self.kernel_size = conv.kernel_size
        self.op = "dw" if conv.groups > 1 else "conv"
        if conv.padding_mode != "zeros":
            raise ValueError(f"padding_mode {conv.padding_mode!r} is not supported (only 'zeros')")

    def _linear_op(self, x: Tensor, w: Tensor, b: Tensor) -> Tensor:
        f = F.conv2d if self.dims == 2 else F.conv1d
        return f(x, w, b, self.stride, self.padding, self.dilation, self.groups)


class SearchLinear(SearchLayer):
    """Searchable Linear."""

    op = "linear"

    def __init__(
        self, lin: nn.Linear, group: GroupQuantizer, in_quant: ActQuantizer | None, bias: Tensor | None = None
    ) -> None:
        super().__init__(lin.weight, lin.bias if bias is None else bias, group, in_quant)
        self.in_features = lin.in_features
        self.out_features = lin.out_features

    def _linear_op(self, x: Tensor, w: Tensor, b: Tensor) -> Tensor:
        return F.linear(x, w, b)


class GroupAct(nn.Module):
    """Re-quantizes an add output with its group's activation quantizer (§1.1 Adds)."""

    def __init__(self, group: GroupQuantizer) -> None:
        super().__init__()
        object.__setattr__(self, "group", group)

    def forward(self, x: Tensor) -> Tensor:
        act = self.group.act  # type: ignore[attr-defined]
        return x if act is None else act(x)


def weight_side_ahead(layers: list[SearchLayer]) -> list[ActQuantizer]:
    """Compute every layer's ``(W_eff, b_eff)`` of the coming forward pass in one native call
    (:class:`jpq.quant.native.NativeNetParams`) and leave each on its layer (``step_params``).

    The thetas are drawn here, in layer order: each layer's own (one draw per member, as its forward
    would) and its input quantizer's, which that quantizer's forward then reuses (``step_theta``, one
    draw per quantizer and pass). The values are those of the per-layer path for the deterministic
    samplers (softmax, hard; Gumbel noise would come in another order). Returns the quantizers whose
    ``step_theta`` was set, for :func:`weight_side_done`.
    """
    from jpq.quant.native import NativeNetParams

    plan, params = _ahead_plan(layers)
    dtype = params[0][0].dtype
    scales: dict[int, Tensor] = {}
    drawn: list[ActQuantizer] = []
    ths, sas = [], []
    for _w, _b, g, iq in params:
        th = g.theta()
        ths.append(th if th.dtype == dtype else th.to(dtype))
        key = id(iq)
        if key not in scales:
            if iq is None:
                s_a = torch.ones((), dtype=dtype)
            else:
                th_a = iq.theta()
                object.__setattr__(iq, "step_theta", th_a)  # per pass: skip nn.Module's attribute checks
                object.__setattr__(iq, "last_theta", th_a)
                drawn.append(iq)
                s_a = iq.expected_scale(th_a)
            scales[key] = s_a if s_a.dtype == dtype else s_a.to(dtype)
        sas.append(scales[key])
    out = NativeNetParams.apply(plan, *(p[0] for p in params), *(p[1] for p in params), *ths, *sas)
    n = len(layers)
    for i, layer in enumerate(layers):
        object.__setattr__(layer, "step_params", (out[i], out[n + i]))
    return drawn


def _ahead_plan(layers: list[SearchLayer]) -> tuple[Any, list[tuple[Any, ...]]]:
    """The :class:`~jpq.quant.native.NetPlan` of ``layers`` and per layer its weight, bias, group and input
    quantizer, made once per device and dtype (module attribute lookups are slow next to a small kernel)."""
    from jpq.quant.native import NetPlan

    w0 = layers[0].weight
    cache = layers[0].__dict__.setdefault("_ahead_plans", {})
    key = (w0.device, w0.dtype, id(w0))
    if key not in cache:
        cache.clear()
        shapes, grids, params = [], [], []
        for layer in layers:
            g: GroupQuantizer = layer.group  # type: ignore[assignment]
            grid = tuple(t.to(w0.dtype).contiguous() for t in (g.grid_levels, g.grid_upper, g.grid_nonzero))
            grids.append((*grid, int(g.w_bits[0] == 0)))
            shapes.append((len(g.w_bits), layer.weight.shape[0], layer.weight[0].numel()))
            params.append((layer.weight, layer.bias, g, layer.in_quant))
        cache[key] = (NetPlan(shapes, grids), params)
    return cache[key]


def weight_side_done(layers: list[SearchLayer], drawn: list[ActQuantizer]) -> None:
    """Clear what :func:`weight_side_ahead` left for the forward pass (also after a failed one)."""
    for layer in layers:
        object.__setattr__(layer, "step_params", None)
    for q in drawn:
        object.__setattr__(q, "step_theta", None)
