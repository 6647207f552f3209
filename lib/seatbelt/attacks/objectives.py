"""Attack objectives (Eqs 1, 2 and 10), batched over a stack of independent problems.

A problem is a source x, a target x_t and a weight lambda >= 0; the attacker looks for a
distortion d with x + d inside the data range [-1, 1]. Objectives:

* latent attack (Eq 1, and Eq 10 for several layers): with r = KL or the squared W2 of
  :mod:`seatbelt.gaussian`,
      Delta(d) = sum_{i in layers} r(q(z_i | x + d), q(z_i | x_t)) + lambda ||d||^2,
  r(a, b) = KL(a || b), the attacked posterior first as in Eq 1.
* output attack (Eq 2, Kos et al. 2018): the negative beta = 1 ELBO of the target under the
  posterior of the distorted input,
      Delta(d) = -(E_q(z|x+d)[log p(x_t | z)] - KL(q(z | x + d) || p(z))) + lambda ||d||^2.
* reconstruction attack ("recon", the output attack of Gondim-Ribeiro, Tabacof and Valle 2018):
  the squared L2 distance between the reconstruction of x + d and the target,
      Delta(d) = ||recon(x + d) - x_t||^2 + lambda ||d||^2,
  with recon(.) the likelihood mean at the posterior means.

Untargeted attacks (Kuzina, Welling and Tomczak 2021, 2022) have no target: they push the model
away from what it does with the undistorted input, and are only meaningful within a budget
(below), since a larger distortion always pushes further:

* "untargeted-kl": maximise the symmetric KL (Jeffreys divergence) between the attacked and the
  undistorted posteriors, summed over the attacked layers,
      SKL(d) = sum_{i in layers} KL(q(z_i | x + d) || q(z_i | x)) + KL(q(z_i | x) || q(z_i | x + d))
* "untargeted-recon": maximise ||recon(x + d) - recon(x)||^2.

Solvers minimise, so these evaluate Delta(d) = -divergence(d) + lambda ||d||^2; the reported
divergence stays the positive quantity.

**Budgets.** ``Attack(kind, layers, norm="linf" | "l2", eps=eps)`` replaces the penalty by a
constraint, ||d|| <= eps (the threat model of the post-2021 literature); the problem's lambda is
then 0. eps is in the data's units: images here live in [-1, 1], so a peer's eps = 0.1 on [0, 1]
images is eps = 0.2 here. The feasible set and its projection are :mod:`.constraints`.

All are evaluated deterministically: every layer of the chain is conditioned on the means of
the layer below (``encode(sample=False)``), and the output attack's expectation is taken at the
posterior means (``model.elbo(x + d, target=x_t, sample=False)``). A sampled objective would
make every evaluation noisy and break the line searches of quasi-Newton solvers; the sampled
negative likelihood is reported beside the attained objective instead.

Problems are independent (models are in eval mode, so BatchNorm does not couple items): the
gradient of the sum of the stack's objectives is every problem's own gradient, which is what
lets one forward and backward pass serve a whole battery.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import Tensor

from ..gaussian import kl, w2
from .constraints import NORMS, Norm, budget_box, project

AttackKind = Literal["kl", "w2", "output", "recon", "untargeted-kl", "untargeted-recon"]
# attacks on what the model outputs, through every layer
OutputKind = Literal["output", "recon", "untargeted-recon"]
UntargetedKind = Literal["untargeted-kl", "untargeted-recon"]
LayerName = Literal["all", "bottom", "top"]

ATTACK_KINDS: tuple[AttackKind, ...] = get_args(AttackKind)
OUTPUT_KINDS: tuple[OutputKind, ...] = get_args(OutputKind)
UNTARGETED_KINDS: tuple[UntargetedKind, ...] = get_args(UntargetedKind)
LAYER_NAMES: tuple[LayerName, ...] = get_args(LayerName)


def _symmetric_kl(mu1: Tensor, logvar1: Tensor, mu2: Tensor, logvar2: Tensor) -> Tensor:
    return kl(mu1, logvar1, mu2, logvar2) + kl(mu2, logvar2, mu1, logvar1)


_DIVERGENCES = {"kl": kl, "w2": w2, "untargeted-kl": _symmetric_kl}


@dataclass(frozen=True)
class Attack:
    """Which objective, on which latent layers, under which budget.

    kind:   "kl" or "w2" (latent attacks, Eqs 1 and 10), "output" (Eq 2) or "recon" (L2 between
            the reconstruction and the target, Gondim-Ribeiro et al. 2018); untargeted,
            "untargeted-kl" (symmetric KL from the undistorted posterior) or "untargeted-recon"
            (L2 from the undistorted reconstruction), which need a budget (module docstring).
    layers: "all" (the paper's default, Eq 10), "bottom" (z_1), "top" (z_L), or layer numbers
            as the paper writes them, 1-based: (1,) is z_1, (1, 3) attacks z_1 and z_3.
            The output attacks use the whole model and take "all" only.
    norm, eps: a fixed budget ||d||_norm <= eps, norm "linf" or "l2", eps in the data's units
            ([-1, 1] here: a peer's eps on [0, 1] images is 2 eps here); both None (the default)
            is the paper's penalised attack.
    """

    kind: AttackKind = "kl"
    layers: LayerName | tuple[int, ...] = "all"
    norm: Norm | None = None
    eps: float | None = None

    def __post_init__(self):
        if self.kind not in ATTACK_KINDS:
            raise ValueError(f"unknown attack {self.kind!r}; choose one of {ATTACK_KINDS}.")
        if isinstance(self.layers, str):
            if self.layers not in LAYER_NAMES:
                raise ValueError(
                    f"unknown layer selection {self.layers!r}; use one of {LAYER_NAMES} or a tuple "
                    "of 1-based layer numbers such as (1, 3)."
                )
        else:
            numbers = tuple(sorted({int(i) for i in self.layers}))
            if not numbers or numbers[0] < 1:
                raise ValueError(
                    "layer numbers are 1-based like the paper's z_1..z_L and must not be empty; "
                    f"got {self.layers}."
                )
            object.__setattr__(self, "layers", numbers)
        if self.kind in OUTPUT_KINDS and self.layers != "all":
            raise ValueError(
                f"the {self.kind} attack uses every layer; got layers={self.layers!r}, use 'all'."
            )
        self._check_budget()

    def _check_budget(self) -> None:
        if self.norm is not None and self.norm not in NORMS:
            raise ValueError(f"unknown norm {self.norm!r}; use one of {NORMS}, e.g. norm='linf'.")
        if (self.norm is None) != (self.eps is None):
            given, missing = ("eps", "norm") if self.norm is None else ("norm", "eps")
            raise ValueError(
                f"a budget needs both norm and eps; got {given} without {missing}: pass "
                "norm='linf' or 'l2' with eps=..., or neither for the penalised attack."
            )
        if self.eps is not None:
            if isinstance(self.eps, bool) or not isinstance(self.eps, numbers.Real):
                raise TypeError(f"eps must be a number, got {type(self.eps).__name__}.")
            eps = float(self.eps)
            if not math.isfinite(eps) or eps < 0:
                raise ValueError(
                    f"eps must be finite and >= 0, got {self.eps!r}: it is the radius of the "
                    "budget ball, in the data's units ([-1, 1] here)."
                )
            object.__setattr__(self, "eps", eps)
        if self.untargeted and self.eps is None:
            raise ValueError(
                f"the {self.kind} attack maximises a divergence, which only a budget bounds: give "
                "norm='linf' or 'l2' and eps=..."
            )

    @property
    def untargeted(self) -> bool:
        return self.kind in UNTARGETED_KINDS

    @property
    def budget_label(self) -> str:
        """The budget as text, with the units an eps is in (none for the penalised attack)."""
        if self.eps is None:
            return "penalised"
        symbol = {"linf": "L∞", "l2": "L2"}[self.norm]
        return f"{symbol} ε = {self.eps:g} (images in [-1, 1]; {self.eps / 2:g} on [0, 1])"

    @classmethod
    def coerce(cls, attack: "Attack | AttackKind") -> "Attack":
        """An :class:`Attack`, or a kind name meaning that attack on all layers."""
        return attack if isinstance(attack, Attack) else cls(attack)

    @property
    def layers_label(self) -> str:
        if isinstance(self.layers, str):
            return self.layers
        return "+".join(f"z{i}" for i in self.layers)

    def layer_indices(self, n_layers: int) -> tuple[int, ...]:
        """0-based indices into a model's posteriors (bottom first) of the attacked layers."""
        if self.layers == "all":
            return tuple(range(n_layers))
        if self.layers == "bottom":
            return (0,)
        if self.layers == "top":
            return (n_layers - 1,)
        if self.layers[-1] > n_layers:
            raise ValueError(
                f"attack on layers {self.layers_label} needs a model with at least "
                f"{self.layers[-1]} latent layers; this model has {n_layers}."
            )
        return tuple(i - 1 for i in self.layers)


def check_model(model, attack: Attack) -> None:
    """Raise before any optimisation if ``model`` cannot serve ``attack``."""
    needed = ("encode", "n_layers") + {
        "output": ("elbo",),
        "recon": ("decode",),
        "untargeted-recon": ("decode",),
    }.get(attack.kind, ())
    missing = [name for name in needed if not hasattr(model, name)]
    if missing:
        raise TypeError(
            f"the {attack.kind} attack needs a model with {needed} (the seatbelt.models "
            f"interface); {type(model).__name__} lacks {missing}."
        )
    if attack.kind not in OUTPUT_KINDS:
        attack.layer_indices(model.n_layers)


class AttackObjective:
    """Delta(d) of one attack for a stack of P problems (source, target, lambda).

    ``sources`` and ``targets`` are (P, *item_shape) in [-1, 1] (``targets`` None for an
    untargeted attack); ``lambdas`` is (P,); ``groups`` (P,), optional, labels problems that share
    their source and target (one lambda path each). The posteriors (or reconstructions) the
    divergence is measured against, the targets' or for an untargeted attack the sources' own, are
    computed once. Every method takes an optional index tensor ``idx`` selecting the problems that
    ``d`` holds, so solvers can evaluate any subset of the stack.

    Feasible set: ``lower``/``upper`` (P, *item_shape), the data range intersected with an L∞
    budget, and ``radius``, the L2 budget's eps or None; :meth:`project` maps onto it.
    """

    def __init__(
        self,
        model,
        attack: Attack,
        sources: Tensor,
        targets: Tensor | None,
        lambdas: Tensor,
        groups: Tensor | None = None,
    ):
        check_model(model, attack)
        if attack.untargeted and targets is not None:
            raise ValueError(
                f"the {attack.kind} attack is untargeted (it pushes away from the source's own "
                "encoding) and takes no target: pass targets=None, or use a targeted kind such as "
                "'kl'."
            )
        if not attack.untargeted and targets is None:
            raise ValueError(f"the {attack.kind} attack needs targets, one per source.")
        if targets is not None and sources.shape != targets.shape:
            raise ValueError(
                f"sources {tuple(sources.shape)} and targets {tuple(targets.shape)} must have the "
                "same shape."
            )
        if lambdas.shape != sources.shape[:1]:
            raise ValueError(
                f"need one lambda per problem: {len(sources)} problems, lambdas of shape "
                f"{tuple(lambdas.shape)}."
            )
        if bool((lambdas < 0).any()) or not bool(torch.isfinite(lambdas).all()):
            raise ValueError(f"lambda must be finite and >= 0; got min {float(lambdas.min())}.")
        self.model = model
        self.attack = attack
        self.sources = sources
        self.targets = targets
        self.lambdas = lambdas.to(sources)
        self.groups = groups
        self.layers = () if attack.kind in OUTPUT_KINDS else attack.layer_indices(model.n_layers)
        self.lower, self.upper = budget_box(-1.0 - sources, 1.0 - sources, attack.norm, attack.eps)
        self.radius = attack.eps if attack.norm == "l2" else None
        # what the divergence is measured against: the target, or the source itself (untargeted)
        reference = sources if attack.untargeted else targets
        with torch.no_grad():
            if attack.kind == "untargeted-recon":
                self.reference_recons = model.decode(model.encode(reference, sample=False).z)
            elif attack.kind not in OUTPUT_KINDS:
                posteriors = model.encode(reference, sample=False).posteriors
                self.target_posteriors = [posteriors[i].detach() for i in self.layers]

    def __len__(self) -> int:
        return len(self.sources)

    def with_model(self, model) -> "AttackObjective":
        """The same problems evaluated by another model (e.g. :func:`.inference.inference_copy`)."""
        return AttackObjective(
            model, self.attack, self.sources, self.targets, self.lambdas, self.groups
        )

    def subset(self, idx: Tensor) -> "AttackObjective":
        """The problems ``idx`` as a stack of their own (e.g. to re-solve a sample of them)."""
        groups = self.groups[idx] if self.groups is not None else None
        targets = self.targets[idx] if self.targets is not None else None
        return AttackObjective(
            self.model, self.attack, self.sources[idx], targets, self.lambdas[idx], groups
        )

    def _take(self, t: Tensor, idx: Tensor | None) -> Tensor:
        return t if idx is None else t[idx]

    def project(self, d: Tensor, idx: Tensor | None = None) -> Tensor:
        """``d`` (of the problems ``idx``) projected onto each problem's feasible set."""
        lower, upper = self._take(self.lower, idx), self._take(self.upper, idx)
        return project(d.flatten(1), lower.flatten(1), upper.flatten(1), self.radius).view_as(d)

    def divergence(self, d: Tensor, idx: Tensor | None = None) -> Tensor:
        """The attack term without the distortion penalty, (P,), differentiable in ``d``."""
        x = self._take(self.sources, idx) + d
        if self.attack.kind == "output":
            return -self.model.elbo(x, target=self._take(self.targets, idx), sample=False)
        if self.attack.kind in ("recon", "untargeted-recon"):
            recon = self.model.decode(self.model.encode(x, sample=False).z)
            reference = self.targets if self.attack.kind == "recon" else self.reference_recons
            return (recon - self._take(reference, idx)).flatten(1).pow(2).sum(-1)
        posteriors = self.model.encode(x, sample=False).posteriors
        r = _DIVERGENCES[self.attack.kind]
        total = torch.zeros(len(d), dtype=d.dtype, device=d.device)
        for i, target in zip(self.layers, self.target_posteriors):
            q, t = posteriors[i], target[idx] if idx is not None else target
            total = total + r(q.mu, q.logvar, t.mu, t.logvar)
        return total

    def __call__(self, d: Tensor, idx: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(Delta, divergence), each (P,); an untargeted attack minimises minus its divergence."""
        div = self.divergence(d, idx)
        attained = -div if self.attack.untargeted else div
        return attained + self._take(self.lambdas, idx) * d.flatten(1).pow(2).sum(-1), div

    def value_and_grad(self, d: Tensor, idx: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """(Delta, divergence, dDelta/dd), detached; one forward and one backward pass."""
        with torch.enable_grad():
            d = d.detach().requires_grad_(True)
            delta, div = self(d, idx)
            (grad,) = torch.autograd.grad(delta.sum(), d)
        return delta.detach(), div.detach(), grad
