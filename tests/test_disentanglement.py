"""seatbelt.disentanglement: codes of a dataset, MIG of a model, rank correlations over few
units."""

import numpy as np
import pytest
import torch
from torch import nn

from seatbelt.data.base import Data
from seatbelt.disentanglement import model_mig_table, posterior_codes, rank_correlation
from seatbelt.gaussian import DiagGaussian
from seatbelt.models import Encoding


class CopyEncoder(nn.Module):
    """q(z | x) = N(x, std^2 I) on vector data: the code is the input itself."""

    def __init__(self, std: float):
        super().__init__()
        self.logvar = nn.Parameter(torch.tensor(2 * np.log(std), dtype=torch.float32))
        self.seen_training = []

    def encode(self, x, sample=False, generator=None):
        self.seen_training.append(self.training)
        q = DiagGaussian(x, self.logvar.expand_as(x))
        return Encoding([q], [q.mu])


def factor_data(n=3000, seed=0):
    """Two factors (3 and 4 values) written into vector items as [v0 / 2, v1 / 3, noise]: float
    items."""
    g = torch.Generator().manual_seed(seed)
    factors = torch.stack(
        [torch.randint(0, 3, (n,), generator=g), torch.randint(0, 4, (n,), generator=g)], 1
    )
    x = torch.stack([factors[:, 0] / 2, factors[:, 1] / 3, torch.rand(n, generator=g)], 1).float()
    return Data("toy", x, levels=0, factors=factors, factor_names=("a", "b"))


def test_posterior_codes_batches_and_restores_mode():
    data, model = factor_data(50), CopyEncoder(0.1).train()
    mu, logvar = posterior_codes(model, data, n_images=37, batch_size=8)
    assert mu.shape == logvar.shape == (37, 3)
    torch.testing.assert_close(mu, data.x[:37])
    torch.testing.assert_close(logvar, torch.full((37, 3), 2 * float(np.log(0.1))))
    assert not any(model.seen_training) and model.training  # encoded in eval mode, mode restored
    with pytest.raises(ValueError, match="n_images=60: choose 1..50"):
        posterior_codes(model, data, n_images=60)


def test_model_mig_of_a_copying_code_is_near_one():
    """Each factor copied into its own latent, far apart against a tight std: MIG near 1, per
    factor."""
    data = factor_data()
    table = model_mig_table(CopyEncoder(0.01), data, n_samples=3000)
    assert list(table.index) == ["a", "b"]
    assert table.loc["a", "top"] == "z0" and table.loc["b", "top"] == "z1"
    assert (table["gap"] > 0.95).all()
    blurred = model_mig_table(
        CopyEncoder(1.0), data, n_samples=3000
    )  # std beyond the spacing: less
    assert (blurred["gap"] < table["gap"] - 0.3).all()
    with pytest.raises(ValueError, match="no ground-truth factors"):
        model_mig_table(CopyEncoder(0.1), Data("plain", data.x, levels=0))


def test_rank_correlation_known_answers():
    x = np.arange(8.0)
    perfect = rank_correlation("rho", x, x**3)  # monotone: every defined resample gives 1
    assert perfect.estimate == 1.0 and perfect.low == perfect.high == 1.0
    assert not perfect.supported  # far outside the default equivalence band |rho| <= 0.5
    reverse = rank_correlation("rho", x, -np.exp(x))
    assert reverse.estimate == -1.0 and reverse.high == -1.0
    # scipy's Spearman on a fixed small example
    a, b = np.array([1.0, 2, 3, 4, 5]), np.array([2.0, 1, 4, 3, 5])
    assert rank_correlation("rho", a, b).estimate == pytest.approx(0.8)


def test_rank_correlation_independent_and_seeded():
    x = np.arange(-100.0, 101.0)
    y = x**2  # symmetric about 0: Spearman's rho is exactly 0 (tied ranks averaged)
    effect = rank_correlation("rho", x, y, seed=1)
    assert effect.estimate == pytest.approx(0.0, abs=1e-12)
    assert effect.low < 0 < effect.high and effect.high - effect.low < 0.4
    assert effect.supported  # inside |rho| <= 0.5 with 201 units
    assert rank_correlation("rho", x, y, seed=1) == effect


def test_rank_correlation_few_units():
    two = rank_correlation("rho", [0.1, 0.2], [5.0, 3.0])
    assert (
        two.estimate == pytest.approx(-1.0)
        and (two.low, two.high) == (-1.0, 1.0)
        and not two.supported
    )
    four = rank_correlation("rho", [0.1, 0.2, 0.3, 0.4], [1.0, 3.0, 2.0, 4.0])
    assert np.isfinite([four.low, four.high]).all() and four.low <= four.estimate <= four.high
    with pytest.raises(ValueError, match="constant"):
        rank_correlation("rho", [1.0, 1.0, 1.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="NaN"):
        rank_correlation("rho", [1.0, np.nan, 2.0], [1.0, 2.0, 3.0])


def test_a_rank_correlation_within_groups_removes_what_the_groups_differ_by():
    # Simpson's paradox: within each latent size y rises with x, but the larger size has lower x
    # and higher y, so the pooled ranks correlate negatively
    x = np.array([10.0, 11, 12, 13, 0, 1, 2, 3])
    y = np.array([0.0, 1, 2, 3, 10, 11, 12, 13])
    groups = np.repeat([10, 64], 4)
    assert rank_correlation("rho", x, y).estimate < -0.5
    within = rank_correlation("rho", x, y, groups=groups)
    assert within.estimate == pytest.approx(1.0) and "within groups" in within.method
    assert within.low == pytest.approx(1.0)  # every within-group resample is monotone
    with pytest.raises(ValueError, match="one label per unit"):
        rank_correlation("rho", x, y, groups=groups[:3])


def test_units_for_equivalence_is_where_a_null_interval_first_fits():
    from scipy import stats as st

    from seatbelt.disentanglement import units_for_equivalence

    n = units_for_equivalence(0.5)
    half = lambda k: np.tanh(st.norm.ppf(0.975) * np.sqrt(1.06 / (k - 3)))  # noqa: E731
    assert half(n) < 0.5 <= half(n - 1) and n == 17
    assert units_for_equivalence(0.5, groups=2) == n + 1
    assert units_for_equivalence(0.3) > n
    with pytest.raises(ValueError, match="margin"):
        units_for_equivalence(1.5)
