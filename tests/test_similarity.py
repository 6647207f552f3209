"""MS-SSIM at the scales an image supports, against torchmetrics and a pair with a known value."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchmetrics.functional.image import (
    multiscale_structural_similarity_index_measure,
    structural_similarity_index_measure,
)

from seatbelt.similarity import (
    MS_SSIM_WEIGHTS,
    ms_ssim,
    ms_ssim_scales,
    ms_ssim_weights,
    success_rate,
)


def images(n: int, side: int, channels: int = 1, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(n, channels, side, side, generator=g, dtype=torch.float64) * 2 - 1
    b = (a + 0.3 * torch.randn(a.shape, generator=g, dtype=torch.float64)).clamp(-1, 1)
    return a, b


@pytest.mark.parametrize(("side", "scales"), [(11, 1), (32, 2), (64, 3), (128, 4), (176, 5)])
def test_scales_are_those_whose_coarsest_side_holds_the_window(side, scales):
    assert ms_ssim_scales(side, side) == scales


def test_too_small_an_image_is_refused():
    with pytest.raises(ValueError, match="at least 11 x 11"):
        ms_ssim_scales(8, 8)
    a, b = images(1, 32)
    with pytest.raises(ValueError, match="support 2 MS-SSIM scales"):
        ms_ssim(a, b, scales=3)


@pytest.mark.parametrize("side", [32, 64])
def test_torchmetrics_refuses_one_scale_more_than_we_use(side):
    a, b = ((t + 1) / 2 for t in images(1, side))
    scales = ms_ssim_scales(side, side)
    kwargs = {"data_range": 1.0, "kernel_size": 11, "sigma": 1.5}
    multiscale_structural_similarity_index_measure(a, b, betas=ms_ssim_weights(scales), **kwargs)
    with pytest.raises(ValueError):
        multiscale_structural_similarity_index_measure(
            a, b, betas=ms_ssim_weights(scales + 1), **kwargs
        )


def test_weights_are_the_originals_renormalised():
    assert ms_ssim_weights(5) == MS_SSIM_WEIGHTS
    two = ms_ssim_weights(2)
    assert sum(two) == pytest.approx(1.0)
    assert two[1] / two[0] == pytest.approx(MS_SSIM_WEIGHTS[1] / MS_SSIM_WEIGHTS[0])


def test_two_scales_are_the_packages_contrast_at_full_size_and_ssim_at_half():
    a, b = images(3, 32, channels=3)
    ua, ub = (a + 1) / 2, (b + 1) / 2
    kwargs = {"data_range": 1.0, "kernel_size": 11, "sigma": 1.5, "reduction": "none"}
    _, contrast = structural_similarity_index_measure(
        ua, ub, return_contrast_sensitivity=True, **kwargs
    )
    coarse = structural_similarity_index_measure(F.avg_pool2d(ua, 2), F.avg_pool2d(ub, 2), **kwargs)
    w1, w2 = ms_ssim_weights(2)
    expected = contrast.clamp_min(0) ** w1 * coarse.clamp_min(0) ** w2
    torch.testing.assert_close(ms_ssim(a, b), expected)


def test_five_scales_are_the_packages_default():
    a, b = images(1, 176)
    expected = multiscale_structural_similarity_index_measure(
        (a + 1) / 2, (b + 1) / 2, data_range=1.0, reduction="none"
    )
    torch.testing.assert_close(ms_ssim(a, b), expected)


def test_a_pair_of_flat_images_has_the_luminance_term_alone():
    # no variance: every contrast term is (0 + C2) / (0 + C2) = 1, and the coarsest scale's
    # luminance is (2 m_a m_b + C1) / (m_a^2 + m_b^2 + C1), C1 = (0.01 * 1)^2, on [0, 1]
    a = torch.full((1, 1, 32, 32), -1.0, dtype=torch.float64)  # 0 on [0, 1]
    b = torch.zeros_like(a)  # 0.5 on [0, 1]
    c1 = 0.01**2
    luminance = c1 / (0.5**2 + c1)
    expected = luminance ** ms_ssim_weights(2)[1]
    # torchmetrics holds the exponents in float32: agreement to about 1e-7
    assert float(ms_ssim(a, b)) == pytest.approx(expected, rel=1e-6)
    assert float(ms_ssim(a, a)) == pytest.approx(1.0)


def test_success_rate_counts_strictly_past_the_threshold():
    rate = success_rate(torch.tensor([0.1, 0.5, 0.9]), 0.5, below=True)
    assert (rate.successes, rate.n, rate.rate) == (1, 3, pytest.approx(1 / 3))
    assert str(rate) == "33% of 3 inputs (MS-SSIM < 0.5)"
    above = success_rate(np.array([1.0, 3.0]), 2.0, below=False, name="KL")
    assert above.successes == 1 and above.rule == "KL > 2"
    with pytest.raises(ValueError, match="finite"):
        success_rate(np.array([np.nan, 1.0]), 0.5, below=True)
