"""The attack solver's inference copy: the same function as the model, without BatchNorm passes."""

import pytest
import torch
from torch import nn

from seatbelt.attacks import Attack, AttackObjective
from seatbelt.attacks.inference import inference_copy
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
        torch.testing.assert_close(fast.elbo(x, sample=False), model.elbo(x, sample=False), rtol=1e-5, atol=1e-3)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "the original must not change"
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
