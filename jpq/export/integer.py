"""Integerization of an exported network: the integer-only program that the C code and the integer
PyTorch reference (:mod:`jpq.export.intref`) both execute (docs/method.md §8, deployment).

Every activation tensor holds integer codes ``q`` with a real value ``(q + zp) / S``:

* a PACT output (§2.2): ``uint8`` codes ``q = floor(S * clamp(x, 0, clip))`` in ``[0, qmax]``,
  ``qmax = floor(S * clip)``, ``S = (2^a - 1) / (clip + 1e-3)``, ``zp = 0``;
* the network input: the same codes of its (possibly signed) PACT, shifted to ``[0, 2^a - 1]`` by the zero
  point ``zp = floor(S * clip_lo)`` (a zero-padded border is the real value 0, i.e. ``q + zp = 0``);
* an average pool: the ``int32`` sum of its window, ``S`` multiplied by the window size (the division is
  folded into the next layer's multiplier, so pooling is exact).

A Conv/Linear with its precision sub-blocks of ``w_bits``-bit weights ``w`` (§2.1) accumulates
``acc = sum w * (q + zp)`` in int32 and requantizes per output channel with ``M_c = s_w[c] * S_out / S_in``
as a fixed-point multiplier ``m_c`` and shift ``s_c`` (:mod:`jpq.quant.fixed`)::

    q_out = clamp(floor((floor(acc * m_c / 2^(s_c - t_c)) + B_c) / 2^t_c), 0, qmax_out)
    B_c = round(b_c * S_out * 2^t_c)    (int32, t_c <= s_c: :func:`int32_bias`)

(``= floor((acc * m_c + B_c * 2^(s_c - t_c)) / 2^s_c)``, without a 64-bit offset that could overflow).
The bias (§2.3) is kept at the multiplier's resolution where int32 holds it, else the finest that does:
an int32 bias in accumulator units would move every activation of a channel by up to half an accumulator
step and flip ~0.1 % of the PACT floors, which random networks with close
logits turn into a few % of changed predictions. The output layer (float logits in the fake-quant
network) writes ``int32`` logits at ``2^k`` codes per unit, the finest scale at which they cannot overflow
(:func:`logit_scale`; a coarse fixed scale ties close logits of random networks).
A residual add computes what the fake-quant network computes: the float32 sum of the operands' values
``fl(q_a / S_a)``, ``fl(q_b / S_b)`` (two tables of float32 bit patterns), clamped to the output clip,
times ``S_out`` in float32, floored; the float32 operations are done on the bit patterns with integers
(:mod:`jpq.export.softfloat`). An exact integer sum would differ: the real sum often lies exactly on an
output level, and the float32 sum then falls one step below it for ~5-20 % of the code pairs, a bias that
the trained network has and that an exact add would remove (enough to flip a few % of the predictions).
"""

from __future__ import annotations

import copy
import math
import operator
from typing import Any

import numpy as np
import torch
from torch import Tensor, fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from jpq.errors import UnsupportedModelError
from jpq.export.intprog import AddOp, Block, ConvOp, IntProgram, ITensor, PoolOp
from jpq.export.modules import OutputOrder, Pact
from jpq.export.pack import pack_bits
from jpq.export.plan import ExportedLayer, export_layers, plan_groups
from jpq.export.softfloat import f32_bits
from jpq.export.surgery import pruned_graph
from jpq.quant.activations import pact_scale
from jpq.quant.fixed import fixed_point
from jpq.search import SearchableNet

#: the finest logit scale 2^k (int32 logits are the real logits times the program's logit scale)
MAX_LOGIT_SHIFT = 30
_I32_MAX = 2**31 - 1
_ALIAS_MODULES = (nn.ReLU, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity, nn.Flatten)
_ADDS = (operator.add, torch.add, operator.iadd)


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, str):
        raise UnsupportedModelError(f"padding {v!r} is not supported by the integer export (give numbers)")
    t = tuple(int(a) for a in (v if isinstance(v, tuple | list) else (v, v)))
    return (1, t[0]) if len(t) == 1 else (t[0], t[1])


def _shape(node: fx.Node) -> tuple[int, int, int]:
    s = tuple(node.meta["tensor_meta"].shape[1:])
    if len(s) == 1:
        return (s[0], 1, 1)
    if len(s) == 2:
        return (s[0], 1, s[1])
    if len(s) == 3:
        return (s[0], s[1], s[2])
    raise UnsupportedModelError(f"node {node.name}: tensors of rank {len(s) + 1} are not supported")


