"""A normalizing-flow q: the encoder's Gaussian pushed through affine coupling layers conditioned on x.

Cremer, Li & Duvenaud (2018) ask their question, "does a more expressive q shrink the
approximation gap while the amortization gap stays?", of a flow q. This family is RealNVP-style
affine coupling (Dinh, Sohl-Dickstein & Bengio 2017) rather than an inverse autoregressive flow:
both directions of a coupling layer are one pass, so log q is exact at any z (the importance
sampler's log-density of its own draws, the density's quadrature test), where an IAF's inverse
takes d sequential passes.

    u = mean(x) + exp(logvar(x) / 2) * eps                         the encoder's Gaussian
    layer l, mask m_l (alternate halves of z: m_l kept, 1 - m_l moved):
        h = tanh((m_l * z) W_in + c_l(x))                          c_l(x): the encoder's context
        s, t = split(h W_out + b_out);  s = tanh(s)
        z <- m_l * z + (1 - m_l) * (z * exp(s) + t),   log|det| += sum((1 - m_l) * s)
    log q(z) = log N(eps; 0, I) - sum(logvar) / 2 - sum of the layers' log|det|

x conditions the flow through each layer's hidden bias c_l(x), a head of the encoder (as IAF's
context h); W_in, W_out and b_out are shared across images. W_out and b_out start at zero, so the
flow starts as the identity: the diagonal family, which it grows from as training asks.
The KL to the prior has no closed form: Monte Carlo from the draws that score the likelihood.
The gap's q* is of the same form with every parameter its own per image (as Cremer et al.
optimize a flow per datapoint): ``local()`` gives the shared weights per image, so the per-image
optimizer frees them; an image's q* starts at the encoder's q.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from .amortized import Amortized
from .declared import FlowDeclared
from .q import standard_normal_log_prob


def _masks(layers: int, d: int, like: torch.Tensor) -> torch.Tensor:
    """(layers, d): layer l keeps the first half of z when l is even, the second when odd."""
    first = (torch.arange(d, device=like.device) < d // 2).to(like.dtype)
    return torch.stack([first if layer % 2 == 0 else 1 - first for layer in range(layers)])


def _linear(v: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """v (S, n, i) times w: one shared (i, o), or one per image (n, i, o)."""
    return v @ w if w.ndim == 2 else torch.einsum("sni,nio->sno", v, w)


@dataclass
class CouplingFlow:
    """q(z_n): N(mean_n, diag exp(logvar_n)) through ``context.shape[-2]`` affine coupling layers.

    The weights are shared, (L, ...), as the encoder's q holds them, or one set per image,
    (n, L, ...), as q* holds them; ``local()`` gives every parameter per image."""

    mean: torch.Tensor  # (n, d)
    logvar: torch.Tensor  # (n, d)
    context: torch.Tensor  # (n, L, H): each layer's hidden bias
    w_in: torch.Tensor  # (L, d, H) or (n, L, d, H)
    w_out: torch.Tensor  # (L, H, 2d) or (n, L, H, 2d)
    b_out: torch.Tensor  # (L, 2d) or (n, L, 2d)
    closed_form_kl = False
    fit_samples = 8  # as the full covariance: many entries per image, walked under one draw at random
    # the draws this q last made, with their log q: kl() of them reuses the log-determinants
    _drawn: tuple[torch.Tensor, torch.Tensor] | None = field(
        default=None, init=False, repr=False, compare=False)

    def _layer(self, layer: int, z: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(s, t) of one layer from the kept part of z (S, n, d), each (S, n, d), zero on the kept part."""
        per_image = self.w_in.ndim == 4
        pick = (lambda w: w[:, layer]) if per_image else (lambda w: w[layer])  # noqa: E731
        h = torch.tanh(_linear(z * mask, pick(self.w_in)) + self.context[:, layer])  # (S, n, H)
        s, t = (_linear(h, pick(self.w_out)) + pick(self.b_out)).chunk(2, dim=-1)
        return torch.tanh(s) * (1 - mask), t * (1 - mask)

    def _forward(self, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.mean + (0.5 * self.logvar).exp() * eps  # (S, n, d)
        log_q = standard_normal_log_prob(eps) - 0.5 * self.logvar.sum(-1)  # (S, n)
        for layer, mask in enumerate(_masks(self.context.shape[-2], z.shape[-1], z)):
            s, t = self._layer(layer, z, mask)
            z = z * s.exp() + t  # the kept part: s = t = 0 there
            log_q = log_q - s.sum(-1)
        return z, log_q

    def sample(self, eps: torch.Tensor) -> torch.Tensor:
        z, log_q = self._forward(eps.to(self.mean.dtype))
        self._drawn = (z, log_q)
        return z  # (S, n, d)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log q(z) (S, n) at any z: the layers inverted, last first, each in one pass."""
        if self._drawn is not None and z is self._drawn[0]:
            return self._drawn[1]
        log_det = 0.0
        masks = _masks(self.context.shape[-2], z.shape[-1], z)
        for layer in reversed(range(masks.shape[0])):
            s, t = self._layer(layer, z, masks[layer])  # the kept part is unchanged by the layer
            z = (z - t) * (-s).exp()
            log_det = log_det + s.sum(-1)
        eps = (z - self.mean) * (-0.5 * self.logvar).exp()
        return standard_normal_log_prob(eps) - 0.5 * self.logvar.sum(-1) - log_det

    def kl(self, z: torch.Tensor) -> torch.Tensor:
        """KL(q_n || N(0, I)) (n,) by Monte Carlo over the draws z (S, n, d)."""
        return (self.log_prob(z) - standard_normal_log_prob(z)).mean(0)

    def point(self) -> torch.Tensor:
        """The base Gaussian's mean through the flow: the image of its mode."""
        return self._forward(torch.zeros_like(self.mean)[None])[0][0]  # (n, d)

    def local(self) -> dict[str, torch.Tensor]:
        n = self.mean.shape[0]
        per_image = {k: w if w.ndim == ndim + 1 else w.expand(n, *w.shape)
                     for (k, w), ndim in zip(self._weights().items(), (3, 3, 2), strict=True)}
        return {"mean": self.mean, "logvar": self.logvar, "context": self.context, **per_image}

    def _weights(self) -> dict[str, torch.Tensor]:
        return {"w_in": self.w_in, "w_out": self.w_out, "b_out": self.b_out}

    @classmethod
    def from_local(cls, mean, logvar, context, w_in, w_out, b_out) -> CouplingFlow:
        return cls(mean, logvar, context, w_in, w_out, b_out)

    def __getitem__(self, rows) -> CouplingFlow:
        """The rows ``rows``; shared weights stay shared (no per-image copies)."""
        per_image = self.w_in.ndim == 4
        weights = {k: w[rows] if per_image else w for k, w in self._weights().items()}
        return type(self)(self.mean[rows], self.logvar[rows], self.context[rows], **weights)


class Flow(FlowDeclared, Amortized):
    """The two-hidden-layer encoder of width k, its diagonal Gaussian pushed through coupling layers
    whose hidden biases are a further head of the encoder."""

    q_type = CouplingFlow

    def __init__(self, data_dim: int, width: int, latent_dim: int, slope: float = 0.2,
                 layers: int = 4, hidden: int = 64):
        super().__init__(data_dim, width, latent_dim, slope)
        self.layers, self.hidden = layers, hidden
        self.context_head = nn.Linear(width, layers * hidden)
        bound = 1 / math.sqrt(latent_dim)  # nn.Linear's own start for W_in
        self.w_in = nn.Parameter(torch.empty(layers, latent_dim, hidden).uniform_(-bound, bound))
        self.w_out = nn.Parameter(torch.zeros(layers, hidden, 2 * latent_dim))  # the identity flow
        self.b_out = nn.Parameter(torch.zeros(layers, 2 * latent_dim))

    @classmethod
    def from_config(cls, cfg, n_data: int, data_dim: int) -> Flow:
        opts = cfg.family_options
        return cls(data_dim, cfg.width, cfg.latent_dim, cfg.slope, opts["layers"], opts["hidden"])

    def forward(self, x: torch.Tensor, idx: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        h = self.body(x)  # (B, k)
        context = self.context_head(h).view(-1, self.layers, self.hidden)  # (B, L, H)
        return self.mean_head(h), self.logvar_head(h), context

    def make_q(self, mean, logvar, context) -> CouplingFlow:
        return CouplingFlow(mean, logvar, context, self.w_in, self.w_out, self.b_out)
