"""Samplers, initial theta, rescale, temperature (docs/method.md §3)."""

from __future__ import annotations

import math

import pytest
import torch

from jpq.quant import pact
from jpq.search.quantizers import ActQuantizer, GroupQuantizer
from jpq.search.sampler import DEFAULT_DECAY, SamplerState, anneal, one_hot_argmax, sample


def _group(sampler: str = "softmax", bits=(0, 2, 4, 8), channels: int = 5, **kw) -> GroupQuantizer:
    return GroupQuantizer(
        0, channels, bits, (8,), SamplerState(sampler, 1.0, kw.pop("gumbel_hard", False)), **kw
    )


def test_initial_theta_and_rescale() -> None:
    g = _group()
    th = g.train().theta().detach()
    # alpha = p / max = [0, .25, .5, 1] -> softmax at T=1 (table of §3.1)
    expect = torch.tensor([0.1504, 0.1931, 0.2479, 0.4087])
    torch.testing.assert_close(th[:, 0], expect, atol=1e-4, rtol=0)
    assert torch.allclose(th, th[:, :1].expand_as(th))
    assert g.init_rescale() == pytest.approx(1.1770, abs=1e-4)
    assert _group(bits=(2, 4, 8)).init_rescale() == 1.0
    # E[bits] over kept channels = 5.47 for both sets
    kept = th[1:, 0] / th[1:, 0].sum()
    assert float((kept * torch.tensor([2.0, 4.0, 8.0])).sum()) == pytest.approx(5.47, abs=0.01)


def test_eval_is_one_hot_argmax_with_ste() -> None:
    g = _group()
    with torch.no_grad():
        g.alpha[:, 1] = torch.tensor([2.0, 0.0, 0.0, 0.0])  # channel 1 -> 0 bits
        g.alpha[:, 2] = torch.tensor([0.0, 0.0, 3.0, 0.0])  # channel 2 -> 4 bits
    th = g.eval().theta()
    assert g.channel_bits() == [8, 0, 4, 8, 8]
    assert torch.equal(th.sum(0), torch.ones(5))
    # straight-through: the gradient is the softmax's
    a = torch.tensor([[0.3], [0.1], [0.9]], requires_grad=True)
    out = sample(a, SamplerState("softmax", 0.5), training=False)
    assert out.squeeze().tolist() == [0.0, 0.0, 1.0]
    (out * torch.tensor([[1.0], [2.0], [3.0]])).sum().backward()
    b = a.detach().clone().requires_grad_(True)
    (torch.softmax(b / 0.5, 0) * torch.tensor([[1.0], [2.0], [3.0]])).sum().backward()
    torch.testing.assert_close(a.grad, b.grad)


def test_argmax_ties_go_to_lowest_index() -> None:
    x = torch.tensor([[1.0, 0.0], [1.0, 2.0], [0.5, 2.0]])
    assert one_hot_argmax(x).tolist() == [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]


def test_softmax_temperature() -> None:
    a = torch.tensor([[0.0], [1.0]])
    s = SamplerState("softmax", 0.5)
    th = sample(a, s, training=True)
    assert th[1, 0].item() == pytest.approx(1 / (1 + math.exp(-2.0)))


def test_hard_sampler_forward_one_hot_in_training() -> None:
    g = _group("hard").train()
    th = g.theta()
    assert torch.equal(th, one_hot_argmax(g.alpha.detach()))
    assert th.requires_grad


def test_gumbel_redrawn_every_call_and_hard_variant() -> None:
    torch.manual_seed(0)
    g = _group("gumbel").train()
    t1, t2 = g.theta(), g.theta()
    torch.testing.assert_close(t1.sum(0), torch.ones(5))
    assert not torch.allclose(t1, t2)
    gh = _group("gumbel", gumbel_hard=True).train()
    th = gh.theta()
    assert set(th.detach().unique().tolist()) <= {0.0, 1.0} and torch.equal(th.sum(0), torch.ones(5))
    # eval is deterministic argmax
    assert torch.equal(g.eval().theta(), one_hot_argmax(g.alpha.detach()))


def test_temperature_schedule() -> None:
    t = 1.0
    for _ in range(20):
        t = anneal(t, DEFAULT_DECAY)
    assert t == pytest.approx(0.407, abs=1e-3)  # §3.4 table
    for _ in range(30):
        t = anneal(t, DEFAULT_DECAY)
    assert t == pytest.approx(0.105, abs=1e-3)
    assert DEFAULT_DECAY == pytest.approx(0.95600, abs=1e-5)


def test_keep_alive_and_fully_pruned_warning() -> None:
    g = _group(channels=3)
    with torch.no_grad():
        g.alpha.copy_(torch.tensor([[5.0, 5.0, 5.0], [0, 4.0, 0], [0, 0, 0], [0, 0, 1.0]]))
    assert g.channel_bits() == [0, 2, 0]  # channel 1 is the closest to a non-zero precision
    off = _group(channels=3, keep_alive=False)
    with torch.no_grad():
        off.alpha.copy_(g.alpha)
    with pytest.warns(UserWarning, match="fully pruned"):
        assert off.channel_bits() == [0, 0, 0]


def test_per_layer_alpha_shared_by_all_channels() -> None:
    g = _group(bits=(2, 4, 8), per_layer=True)
    assert g.alpha.shape == (3, 1)
    assert g.train().theta().shape == (3, 5)


def test_frozen_activation_quantizer_follows_loaded_logits() -> None:
    """Discrete (frozen) activation quantizers compute only the argmax precision; a state_dict loaded
    after discretize() (as when a run is reloaded for export) must move that choice."""
    x = torch.linspace(-1.0, 7.0, 101)
    q = ActQuantizer((2, 4, 8), SamplerState())
    q.freeze()
    torch.testing.assert_close(q(x), pact(x, 6.0, 8), rtol=0, atol=0)  # init logits: 8 bits
    state = {k: v.clone() for k, v in q.state_dict().items()}
    state["alpha"] = torch.tensor([1.0, 0.0, 0.0])
    q.load_state_dict(state)
    assert q.chosen_bits() == 2
    torch.testing.assert_close(q(x), pact(x, 6.0, 2), rtol=0, atol=0)
    assert not q.alpha.requires_grad and q.current_theta().tolist() == [1.0, 0.0, 0.0]