def pact_params(m: Pact) -> tuple[float, int, int]:
    """``(S, qmin, qmax)`` of a fixed PACT in the float32 arithmetic of its forward pass."""
    s = pact_scale(m.levels, m.clip, m.clip_lo)
    qmin = 0 if m.clip_lo is None else int(torch.floor(m.clip_lo * s))
    return float(s), qmin, int(torch.floor(m.clip * s))


def pact_codes(m: Pact, x: Tensor) -> Tensor:
    """The integer levels ``floor(S * clamp(x))`` (int64) of a fixed PACT, with the float32 operations of
    its forward pass."""
    s = torch.tensor(pact_params(m)[0], dtype=torch.float32)
    x = x.detach().float().cpu()
    if m.clip_lo is not None:
        xc = torch.clamp(x, m.clip_lo, m.clip)
    else:
        xc = torch.clamp(x, min=0.0).clamp(max=m.clip)
    return torch.floor(xc * s).to(torch.int64)


def quantize_input(prog: IntProgram, x: Tensor) -> np.ndarray:
    """The ``uint8`` input codes ``floor(S * clamp(x)) - zp`` of float inputs, as the fake-quant PACT has
    them (same float32 operations), shape ``(N, C*H*W)``."""
    q = pact_codes(prog.input_pact, x) - prog.input.zp
    if q.numel() and (int(q.min()) < 0 or int(q.max()) > 255):
        raise UnsupportedModelError("input codes do not fit uint8 (input precision above 8 bits?)")
    return q.reshape(q.shape[0], -1).numpy().astype(np.uint8)


def _conv_geometry(m: nn.Module) -> dict[str, tuple[int, int]]:
    if isinstance(m, nn.Linear):
        one = (1, 1)
        return {"kernel": one, "stride": one, "padding": (0, 0), "dilation": one}
    assert isinstance(m, nn.Conv1d | nn.Conv2d)
    pad = _pair(m.padding)
    return {"kernel": _pair(m.kernel_size), "stride": _pair(m.stride),
            "padding": (0, pad[1]) if isinstance(m, nn.Conv1d) else pad, "dilation": _pair(m.dilation)}


def logit_scale(lay: ExportedLayer, x: ITensor) -> float:
    """The logit scale ``2^k``: the finest (``k <= MAX_LOGIT_SHIFT``) at which no logit of the output layer
    ``lay`` can leave the int32 range, ``|logit| <= max_c sum_j |w_cj| s_w[c] vmax / S_in + |b_c|``."""
    w = lay.w_int.reshape(lay.w_int.shape[0], -1).abs().sum(1).double()
    bound = float((w * lay.w_scale.double() * x.vmax / x.scale + lay.bias.double().abs()).max())
    if not math.isfinite(bound):
        raise UnsupportedModelError(f"layer {lay.name}: the logits are not finite")
    # 2^30: one bit of margin, so that the bias in logit steps also fits int32 (int32_bias)
    k = MAX_LOGIT_SHIFT if bound <= 2.0**-MAX_LOGIT_SHIFT else math.floor(math.log2(2.0**30 / bound))
    if k < 0:
        raise UnsupportedModelError(f"layer {lay.name}: logits up to {bound:.3g} do not fit int32")
    return float(2 ** min(k, MAX_LOGIT_SHIFT))


