"""Conversion of a float model into a searchable one, samplers, discretization (docs/method.md §1-§4)."""

from jpq.search.convert import convert
from jpq.search.net import LayerInfo, SearchableNet
from jpq.search.sampler import DEFAULT_DECAY, SAMPLERS, SamplerState

__all__ = ["DEFAULT_DECAY", "SAMPLERS", "LayerInfo", "SamplerState", "SearchableNet", "convert"]
