"""The beta-TCVAE grid and the heart rotation pair of the tcvae_attacks chapter (Figs 3, 4)."""

import pytest
import torch

from seatbelt import chapters
from seatbelt.data import Data
from seatbelt.zoo import Point, recipe


def _sprites(rows):
    """A Data set of blank images with the given (shape, scale, orientation, posX, posY) factors."""
    factors = torch.tensor(rows, dtype=torch.int64)
    return Data(
        "dsprites", torch.zeros(len(rows), 1, 4, 4, dtype=torch.uint8), levels=2, factors=factors
    )


def test_the_grid_is_every_beta_at_every_latent_size_and_beta_one_is_the_vae():
    grid = chapters.tcvae_grid([1, 4], [8, 16], seed=3)
    assert [(p.beta, p.latent, p.seed) for p in grid] == [
        (1.0, 8, 3),
        (4.0, 8, 3),
        (1.0, 16, 3),
        (4.0, 16, 3),
    ]
    vae = Point("vae", "dsprites", 1.0, 8, seed=3)
    assert grid[0].resolve(recipe("smoke", "dsprites")) == vae.resolve(recipe("smoke", "dsprites"))
    assert chapters.tcvae_grid([2], [8], steps=50)[0].steps == 50
    with pytest.raises(ValueError, match="betas >= 1"):
        chapters.tcvae_grid([0.5, 2], [8])


def test_the_heart_pair_keeps_scale_and_position_and_turns_closest_to_a_quarter():
    # orientation step 2 pi / 39: 10 steps = 92.3 degrees (error 2.3), 9 steps = 83.1 (error 6.9)
    rows = [
        (0, 5, 0, 3, 3),
        (0, 5, 10, 3, 3),  # squares: not hearts
        (2, 5, 0, 4, 4),
        (2, 5, 10, 4, 5),  # hearts at different positions
        (2, 5, 0, 7, 7),
        (2, 5, 9, 7, 7),  # a heart turned 9 steps
        (2, 2, 20, 1, 1),
        (2, 2, 30, 1, 1),  # a small heart turned 10 steps
        (2, 4, 38, 2, 2),
        (2, 4, 9, 2, 2),  # a larger one turned 10 steps the other way, across 0
    ]
    assert chapters.heart_rotation_pair(_sprites(rows)) == (8, 9)
    assert chapters.heart_rotation_pair(_sprites(rows[:8])) == (6, 7)
    assert chapters.heart_rotation_pair(_sprites(rows[:6])) == (4, 5)
    with pytest.raises(ValueError, match="no two hearts"):
        chapters.heart_rotation_pair(_sprites(rows[:4]))


def test_the_chapter_needs_beta_one_a_larger_beta_and_a_training_study_above_one():
    chapters.validate("tcvae_attacks", betas=[1.0, 6.0], steps_beta=6.0)
    for betas, steps_beta in (([2.0, 6.0], 6.0), ([1.0], 6.0), ([1.0, 6.0], 1.0)):
        with pytest.raises(ValueError, match="betas needs 1 and a larger value"):
            chapters.validate("tcvae_attacks", betas=betas, steps_beta=steps_beta)
