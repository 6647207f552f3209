"""λ-free robustness measures and a battery's controls, on problems whose answer is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from seatbelt.attacks import (
    AttackProtocol,
    BatchedLBFGSB,
    auddc,
    controls,
    minimal_distortion,
    run_battery,
)
from seatbelt.attacks.measures import envelope_area, lower_envelope
from test_attacks_toymodels import LinearGaussian

BASE = {
    "model": "m",
    "attack": "kl",
    "layers": "all",
    "pair": 0,
    "dist_orig_target": 1.0,
    "dist_target_recon_target": 0.0,
    "dist_orig_recon_target": 1.0,
}


def path(points) -> pd.DataFrame:
    return pd.DataFrame([dict(BASE, d_norm=x, dist_adv_recon_target=y) for x, y in points])


def test_the_envelope_of_a_non_monotone_path_and_its_area():
    # a λ path that goes back up (0.6 at 0.5 after 0.4 at 0.3) and past the budget (x = 1.2)
    points = [(0.3, 0.4), (0.5, 0.6), (0.8, 0.1), (1.2, 0.0)]
    u, e = lower_envelope(*map(np.array, zip(*points)))
    assert u.tolist() == [0.0, 0.3, 0.8, 1.2] and e.tolist() == [1.0, 0.4, 0.1, 0.0]
    # 1 x 0.3 + 0.4 x 0.5 + 0.1 x 0.2
    assert auddc(path(points)).loc[0, "auddc"] == pytest.approx(0.52)
    assert envelope_area(np.array([0.5]), np.array([0.0])) == pytest.approx(0.5)


def test_minimal_distortion_and_its_censoring():
    reached = minimal_distortion(path([(0.3, 0.4), (0.5, 0.05), (0.8, 0.01)]), eps=0.1)
    assert reached.loc[0, "distortion"] == pytest.approx(0.5) and bool(reached.loc[0, "reached"])
    never = minimal_distortion(path([(0.3, 0.4), (0.7, 0.2)]), eps=0.1)
    assert never.loc[0, "distortion"] == pytest.approx(0.7) and not bool(never.loc[0, "reached"])
    with pytest.raises(ValueError, match="eps in \\[0, 1\\)"):
        minimal_distortion(path([(0.3, 0.4)]), eps=1.5)


def test_a_degenerate_normaliser_gives_nan_and_names_the_pair():
    flat = path([(0.3, 0.4)]).assign(dist_orig_recon_target=0.0)
    with pytest.warns(UserWarning, match="pair 0: recon.x. is no farther"):
        area = auddc(flat)
    assert np.isnan(area.loc[0, "auddc"])


def linear_gaussian_paths(width: float, lambdas: np.ndarray, seed: int = 0) -> pd.DataFrame:
    """Exact latent KL attacks (no box) on a linear encoder mu = A x with posterior std width * s.

    KL(q(z|x+d) || q(z|x_t)) = ||S^-1 A (x + d - x_t)||^2 / 2 with S = width * diag(s), so the
    optimum is d = -(A'S^-2 A + 2 lambda I)^-1 A'S^-2 A (x - x_t). Decoder recon = B A x.
    """
    g = np.random.default_rng(seed)
    n, k = 64, 6
    A, B = g.normal(size=(k, n)) / np.sqrt(n), g.normal(size=(n, k)) / np.sqrt(k)
    s = width * (0.2 + g.random(k))
    M = A.T @ np.diag(s**-2) @ A
    rows = []
    for pair in range(3):
        x, x_t = g.normal(size=n), g.normal(size=n)
        kl0 = 0.5 * np.sum(((A @ (x - x_t)) / s) ** 2)
        for lam in lambdas:
            d = -np.linalg.solve(M + 2 * lam * np.eye(n), M @ (x - x_t))
            kl = 0.5 * np.sum(((A @ (x + d - x_t)) / s) ** 2)
            rows.append(
                dict(
                    BASE,
                    pair=pair,
                    **{"lambda": lam},
                    d_norm=np.linalg.norm(d),
                    delta=kl + lam * d @ d,
                    divergence0=kl0,
                    dist_orig_target=np.linalg.norm(x - x_t),
                    dist_adv_recon_target=np.linalg.norm(B @ A @ (x + d) - x_t),
                    dist_target_recon_target=np.linalg.norm(B @ A @ x_t - x_t),
                    dist_orig_recon_target=np.linalg.norm(B @ A @ x - x_t),
                )
            )
    return pd.DataFrame(rows)


def test_widening_the_posteriors_moves_delta_over_kl0_but_not_the_envelope():
    lambdas = np.concatenate([[0.0], 2.0 ** np.arange(-20, 21)])
    narrow, wide = linear_gaussian_paths(1.0, lambdas), linear_gaussian_paths(2.0, lambdas)

    def ratio(f):
        return (f["delta"] / f["divergence0"]).to_numpy()

    at = (narrow["lambda"] > 2.0**-8) & (narrow["lambda"] < 2.0**8)
    assert np.median(ratio(wide)[at] / ratio(narrow)[at]) > 1.5  # widening alone raises Δ/KL0
    np.testing.assert_allclose(auddc(wide)["auddc"], auddc(narrow)["auddc"], rtol=1e-4)
    for eps in (0.05, 0.2, 0.5):
        np.testing.assert_allclose(
            minimal_distortion(wide, eps)["distortion"],
            minimal_distortion(narrow, eps)["distortion"],
            rtol=1e-6,
        )


def test_the_battery_never_ends_above_copying_the_target_and_reports_when_its_solver_did():
    torch.manual_seed(0)
    model = LinearGaussian(shape=(1, 4, 4), latent_sizes=(3,), logvar=-4.0)
    g = torch.Generator().manual_seed(1)
    sources, targets = (
        torch.rand(3, 1, 4, 4, generator=g) * 2 - 1,
        torch.rand(3, 1, 4, 4, generator=g) * 2 - 1,
    )
    protocol = AttackProtocol(
        n_pairs=3, n_lambdas=3, log2_lambda_range=(-6.0, 0.0), cap_check=4, reference_check=3
    )
    # one iteration from d ~ 0 leaves the small-lambda problems far above the copy's cost
    results = run_battery(
        model, (sources, targets), protocol, solver=BatchedLBFGSB(max_iter=1, max_evals=3)
    )
    frame = results.frame
    bound = frame["lambda"] * frame["dist_orig_target"] ** 2
    assert (frame["delta"] <= bound + 1e-4 * frame["divergence0"] + 1e-5).all()
    assert (frame["kept"] == "copy").any() and (frame["delta_solver"] > frame["delta"]).any()
    copied = frame["kept"] == "copy"
    np.testing.assert_allclose(frame.loc[copied, "dist_adv_target"], 0.0, atol=1e-5)
    table = controls(frame)
    assert table.loc[0, "above_copy_bound"] == pytest.approx(copied.mean())
    assert table.loc[0, "cap10_trials"] == 4 and frame["delta_cap10"].notna().sum() == 4
    # ten times the cap can only help: the re-solved Δ is no larger than the capped one
    checked = frame.dropna(subset=["delta_cap10"])
    assert (checked["delta_cap10"] <= checked["delta"] + 1e-6).all()
    # the reference re-solves 3 other problems
    referenced = frame.dropna(subset=["delta_reference"])
    assert len(referenced) == 3 and not set(referenced.index) & set(checked.index)
    assert table.loc[0, "reference_trials"] == 3
    assert table.loc[0, "reference_strict"] == pytest.approx(
        (referenced["delta"] <= 1.01 * referenced["delta_reference"]).mean()
    )


def test_the_lambda_free_context_is_the_same_for_a_widened_model_and_favours_a_robust_one():
    from seatbelt import claims

    lambdas = np.concatenate([[0.0], 2.0 ** np.arange(-20, 21)])
    narrow, wide = linear_gaussian_paths(1.0, lambdas), linear_gaussian_paths(2.0, lambdas)
    area, reach = claims.lambda_free_context(wide, narrow, "wide over narrow", eps=0.2)
    assert area.estimate == pytest.approx(0.0, abs=1e-4) and reach.estimate == pytest.approx(
        1.0, rel=1e-6
    )
    # a model whose reconstructions move half as far for the same distortion is more robust
    sturdier = narrow.assign(
        dist_adv_recon_target=lambda f: (
            f["dist_orig_recon_target"]
            - 0.5 * (f["dist_orig_recon_target"] - f["dist_adv_recon_target"])
        )
    )
    area, _ = claims.lambda_free_context(sturdier, narrow, "sturdier", eps=0.2)
    assert area.estimate > 0.05 and area.supported


def test_a_widened_model_attacked_at_lambda_is_the_model_attacked_at_lambda_c_squared():
    from seatbelt.attacks import Attack, AttackObjective
    from seatbelt.attacks.measures import Widened

    model = LinearGaussian(shape=(1, 4, 4), latent_sizes=(3,)).double().eval()  # σ independent of x
    g = torch.Generator().manual_seed(2)
    x, x_t = (
        torch.rand(4, 1, 4, 4, generator=g, dtype=torch.float64),
        torch.rand(4, 1, 4, 4, generator=g, dtype=torch.float64),
    )
    d = 0.1 * torch.randn(4, 1, 4, 4, generator=g, dtype=torch.float64)
    lam, c = torch.tensor([0.0, 0.1, 1.0, 10.0], dtype=torch.float64), 3.0
    wide = AttackObjective(Widened(model, c), Attack("kl"), x, x_t, lam)(d)[0]
    plain = AttackObjective(model, Attack("kl"), x, x_t, lam * c**2)(d)[0]
    torch.testing.assert_close(wide, plain / c**2)
    with pytest.raises(ValueError, match="one-layer"):
        Widened(LinearGaussian(latent_sizes=(3, 2)), 2.0)