def int32_bias(lay: ExportedLayer, s_out: float, shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(B_c, t_c)``: the bias as int32 in units of ``2^-t_c`` output steps, ``t_c`` the requantization shift
    ``s_c`` or less where int32 cannot hold that resolution (module docstring)."""
    steps = np.abs(lay.bias.double().numpy() * s_out)  # |bias| in output steps
    with np.errstate(divide="ignore"):
        room = np.floor(np.log2(2.0**30 / steps))  # |B| <= 2^30 (+ rounding) stays in int32
    t = np.minimum(shift, np.where(steps > 0, room, shift)).astype(np.int64)
    if (t < 0).any():
        raise UnsupportedModelError(f"layer {lay.name}: a bias of {steps.max():.3g} output steps does not "
                                    "fit int32")
    bias = np.rint(lay.bias.double().numpy() * s_out * np.exp2(t)).astype(np.int32)
    return bias, t.astype(np.int8)


def _lower_layer(lay: ExportedLayer, x: ITensor, y_shape: tuple[int, int, int], out: Pact | None,
                 name: str) -> ConvOp:
    """One Conv/Linear (+ the PACT of its group) as a :class:`ConvOp` (module docstring)."""
    if x.dtype == "i32" and lay.op != "linear":
        raise UnsupportedModelError(f"layer {lay.name}: only a Linear may follow an average pool")
    s_w = lay.w_scale.double().numpy()
    if out is None:
        s_out, qmax, y_dtype = logit_scale(lay, x), None, "i32"
    else:
        s_out, _, qmax = pact_params(out)
        y_dtype = "u8"
    acc_unit = s_w / x.scale  # real value of one accumulator step
    try:
        fp = [fixed_point(float(u * s_out)) for u in acc_unit]
    except ValueError as e:  # e.g. a scale too small for a 62-bit shift
        raise UnsupportedModelError(f"layer {lay.name}: {e}") from e
    shift = np.array([s for _, s in fp], dtype=np.int64)
    bias, bias_shift = int32_bias(lay, s_out, shift)
    w = lay.w_int
    per_row = w.reshape(w.shape[0], -1).abs().sum(1).numpy()
    if (per_row * x.vmax > _I32_MAX).any():
        raise UnsupportedModelError(f"layer {lay.name}: the int32 accumulator could overflow")
    blocks = []
    for bits, start, stop in lay.blocks():
        data = pack_bits(w[start:stop].numpy(), bits)
        blocks.append(Block(bits, start, stop, data, 8 * len(data) - (stop - start) * w[0].numel() * bits))
    y = ITensor(name, y_shape, y_dtype, s_out, 0, _I32_MAX if qmax is None else qmax, logits=qmax is None)
    return ConvOp(
        name=lay.name,
        kind=lay.op,
        x=x,
        y=y,
        w_int=w,
        blocks=blocks,
        bias=bias,
        bias_shift=bias_shift,
        mult=np.array([m for m, _ in fp], dtype=np.int32),
        shift=shift.astype(np.int8),
        qmax=qmax,
        **_conv_geometry(lay.module),
    )


def _values(t: ITensor) -> np.ndarray:
    """The fake-quant values ``fl(q / S)`` of every code of ``t``, as float32 bit patterns."""
    v = torch.arange(t.vmax + 1, dtype=torch.float32).div_(t.scale)
    return f32_bits(v).numpy().astype(np.uint32)


def _lower_add(name: str, a: ITensor, b: ITensor, out: Pact, shape: tuple[int, int, int]) -> AddOp:
    if a.dtype != "u8" or b.dtype != "u8" or a.zp or b.zp:
        raise UnsupportedModelError(f"add {name}: both operands must be PACT outputs")
    s_out, _, qmax = pact_params(out)
    try:
        scale, clip = (int(f32_bits(torch.tensor(v, dtype=torch.float32))) for v in (s_out, float(out.clip)))
        value_a, value_b = _values(a), _values(b)
    except ValueError as e:  # a subnormal or non-finite scale
        raise UnsupportedModelError(f"add {name}: {e}") from e
    y = ITensor(name, shape, "u8", s_out, 0, qmax)
    return AddOp(name, a, b, y, value_a, value_b, scale, clip, qmax)


def _lower_pool(name: str, m: nn.Module, x: ITensor, shape: tuple[int, int, int]) -> PoolOp:
    one_d = isinstance(m, nn.MaxPool1d | nn.AvgPool1d | nn.AdaptiveAvgPool1d)
    if isinstance(m, nn.AdaptiveAvgPool1d | nn.AdaptiveAvgPool2d):
        if x.shape[1] % shape[1] or x.shape[2] % shape[2]:
            raise UnsupportedModelError(f"pool {name}: adaptive pooling to a non-divisor size")
        k = (x.shape[1] // shape[1], x.shape[2] // shape[2])
        geo = {"kernel": k, "stride": k, "padding": (0, 0)}
    else:
        if getattr(m, "ceil_mode", False) or _pair(getattr(m, "dilation", 1)) != (1, 1):
            raise UnsupportedModelError(f"pool {name}: ceil_mode and dilation are not supported")
        geo = {key: _pair(getattr(m, key)) for key in ("kernel_size", "stride", "padding")}
        geo["kernel"] = geo.pop("kernel_size")
        if one_d:
            geo = {k: (1 if k != "padding" else 0, v[1]) for k, v in geo.items()}
    if isinstance(m, nn.MaxPool1d | nn.MaxPool2d):
        if x.dtype != "u8":
            raise UnsupportedModelError(f"pool {name}: max pooling of int32 sums is not supported")
        return PoolOp(name, "max", x, ITensor(name, shape, "u8", x.scale, x.zp, x.vmax), **geo)
    if geo["padding"] != (0, 0) or getattr(m, "divisor_override", None) or x.dtype != "u8":
        raise UnsupportedModelError(f"pool {name}: average pooling needs padding 0 on a PACT output")
    n = geo["kernel"][0] * geo["kernel"][1]
    y = ITensor(name, shape, "i32", x.scale * n, x.zp * n, x.vmax * n)
    return PoolOp(name, "sum", x, y, **geo)


def _alias(x: ITensor, name: str, shape: tuple[int, int, int]) -> ITensor:
    return ITensor(name, shape, x.dtype, x.scale, x.zp, x.vmax, buffer=x.buffer or x.name, logits=x.logits)


def _example_input(net: SearchableNet) -> Tensor:
    ph = next(n for n in net.net.graph.nodes if n.op == "placeholder")
    if "tensor_meta" not in ph.meta:
        raise UnsupportedModelError("the network has no recorded input shape")
    return torch.zeros(1, *ph.meta["tensor_meta"].shape[1:])


def _single_pact_user(node: fx.Node, mods: dict[str, nn.Module]) -> fx.Node | None:
    users = list(node.users)
    if len(users) == 1 and users[0].op == "call_module" and isinstance(mods[users[0].target], Pact):
        return users[0]
    return None


def _lower_node(n: fx.Node, mods: dict[str, nn.Module], by_name: dict[str, ExportedLayer],
                env: dict[fx.Node, ITensor], prog: IntProgram) -> None:
    """Lower one node of the exported graph; a node fused into the previous op is already in ``env``."""
    args = [env[a] for a in n.all_input_nodes if a in env]
    if n.op == "call_module":
        m = mods[n.target]
        if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Linear):
            act = _single_pact_user(n, mods)
            out = None if act is None else mods[act.target]
            op = _lower_layer(by_name[str(n.target)], args[0], _shape(act or n), out, (act or n).name)
            prog.ops.append(op)
            env[act or n] = op.y
        elif isinstance(m, Pact):
            raise UnsupportedModelError(f"node {n.name}: a PACT that follows no Conv/Linear/add")
        elif isinstance(m, _ALIAS_MODULES):
            if isinstance(m, nn.ReLU) and (args[0].zp or args[0].logits):
                raise UnsupportedModelError(f"node {n.name}: ReLU on a signed tensor")
            env[n] = _alias(args[0], n.name, _shape(n))
        elif isinstance(m, nn.MaxPool1d | nn.MaxPool2d | nn.AvgPool1d | nn.AvgPool2d | nn.AdaptiveAvgPool1d
                        | nn.AdaptiveAvgPool2d):
            op = _lower_pool(n.name, m, args[0], _shape(n))
            prog.ops.append(op)
            env[n] = op.y
        elif isinstance(m, OutputOrder):
            prog.output_order = m.index.tolist()
            env[n] = args[0]
        else:
            raise UnsupportedModelError(f"node {n.name}: {type(m).__name__} has no integer kernel")
    elif n.op == "call_function" and n.target in _ADDS:
        act = _single_pact_user(n, mods)
        if act is None or len(args) != 2:
            raise UnsupportedModelError(f"add {n.name}: needs two tensor operands and a re-quantizer")
        op = _lower_add(n.name, args[0], args[1], mods[act.target], _shape(act))
        prog.ops.append(op)
        env[act] = op.y
    elif n.op == "call_function" and n.target is torch.flatten:
        env[n] = _alias(args[0], n.name, _shape(n))
    else:
        raise UnsupportedModelError(f"node {n.name} ({n.op} {n.target}) has no integer kernel")


@torch.no_grad()
def integerize(net: SearchableNet) -> IntProgram:
    """The integer program of a discretized network (module docstring); raises
    :class:`UnsupportedModelError` naming the node when an operation has no integer form."""
    if next(net.parameters()).device.type != "cpu":
        net = copy.deepcopy(net).cpu()
    net.eval()
    plans = plan_groups(net)
    layers = export_layers(net, plans)
    gm = pruned_graph(net, plans, layers)
    ShapeProp(gm).propagate(_example_input(net))
    mods = dict(gm.named_modules())
    by_name = {lay.name: lay for lay in layers}
    nodes = list(gm.graph.nodes)
    ph = nodes[0]
    iq = _single_pact_user(ph, mods)
    if ph.op != "placeholder" or iq is None:
        raise UnsupportedModelError("the network input must feed its input quantizer only")
    pact: Pact = mods[iq.target]  # type: ignore[assignment]
    s, qmin, qmax = pact_params(pact)
    x = ITensor("input", _shape(iq), "u8", s, qmin, max(abs(qmin), abs(qmax)))
    prog = IntProgram(input=x, input_pact=pact, layers=layers, model=gm)
    env: dict[fx.Node, ITensor] = {iq: x}
    for n in nodes[1:]:
        if n in env:
            continue
        if n.op == "output":
            out = env[n.all_input_nodes[0]]
            if not out.logits:
                raise UnsupportedModelError("the network output must be the logits of the last layer")
            prog.output = out
            continue
        _lower_node(n, mods, by_name, env, prog)
    return prog
