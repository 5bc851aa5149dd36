"""Flax modules that a policy swaps in for flax's own, so unmodified models use secure forms.

`GroupNorm` keeps flax's name (so flax names its parameters and submodules exactly as before:
shipped weights load unchanged) and its fields, and computes with whichever `groupnorm`
implementation `raympc.activations.use` made current.
"""

from __future__ import annotations

import flax.linen as nn

from raympc.activations import active

# Captured at import, before any policy rebinds `flax.linen.GroupNorm`.
FLAX_GROUP_NORM = nn.GroupNorm


class GroupNorm(FLAX_GROUP_NORM):
    @nn.compact
    def __call__(self, x, *, mask=None):
        if mask is not None or self.reduction_axes is not None or self.axis_name is not None:
            raise NotImplementedError("the swapped-in GroupNorm supports neither masks, custom reduction "
                                      "axes nor axis_name; run this model with stock GroupNorm "
                                      "(a policy without 'groupnorm')")
        channels = x.shape[-1]
        groups = channels // self.group_size if self.group_size is not None else self.num_groups
        if groups is None or groups <= 0 or channels % groups:
            raise ValueError(f"{groups} groups do not divide {channels} channels")
        scale = self.param("scale", self.scale_init, (channels,), self.param_dtype) if self.use_scale else None
        bias = self.param("bias", self.bias_init, (channels,), self.param_dtype) if self.use_bias else None
        return active.current("groupnorm")(x, groups, scale, bias, self.epsilon)
