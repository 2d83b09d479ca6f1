"""Semi-amortized training (SA-VAE; Kim, Wiseman, Miller, Sontag & Rush 2018, arXiv 1802.02550):
the encoder's q refined by K gradient steps on each image's own ELBO inside the training loop,
so the decoder learns against refined posteriors and the encoder's gradient flows through the
steps. `sweep evaluate` refines any encoder's q after training; this family trains with it.
"""

from __future__ import annotations

import torch

from ..terms import z_terms
from .amortized import Amortized
from .declared import SemiAmortizedDeclared
from .q import where


class SemiAmortized(SemiAmortizedDeclared, Amortized):
    """q_K(z_n): the encoder's q(z_n) after K steps of gradient ascent on image n's own ELBO."""

    refines = True

    @classmethod
    def from_config(cls, cfg, n_data: int, data_dim: int) -> SemiAmortized:
        family = cls(data_dim, cfg.width, cfg.latent_dim, cfg.slope)
        opts = cfg.family_options
        family.steps, family.step_size = opts["steps"], opts["step_size"]
        family.max_grad_norm = opts["max_grad_norm"]
        family.refines = family.steps > 0  # K = 0: no refinement draws, the amortized family exactly
        return family

    def _clip(self, g: torch.Tensor) -> torch.Tensor:
        """Per image (row), the factor that brings its gradient's norm down to max_grad_norm, or 1."""
        return (self.max_grad_norm / g.norm(dim=-1, keepdim=True)).clamp(max=1.0).detach()

    def refine(self, q, x, decoder, thetas, eps, sigma_x: float):
        """K steps on each image's ELBO with these draws of theta (S, P) and z's noise eps (S, B, d)
        held fixed: a deterministic objective, so each row keeping its best step makes the refined
        ELBO, under eps, never below the encoder's. The caller scores the result on other draws
        (``Noise.refine``): under its own eps the refined q is flattered. Where gradients are on
        (training), the encoder's flow through the steps (second order, as Kim et al.); elsewhere
        only q is refined."""
        if self.steps == 0:
            return q
        through = torch.is_grad_enabled() and q.mean.requires_grad
        with torch.enable_grad():
            current = q if through else type(q).from_local(
                **{k: v.detach().requires_grad_(True) for k, v in q.local().items()})
            best, best_elbo = current, None
            for step in range(self.steps + 1):
                loglik, kl = z_terms(decoder, thetas, x, current, eps, sigma_x)
                elbo = loglik - kl  # (B,)
                if best_elbo is None:
                    best, best_elbo = current, elbo
                else:
                    better = elbo > best_elbo
                    best, best_elbo = where(better, current, best), torch.where(better, elbo, best_elbo)
                if step == self.steps:
                    break
                params = current.local()
                grads = torch.autograd.grad(elbo.sum(), list(params.values()), create_graph=through)
                current = type(q).from_local(**{
                    k: p + self.step_size * g * self._clip(g)
                    for (k, p), g in zip(params.items(), grads, strict=True)
                })
        return best if through else type(q).from_local(**{k: v.detach() for k, v in best.local().items()})
