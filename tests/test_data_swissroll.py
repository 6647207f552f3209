"""Swiss roll: shape, range, seeding, and points on the documented roll."""

import math

import pytest
import torch

from seatbelt.data import swiss_roll

torch.set_num_threads(1)


def _unscaled(d):
    return d.x.double() * d.meta["scale"] + torch.tensor(d.meta["centre"], dtype=torch.float64)


def _roll(t, h):
    return torch.stack([t * torch.cos(t), h, t * torch.sin(t)], 1)


def test_shape_dtype_and_range():
    d = swiss_roll(5000, noise=0.5, seed=0)
    assert d.x.shape == (5000, 3) and d.x.dtype == torch.float32 and d.levels == 0
    assert d.x.abs().max().item() == pytest.approx(1.0)  # tight: the widest axis spans [-1, 1]
    assert d.x.min() >= -1 and d.x.max() <= 1
    assert torch.equal(d.get(slice(None)), d.x)
    assert d.factor_names == ("t", "height") and d.factor_values.shape == (5000, 2)


def test_noiseless_points_lie_on_the_roll_with_their_factors():
    d = swiss_roll(2000, noise=0.0, seed=1)
    t, h = d.factor_values.double().T
    assert t.min() >= 1.5 * math.pi and t.max() <= 4.5 * math.pi
    assert h.min() >= 0 and h.max() <= 21
    torch.testing.assert_close(_unscaled(d), _roll(t, h), rtol=0, atol=1e-4 * d.meta["scale"])


def test_noise_has_the_requested_standard_deviation():
    d = swiss_roll(30_000, noise=0.7, seed=2)
    t, h = d.factor_values.double().T
    residual = _unscaled(d) - _roll(t, h)
    assert residual.mean(0).abs().max() < 0.03
    torch.testing.assert_close(
        residual.std(0), torch.full((3,), 0.7, dtype=torch.float64), rtol=0.03, atol=0
    )


def test_the_map_into_the_cube_is_exact_to_float64():
    """The centre and scale are those of the points computed with Python's math, to 1e-14: torch's
    float64 cos on CPU was now and then off by about 1e-8, and the centre with it."""
    n, seed = 12_000, 0
    g = torch.Generator().manual_seed(seed)
    t = (1.5 * math.pi * (1 + 2 * torch.rand(n, generator=g, dtype=torch.float64))).tolist()
    h = (21 * torch.rand(n, generator=g, dtype=torch.float64)).tolist()
    points = [[v * math.cos(v) for v in t], h, [v * math.sin(v) for v in t]]
    centre = [(min(axis) + max(axis)) / 2 for axis in points]
    scale = max(max(axis) - min(axis) for axis in points) / 2
    for _ in range(4):  # the inaccurate path was taken in about one call in four
        meta = swiss_roll(n=n, seed=seed).meta
        assert meta["centre"] == pytest.approx(centre, rel=1e-14, abs=1e-14)
        assert meta["scale"] == pytest.approx(scale, rel=1e-14)


def test_same_seed_same_points():
    assert torch.equal(swiss_roll(100, 0.1, seed=3).x, swiss_roll(100, 0.1, seed=3).x)
    assert not torch.equal(swiss_roll(100, 0.1, seed=3).x, swiss_roll(100, 0.1, seed=4).x)


@pytest.mark.parametrize(
    "kwargs, words", [({"n": 1}, "at least 2"), ({"n": 10.5}, "integer"), ({"noise": -0.1}, ">= 0")]
)
def test_bad_input_raises(kwargs, words):
    with pytest.raises(ValueError, match=words):
        swiss_roll(**{"n": 100, **kwargs})
