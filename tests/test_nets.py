"""The conv nets' matrix-product layers compute torch's convolutions, values and gradients alike."""

import pytest
import torch
from torch import nn

from seatbelt.nets import ConvDecoder, ConvEncoder, MatmulConv2d, MatmulConvTranspose2d

LAYOUTS = [torch.contiguous_format, torch.channels_last]


def _pair(matmul_cls, torch_cls, *args, **kwargs):
    """A matrix-product layer and torch's layer holding the same parameters, in float64 so that
    the two orders of summation agree to 1e-10."""
    torch.manual_seed(0)
    layer = torch_cls(*args, **kwargs).double()
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_()
    matmul = matmul_cls(*args, **kwargs).double()
    matmul.load_state_dict(layer.state_dict())
    return matmul, layer


def _same_values_and_gradients(matmul, layer, x, layout):
    """Output, input gradient and parameter gradients agree; returns the matrix-product output."""
    matmul, layer = matmul.to(memory_format=layout), layer.to(memory_format=layout)
    x = x.double().contiguous(memory_format=layout)
    x_a, x_b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    got, expected = matmul(x_a), layer(x_b)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
    weights = torch.randn_like(expected)
    (got * weights).sum().backward()
    (expected * weights).sum().backward()
    torch.testing.assert_close(x_a.grad, x_b.grad, rtol=1e-10, atol=1e-10)
    for p, q in zip(matmul.parameters(), layer.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-10, atol=1e-10)
    return got


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(
    "args, kwargs, size",
    [
        ((64, 512, 4), {}, (4, 4)),  # the encoder's last layer: one output pixel
        ((5, 7, (3, 2)), dict(stride=2, bias=False), (3, 2)),
    ],
)
def test_a_whole_input_convolution_is_the_convolution(args, kwargs, size, layout):
    matmul, layer = _pair(MatmulConv2d, nn.Conv2d, *args, **kwargs)
    _same_values_and_gradients(matmul, layer, torch.randn(6, args[0], *size), layout)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(
    "args, kwargs",
    [
        ((10, 512, 1), {}),  # the decoder's first layer
        ((512, 64, 4), {}),  # and its second: a 4x4 map from a 1x1 input
        ((5, 7, (3, 2)), dict(stride=2, bias=False)),
    ],
)
def test_a_transposed_convolution_of_one_pixel_is_the_transposed_convolution(args, kwargs, layout):
    matmul, layer = _pair(MatmulConvTranspose2d, nn.ConvTranspose2d, *args, **kwargs)
    got = _same_values_and_gradients(matmul, layer, torch.randn(6, args[0], 1, 1), layout)
    if layout is torch.channels_last:  # the next layer needs no reorder
        assert got.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_other_input_sizes_are_the_layers_own(layout):
    matmul, layer = _pair(MatmulConv2d, nn.Conv2d, 3, 4, 4)
    _same_values_and_gradients(matmul, layer, torch.randn(2, 3, 9, 7), layout)
    matmul, layer = _pair(MatmulConvTranspose2d, nn.ConvTranspose2d, 3, 4, 4, stride=2)
    _same_values_and_gradients(matmul, layer, torch.randn(2, 3, 3, 5), layout)


@pytest.mark.parametrize(
    "cls, kwargs, match",
    [
        (MatmulConv2d, dict(padding=1), "without padding"),
        (MatmulConv2d, dict(groups=2), "groups"),
        (MatmulConvTranspose2d, dict(dilation=2), "dilation"),
        (MatmulConvTranspose2d, dict(stride=2, output_padding=1), "output_padding"),
    ],
)
def test_layers_that_are_not_matrix_products_are_refused(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(4, 6, 3, **kwargs)


@pytest.mark.parametrize("shape", [(1, 32, 32), (3, 64, 64)])
def test_the_conv_nets_run_their_matrix_products_as_such(shape):
    encoder, decoder = ConvEncoder(shape), ConvDecoder(10, shape)
    assert sum(isinstance(m, MatmulConv2d) for m in encoder.modules()) == 1
    assert sum(isinstance(m, MatmulConvTranspose2d) for m in decoder.modules()) == 2
    x = torch.randn(4, *shape).contiguous(memory_format=torch.channels_last)
    encoder.to(memory_format=torch.channels_last)
    decoder.to(memory_format=torch.channels_last)
    assert encoder(x).shape == (4, 512)
    assert decoder(torch.randn(4, 10)).shape == (4, *shape)
