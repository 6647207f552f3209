"""Encoders and decoders (Appendix G).

The conv nets are those of Chen et al. (2018) for 64x64 images: encoder filters 32, 32, 64, 64
(k4 s2 p1) then 512 (k4 to 1x1); decoder 512 (k1), 64 (k4 to 4x4), 64, 32, 32, C (k4 s2 p1).
RGB data use 64, 64, 128, 128, 512 and 512, 128, 128, 64, 64, C. The 32x32 variant drops one
stride-2 stage from each. Hidden layers use BatchNorm and ReLU as in Chen et al.'s code.
The Seatbelt conditionals are MLPs with two hidden layers, BatchNorm and LeakyReLU.

Three of those layers are matrix products written as convolutions: the encoder's last (a 4x4
kernel on a 4x4 map) and the decoder's first two (kernels on a 1x1 input). They run as one
(:class:`MatmulConv2d`, :class:`MatmulConvTranspose2d`), the same parameters and the same sums,
because oneDNN's GEMM computes them several times faster than its convolution, forward and
backward: 14 ms against 78 ms and 83 ms for the pair at batch 1024 on two cores.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SUPPORTED_SIZES = (32, 64)


def _filters(channels: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(encoder, decoder) filter counts of Appendix G for 1-channel or RGB data."""
    if channels == 1:
        return (32, 32, 64, 64, 512), (512, 64, 64, 32, 32)
    return (64, 64, 128, 128, 512), (512, 128, 128, 64, 64)


def _check_image_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) != 3 or shape[1] != shape[2] or shape[1] not in SUPPORTED_SIZES:
        raise ValueError(
            f"conv nets take square images of side {SUPPORTED_SIZES}, got item shape {shape}; "
            "resize the data (e.g. dsprites(size=32)) or use net='mlp'."
        )
    return shape[0], shape[1]


def _check_matmul(layer: nn.Conv2d | nn.ConvTranspose2d) -> None:
    if layer.padding != (0, 0) or layer.dilation != (1, 1) or layer.groups != 1:
        raise ValueError(
            f"{type(layer).__name__} is a matrix product only without padding, dilation or groups; "
            "use torch.nn's layer for the others."
        )


class MatmulConv2d(nn.Conv2d):
    """A ``Conv2d`` that runs as one matrix product on an input the size of its kernel.

    A kH x kW kernel on a kH x kW map, unpadded, gives one output pixel:
    out[:, o] = sum_{c,u,v} W[o, c, u, v] x[:, c, u, v] + b[o]. The sum is flattened in the input's
    layout, (u, v, c) for channels-last and (c, u, v) otherwise, so neither side is copied.
    Any other input size is the convolution's.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _check_matmul(self)

    def forward(self, x: Tensor) -> Tensor:
        if tuple(x.shape[-2:]) != self.kernel_size:
            return super().forward(x)
        if x.is_contiguous():
            inputs, weight = x.flatten(1), self.weight.flatten(1)
        else:
            inputs, weight = (
                x.permute(0, 2, 3, 1).flatten(1),
                self.weight.permute(0, 2, 3, 1).flatten(1),
            )
        return F.linear(inputs, weight, self.bias)[:, :, None, None]


class MatmulConvTranspose2d(nn.ConvTranspose2d):
    """A ``ConvTranspose2d`` that runs as one matrix product on a 1x1 input.

    Unpadded, a 1x1 input gives a kH x kW output whatever the stride:
    out[:, o, u, v] = sum_c x[:, c] W[c, o, u, v] + b[o]. The output takes the weight's layout:
    channels-last once the model is moved there (``model.to(memory_format=torch.channels_last)``).
    Any other input size is the transposed convolution's.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _check_matmul(self)
        if self.output_padding != (0, 0):
            raise ValueError(
                "MatmulConvTranspose2d takes no output_padding; use nn.ConvTranspose2d."
            )

    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:
        if x.shape[-2:] != (1, 1) or output_size is not None:
            return super().forward(x, output_size)
        height, width = self.kernel_size
        channels_last = not self.weight.is_contiguous()
        if channels_last:  # columns ordered (u, v, o)
            weight = self.weight.permute(0, 2, 3, 1).flatten(1)
            bias = None if self.bias is None else self.bias.repeat(height * width)
        else:  # columns ordered (o, u, v)
            weight = self.weight.flatten(1)
            bias = None if self.bias is None else self.bias.repeat_interleave(height * width)
        out = x.flatten(1) @ weight if bias is None else torch.addmm(bias, x.flatten(1), weight)
        if channels_last:
            return out.view(len(x), height, width, -1).permute(0, 3, 1, 2)
        return out.view(len(x), -1, height, width)


