"""A faster copy of a model for the attack solver to evaluate: the same function, fewer passes.

An attack evaluates one frozen model thousands of times. In eval mode a BatchNorm layer is an
affine map, so it folds into the convolution or linear layer before it (w' = w s, b' = (b - m) s
+ beta, s = gamma / sqrt(var + eps)), which removes two elementwise passes per layer from every
forward and backward. Convolutions run in channels-last layout, which oneDNN (CPU) and cuDNN
(CUDA) serve faster. On the 32x32 bench VAE, one thread, this made an evaluation 1.6x cheaper.

The copy computes the model's function up to float rounding (relative differences of about 1e-7),
so the solver searches with the copy while the battery measures every reported number on the
original model.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

_FOLDABLE = {
    nn.Conv2d: (nn.BatchNorm2d, lambda layer, bn: fuse_conv_bn_eval(layer, bn)),
    nn.ConvTranspose2d: (nn.BatchNorm2d, lambda layer, bn: fuse_conv_bn_eval(layer, bn, transpose=True)),
    nn.Linear: (nn.BatchNorm1d, fuse_linear_bn_eval),
}


def inference_copy(model: nn.Module) -> nn.Module:
    """An eval-mode, frozen copy of ``model`` with BatchNorm folded and channels-last convolutions."""
    fast = copy.deepcopy(model).eval().requires_grad_(False)
    for module in list(fast.modules()):
        if isinstance(module, nn.Sequential):
            _fold(module)
    return fast.to(memory_format=torch.channels_last)


def _fold(sequence: nn.Sequential) -> None:
    """Replace each (layer, BatchNorm) pair of ``sequence`` by the folded layer and an identity."""
    for i in range(len(sequence) - 1):
        layer, bn = sequence[i], sequence[i + 1]
        kind = _FOLDABLE.get(type(layer))
        if kind and type(bn) is kind[0] and bn.track_running_stats and bn.running_mean is not None:
            sequence[i], sequence[i + 1] = kind[1](layer, bn), nn.Identity()
