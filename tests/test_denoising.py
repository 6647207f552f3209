"""seatbelt.denoising against a linear-Gaussian model whose expected L_a has a closed form."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from seatbelt.denoising import NoiseProtocol, noisy_log_likelihood
from seatbelt.gaussian import DiagGaussian
from seatbelt.models import Encoding, ModelConfig, build_model


class LinearGaussian(nn.Module):
    """q(z | x) = N(W x, s^2 I), p(x | z) = N(V z, sigma^2 I): encode/log_likelihood like a VAE."""

    def __init__(self, w: torch.Tensor, v: torch.Tensor, s: float, sigma: float):
        super().__init__()
        self.w, self.v = nn.Parameter(w), nn.Parameter(v)
        self.s, self.sigma = s, sigma

    def encode(self, x, sample=False, generator=None):
        mu = x @ self.w.T
        q = DiagGaussian(
            mu,
            torch.full_like(mu, 2 * math.log(self.s)) if self.s > 0 else torch.full_like(mu, -1e4),
        )
        return Encoding([q], [q.sample(generator) if sample else mu])

    def log_likelihood(self, x, zs):
        r = (x - zs[0] @ self.v.T) / self.sigma
        return (-0.5 * r**2 - math.log(self.sigma) - 0.5 * math.log(2 * math.pi)).sum(-1)

    def expected(self, x, a):
        """E_eps E_z log p(x | z), z = W(x + a eps) + s u: the mean squared residual is
        ||(I - VW) x||^2 + a^2 ||VW||_F^2 + s^2 ||V||_F^2."""
        p = x.shape[-1]
        vw = self.v @ self.w
        sq = ((x - x @ vw.T) ** 2).sum(-1) + a**2 * (vw**2).sum() + self.s**2 * (self.v**2).sum()
        out = -0.5 * sq / self.sigma**2 - p * math.log(self.sigma) - 0.5 * p * math.log(2 * math.pi)
        return out.detach().double()


def toy(seed=0, p=5, d=3, s=0.3, sigma=0.5):
    g = torch.Generator().manual_seed(seed)
    return LinearGaussian(
        torch.randn(d, p, generator=g) / 2, torch.randn(p, d, generator=g) / 2, s, sigma
    )


def test_mean_matches_closed_form_per_image_and_scale():
    model = toy()
    g = torch.Generator().manual_seed(1)
    images = torch.rand(2, 5, generator=g) * 2 - 1
    reps = 20_000
    data = images.repeat_interleave(reps, 0)  # image 0 then image 1, each many times
    protocol = NoiseProtocol(scales=(0.0, 0.1, 0.5, 1.0), seed=3, batch_size=4096)
    frame = noisy_log_likelihood(model, data, protocol)
    assert list(frame.columns) == ["image", "scale", "log_lik"] and len(frame) == 4 * 2 * reps
    frame["which"] = frame["image"] // reps
    stats = frame.groupby(["scale", "which"])["log_lik"].agg(["mean", "sem"])
    for (a, which), row in stats.iterrows():
        want = float(model.expected(images[which], a))
        assert abs(row["mean"] - want) < 4 * row["sem"], (a, which, row["mean"], want, row["sem"])
    # the two images differ in their clean reconstruction term: a mix-up of rows would show
    gap = float(model.expected(images[0], 0.0) - model.expected(images[1], 0.0))
    assert abs(gap) > 10 * stats["sem"].max()


def test_noise_is_shared_across_scales_and_models():
    """With W = V = I and s = 0, L_a = c - a^2 ||eps||^2 / (2 sigma^2): the same eps at every scale,
    and the same eps for a second model (another sigma)."""
    eye = torch.eye(4)
    x = torch.rand(7, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1
    protocol = NoiseProtocol(scales=(0.0, 0.5, 1.0), seed=11, batch_size=3)
    sq = {}
    for sigma in (0.5, 2.0):
        frame = noisy_log_likelihood(
            LinearGaussian(eye.clone(), eye.clone(), 0.0, sigma), x, protocol
        )
        table = frame.pivot(index="image", columns="scale", values="log_lik")
        for a in (0.5, 1.0):
            sq[sigma, a] = (table[0.0] - table[a]).to_numpy() * 2 * sigma**2 / a**2
    np.testing.assert_allclose(sq[0.5, 0.5], sq[0.5, 1.0], rtol=1e-4)
    np.testing.assert_allclose(sq[0.5, 1.0], sq[2.0, 1.0], rtol=1e-4)
    assert (sq[0.5, 1.0] > 0).all()


@pytest.mark.parametrize("kind", ["vae", "seatbelt"])
def test_zero_noise_is_the_reconstruction_term(kind):
    """a = 0 is log p(x | z), z ~ q(z | x), drawn as the model's own encode would, in eval mode."""
    torch.manual_seed(0)
    layered = kind == "seatbelt"
    config = ModelConfig(
        kind=kind,
        objective="elbo",
        net="mlp",
        data_shape=(6,),
        mlp_hidden=16,
        latent_sizes=(4, 2) if layered else (3,),
        hidden_sizes=(8,) if layered else (),
    )
    model = build_model(config).train()
    x = torch.rand(10, 6) * 2 - 1
    frame = noisy_log_likelihood(model, x, NoiseProtocol(scales=(0.0, 1.0), seed=5, batch_size=64))
    assert model.training  # the mode is restored
    model.eval()
    with torch.no_grad():
        z = model.encode(x, sample=True, generator=torch.Generator().manual_seed(6)).z
        want = model.log_likelihood(x, z).double().numpy()
    got = frame[frame["scale"] == 0.0].sort_values("image")["log_lik"].to_numpy()
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert (frame[frame["scale"] == 1.0]["log_lik"].to_numpy() != got).all()


def test_seeded_and_n_images():
    model, x = toy(), torch.rand(20, 5) * 2 - 1
    a = noisy_log_likelihood(model, x, NoiseProtocol(seed=0, n_images=12, batch_size=5))
    b = noisy_log_likelihood(model, x, NoiseProtocol(seed=0, n_images=12, batch_size=5))
    c = noisy_log_likelihood(model, x, NoiseProtocol(seed=1, n_images=12, batch_size=5))
    assert a.equals(b) and not a.equals(c)
    assert sorted(a["image"].unique()) == list(range(12))


def test_bad_input():
    with pytest.raises(ValueError, match="noise scales must be finite and >= 0"):
        NoiseProtocol(scales=(0.1, -1.0))
    with pytest.raises(ValueError, match="distinct"):
        NoiseProtocol(scales=(0.1, 0.1))
    with pytest.raises(ValueError, match="n_images=30 exceeds the 20 images"):
        noisy_log_likelihood(toy(), torch.zeros(20, 5), NoiseProtocol(n_images=30))
