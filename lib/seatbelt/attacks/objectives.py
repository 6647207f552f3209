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

from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import Tensor

from ..gaussian import kl, w2

AttackKind = Literal["kl", "w2", "output", "recon"]
OutputKind = Literal["output", "recon"]  # attacks on what the model outputs, through every layer
LayerName = Literal["all", "bottom", "top"]

ATTACK_KINDS: tuple[AttackKind, ...] = get_args(AttackKind)
OUTPUT_KINDS: tuple[OutputKind, ...] = get_args(OutputKind)
LAYER_NAMES: tuple[LayerName, ...] = get_args(LayerName)
_DIVERGENCES = {"kl": kl, "w2": w2}


@dataclass(frozen=True)
class Attack:
    """Which objective, on which latent layers.

    kind:   "kl" or "w2" (latent attacks, Eqs 1 and 10), "output" (Eq 2) or "recon" (L2 between
            the reconstruction and the target, Gondim-Ribeiro et al. 2018).
    layers: "all" (the paper's default, Eq 10), "bottom" (z_1), "top" (z_L), or layer numbers
            as the paper writes them, 1-based: (1,) is z_1, (1, 3) attacks z_1 and z_3.
            The output attack uses the whole model and takes "all" only.
    """

    kind: AttackKind = "kl"
    layers: LayerName | tuple[int, ...] = "all"

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
    needed = ("encode", "n_layers") + {"output": ("elbo",), "recon": ("decode",)}.get(
        attack.kind, ()
    )
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

    ``sources`` and ``targets`` are (P, *item_shape) in [-1, 1]; ``lambdas`` is (P,); ``groups``
    (P,), optional, labels problems that share their source and target (one lambda path each).
    The target posteriors are computed once. Every method takes an optional index tensor ``idx``
    selecting the problems that ``d`` holds, so solvers can evaluate any subset of the stack.
    """

    def __init__(
        self,
        model,
        attack: Attack,
        sources: Tensor,
        targets: Tensor,
        lambdas: Tensor,
        groups: Tensor | None = None,
    ):
        check_model(model, attack)
        if sources.shape != targets.shape:
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
        self.lower = -1.0 - sources
        self.upper = 1.0 - sources
        if attack.kind not in OUTPUT_KINDS:
            with torch.no_grad():
                posteriors = model.encode(targets, sample=False).posteriors
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
        return AttackObjective(
            self.model, self.attack, self.sources[idx], self.targets[idx], self.lambdas[idx], groups
        )

    def _take(self, t: Tensor, idx: Tensor | None) -> Tensor:
        return t if idx is None else t[idx]

    def divergence(self, d: Tensor, idx: Tensor | None = None) -> Tensor:
        """The attack term without the distortion penalty, (P,), differentiable in ``d``."""
        x = self._take(self.sources, idx) + d
        if self.attack.kind == "output":
            return -self.model.elbo(x, target=self._take(self.targets, idx), sample=False)
        if self.attack.kind == "recon":
            recon = self.model.decode(self.model.encode(x, sample=False).z)
            return (recon - self._take(self.targets, idx)).flatten(1).pow(2).sum(-1)
        posteriors = self.model.encode(x, sample=False).posteriors
        r = _DIVERGENCES[self.attack.kind]
        total = torch.zeros(len(d), dtype=d.dtype, device=d.device)
        for i, target in zip(self.layers, self.target_posteriors):
            q, t = posteriors[i], target[idx] if idx is not None else target
            total = total + r(q.mu, q.logvar, t.mu, t.logvar)
        return total

    def __call__(self, d: Tensor, idx: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(Delta, divergence), each (P,)."""
        div = self.divergence(d, idx)
        return div + self._take(self.lambdas, idx) * d.flatten(1).pow(2).sum(-1), div

    def value_and_grad(self, d: Tensor, idx: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """(Delta, divergence, dDelta/dd), detached; one forward and one backward pass."""
        with torch.enable_grad():
            d = d.detach().requires_grad_(True)
            delta, div = self(d, idx)
            (grad,) = torch.autograd.grad(delta.sum(), d)
        return delta.detach(), div.detach(), grad
