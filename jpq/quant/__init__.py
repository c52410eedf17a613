"""Fake-quantizers: per-channel min-max weights, PACT activations, derived-scale biases."""

from jpq.quant.activations import act_scale, mixed_pact, pact
from jpq.quant.bias import quantize_bias
from jpq.quant.weights import channel_scales, mixed_weight, quantize_all, quantize_weight

__all__ = [
    "act_scale",
    "channel_scales",
    "mixed_pact",
    "mixed_weight",
    "pact",
    "quantize_all",
    "quantize_bias",
    "quantize_weight",
]
