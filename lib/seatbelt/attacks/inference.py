"""A faster copy of a model for the attack solver to evaluate: the same function, fewer passes.

An attack evaluates one frozen model thousands of times. Three rewrites make that cheaper:

* In eval mode a BatchNorm layer is an affine map, so it folds into the convolution or linear
  layer before it (w' = w s, b' = (b - m) s + beta, s = gamma / sqrt(var + eps)), which removes
  two elementwise passes per layer from every forward and backward.
* A convolution of a single-channel image (the encoder's first layer on greyscale data) runs as
  an unfold and a matrix product (:class:`UnfoldedConv`): oneDNN computes the gradient with
  respect to a one-channel input about 5x slower than the forward pass, which made that one
  gradient the most expensive step of an evaluation.
* Convolutions run in channels-last layout, which oneDNN (CPU) and cuDNN (CUDA) serve faster.

The conv nets' matrix products written as convolutions already run as matrix products in the
model itself (:class:`seatbelt.nets.MatmulConv2d`), in training and here alike.

bench/attacks.py prints the cost of one evaluation (objective and gradient) on the copy and on
the model.

The copy computes the model's function up to float rounding (relative differences of about 1e-6:
the sums run in another order), so the solver searches with the copy while the battery measures
every reported number on the original model.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

_FOLDABLE = {
    nn.Conv2d: (nn.BatchNorm2d, lambda layer, bn: fuse_conv_bn_eval(layer, bn)),
    nn.ConvTranspose2d: (
        nn.BatchNorm2d,
        lambda layer, bn: fuse_conv_bn_eval(layer, bn, transpose=True),
    ),
    nn.Linear: (nn.BatchNorm1d, fuse_linear_bn_eval),
}


def inference_copy(model: nn.Module) -> nn.Module:
    """An eval-mode, frozen copy of ``model``: BatchNorm folded, single-channel convolutions as
    matrix products, channels-last convolutions."""
    fast = copy.deepcopy(model).eval().requires_grad_(False)
    for module in list(fast.modules()):
        if isinstance(module, nn.Sequential):
            _fold(module)
            for i, layer in enumerate(module):
                if UnfoldedConv.applies(layer):
                    module[i] = UnfoldedConv(layer)
    return fast.to(memory_format=torch.channels_last)


def _fold(sequence: nn.Sequential) -> None:
    """Replace each (layer, BatchNorm) pair of ``sequence`` by the folded layer and an identity."""
    for i in range(len(sequence) - 1):
        layer, bn = sequence[i], sequence[i + 1]
        # isinstance: the nets' matrix-product layers are convolutions, and fold as such
        kind = next((k for cls, k in _FOLDABLE.items() if isinstance(layer, cls)), None)
        if kind and type(bn) is kind[0] and bn.track_running_stats and bn.running_mean is not None:
            sequence[i], sequence[i + 1] = kind[1](layer, bn), nn.Identity()


class UnfoldedConv(nn.Module):
    """A ``Conv2d`` of a single-channel input as unfold (im2col) and one matrix product.

    out[b, o, p] = sum_k W[o, k] cols[b, k, p] + bias[o], cols = unfold(x): the same sums as the
    convolution. The product is taken as cols^T W^T, (B, positions, out), which is the channels-last
    layout of the output, so the next convolution needs no reorder.
    """

    def __init__(self, layer: nn.Conv2d):
        super().__init__()
        self.layer = layer
        self.register_buffer("weight_t", layer.weight.detach().flatten(1).T.contiguous())
        self.register_buffer("bias", None if layer.bias is None else layer.bias.detach())

    @staticmethod
    def applies(layer: nn.Module) -> bool:
        return (
            type(layer) is nn.Conv2d
            and layer.in_channels == 1
            and layer.groups == 1
            and layer.padding_mode == "zeros"
            and isinstance(layer.padding, tuple)
        )

    def forward(self, x: Tensor) -> Tensor:
        c = self.layer
        height, width = (
            (size + 2 * pad - dil * (k - 1) - 1) // stride + 1
            for size, pad, dil, k, stride in zip(
                x.shape[-2:], c.padding, c.dilation, c.kernel_size, c.stride
            )
        )
        cols = F.unfold(x, c.kernel_size, dilation=c.dilation, padding=c.padding, stride=c.stride)
        # one (B * positions, k) x (k, out) product: a batched one over B runs several times slower
        cols = cols.transpose(1, 2).reshape(-1, self.weight_t.shape[0])
        out = (
            cols @ self.weight_t
            if self.bias is None
            else torch.addmm(self.bias, cols, self.weight_t)
        )
        return out.view(len(x), height, width, -1).permute(0, 3, 1, 2)
