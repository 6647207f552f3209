"""The attack solver's inference copy: the same function as the model, without BatchNorm passes."""

import pytest
import torch
from torch import nn

from seatbelt.attacks import Attack, AttackObjective
from seatbelt.attacks.inference import UnfoldedConv, inference_copy
from seatbelt.models import build_model
from test_models import CONFIGS, _batch


def _with_running_statistics(config):
    """A model whose BatchNorm layers hold non-trivial running statistics and affine parameters."""
    torch.manual_seed(0)
    model = build_model(config)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.weight.uniform_(0.5, 2.0)
                module.bias.uniform_(-0.5, 0.5)
        model.train()
        for seed in range(3):
            model.elbo(_batch(config, n=32, seed=seed))
    return model.eval()


def _batchnorms(model):
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@pytest.mark.parametrize("name", ["vae-conv32", "vae-conv64-rgb", "vae-mlp", "seatbelt-3"])
def test_the_copy_computes_the_models_function_without_batchnorm(name):
    config = CONFIGS[name]
    model = _with_running_statistics(config)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = inference_copy(model)
    assert _batchnorms(model) > 0 and _batchnorms(fast) == 0
    x = _batch(config, n=16, seed=7)
    with torch.no_grad():
        for p, q in zip(model.encode(x).posteriors, fast.encode(x).posteriors):
            torch.testing.assert_close(q.mu, p.mu, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(q.logvar, p.logvar, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(
            fast.elbo(x, sample=False), model.elbo(x, sample=False), rtol=1e-5, atol=1e-3
        )
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), (
        "the original must not change"
    )
    assert not fast.training and not any(p.requires_grad for p in fast.parameters())


def test_an_objective_on_the_copy_has_the_originals_values_and_gradients():
    config = CONFIGS["seatbelt-3"]
    model = _with_running_statistics(config)
    x, x_t = _batch(config, n=6, seed=1), _batch(config, n=6, seed=2)
    objective = AttackObjective(model, Attack("kl"), x, x_t, torch.full((6,), 0.1))
    d = 0.1 * _batch(config, n=6, seed=3)
    value, _, grad = objective.value_and_grad(d)
    fast_value, _, fast_grad = objective.with_model(inference_copy(model)).value_and_grad(d)
    torch.testing.assert_close(fast_value, value, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fast_grad, grad, rtol=1e-3, atol=1e-4)


def _same_values_and_input_gradients(layer, replacement, x):
    """The replacement's output and its gradient with respect to ``x`` are the layer's; returns the
    output."""
    x = x.detach().requires_grad_(True)
    x_replaced = x.detach().clone().requires_grad_(True)
    expected, got = layer(x), replacement(x_replaced)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    weights = torch.randn_like(expected)
    (expected * weights).sum().backward()
    (got * weights).sum().backward()
    torch.testing.assert_close(x_replaced.grad, x.grad, rtol=1e-5, atol=1e-5)
    return got


@pytest.mark.parametrize(
    "layer",
    [
        nn.Conv2d(1, 8, 4, 2, 1),  # the encoder's first layer on greyscale images
        nn.Conv2d(1, 8, 3, stride=1, padding=2, dilation=2),
        nn.Conv2d(1, 8, (3, 5), stride=(2, 1), padding=(0, 1), bias=False),
    ],
)
def test_a_single_channel_convolution_runs_unfolded_with_the_same_values_and_gradients(layer):
    torch.manual_seed(0)
    got = _same_values_and_input_gradients(layer, UnfoldedConv(layer), torch.randn(3, 1, 13, 11))
    assert got.is_contiguous(memory_format=torch.channels_last)


def test_only_single_channel_convolutions_are_unfolded():
    assert UnfoldedConv.applies(nn.Conv2d(1, 4, 3))
    assert not UnfoldedConv.applies(nn.Conv2d(3, 4, 3))
    assert not UnfoldedConv.applies(nn.Conv2d(1, 4, 3, padding="same"))
    assert not UnfoldedConv.applies(nn.ConvTranspose2d(1, 4, 3))
    fast = inference_copy(_with_running_statistics(CONFIGS["vae-conv32"]))
    assert sum(isinstance(m, UnfoldedConv) for m in fast.modules()) == 1