class ConvEncoder(nn.Module):
    """x (B, C, S, S) -> features (B, 512)."""

    def __init__(self, shape: tuple[int, int, int]):
        super().__init__()
        channels, size = _check_image_shape(shape)
        filters, _ = _filters(channels)
        strided = filters[:4] if size == 64 else filters[1:4]
        layers: list[nn.Module] = []
        previous = channels
        for f in strided:
            layers += [nn.Conv2d(previous, f, 4, 2, 1), nn.BatchNorm2d(f), nn.ReLU()]
            previous = f
        layers += [
            MatmulConv2d(previous, filters[4], 4),
            nn.BatchNorm2d(filters[4]),
            nn.ReLU(),
            nn.Flatten(),
        ]
        self.net = nn.Sequential(*layers)
        self.out_features = filters[4]

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ConvDecoder(nn.Module):
    """z (B, D) -> image mean (B, C, S, S)."""

    def __init__(self, in_features: int, shape: tuple[int, int, int]):
        super().__init__()
        channels, size = _check_image_shape(shape)
        _, filters = _filters(channels)
        layers: list[nn.Module] = [
            nn.Unflatten(1, (in_features, 1, 1)),
            MatmulConvTranspose2d(in_features, filters[0], 1),
            nn.BatchNorm2d(filters[0]),
            nn.ReLU(),
            MatmulConvTranspose2d(filters[0], filters[1], 4),
            nn.BatchNorm2d(filters[1]),
            nn.ReLU(),
        ]
        upsampling = filters[2:] if size == 64 else filters[3:]
        previous = filters[1]
        for f in upsampling:
            layers += [nn.ConvTranspose2d(previous, f, 4, 2, 1), nn.BatchNorm2d(f), nn.ReLU()]
            previous = f
        layers.append(nn.ConvTranspose2d(previous, channels, 4, 2, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


def mlp_trunk(in_features: int, hidden: int, n_hidden: int = 2) -> nn.Sequential:
    """Hidden layers Linear -> BatchNorm -> LeakyReLU, without an output layer."""
    layers: list[nn.Module] = []
    previous = in_features
    for _ in range(n_hidden):
        layers += [nn.Linear(previous, hidden), nn.BatchNorm1d(hidden), nn.LeakyReLU(0.2)]
        previous = hidden
    return nn.Sequential(*layers)


class MLP(nn.Module):
    """Two hidden layers with BatchNorm and LeakyReLU (the Seatbelt conditionals of Appendix G)."""

    def __init__(self, in_features: int, hidden: int, out_features: int, n_hidden: int = 2):
        super().__init__()
        self.net = nn.Sequential(
            mlp_trunk(in_features, hidden, n_hidden), nn.Linear(hidden, out_features)
        )
        self.out_features = out_features

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class MLPEncoder(nn.Module):
    """Vector data (B, D) -> features (B, hidden): an MLP trunk for the posterior heads."""

    def __init__(self, in_features: int, hidden: int):
        super().__init__()
        self.net = mlp_trunk(in_features, hidden)
        self.out_features = hidden

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
