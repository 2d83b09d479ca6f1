"""The Bayesian decoder: Omega(z; theta) with a mean-field Gaussian q(theta) (docs/science.md, 'The model').

theta is every weight and bias of Linear(d, H) -> LeakyReLU -> Linear(H, H) -> LeakyReLU ->
Linear(H, D), held as one flat vector of P numbers so a whole draw is one randn.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# q(theta) starting points (docs/science.md, 'Two settings that decide whether there is anything
# to measure'): the paper's learns slowly (weight noise 0.135 on every weight); nn.Linear's means
# with log-sd -6 learn in a few hundred epochs.
PAPER_LOG_SD, TORCH_LOG_SD = -2.0, -6.0


class BayesianDecoder(nn.Module):
    def __init__(
        self,
        latent_dim: int,
        hidden_dim: int,
        data_dim: int,
        slope: float = 0.2,
        sigma_theta: float = 1.0,
        init: str = "paper",
    ):
        super().__init__()
        d, h, D = latent_dim, hidden_dim, data_dim
        # (out, in) for each weight, then its bias, layer by layer
        self.shapes = [(h, d), (h,), (h, h), (h,), (D, h), (D,)]
        self.sizes = [math.prod(s) for s in self.shapes]
        self.slope = slope
        self.sigma_theta = sigma_theta
        n = sum(self.sizes)
        self.mean = nn.Parameter(torch.zeros(n))
        self.log_sd = nn.Parameter(torch.full((n,), PAPER_LOG_SD))
        if init == "torch":
            self._init_like_linear()
        elif init != "paper":
            raise ValueError(f"init={init!r} is not one of paper, torch")

    @property
    def num_params(self) -> int:
        return self.mean.numel()

    def _init_like_linear(self) -> None:
        # nn.Linear's default: weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))
        with torch.no_grad():
            pieces = self.split(self.mean)
            for w, b in zip(pieces[0::2], pieces[1::2], strict=True):
                bound = 1.0 / math.sqrt(w.shape[1])
                w.uniform_(-bound, bound)
                b.uniform_(-bound, bound)
            self.log_sd.fill_(TORCH_LOG_SD)

    def split(self, theta: torch.Tensor) -> list[torch.Tensor]:
        """Views of a flat (P,) theta as [W1, b1, W2, b2, W3, b3]."""
        return [t.view(s) for t, s in zip(theta.split(self.sizes), self.shapes, strict=True)]

    def sample(self, eps: torch.Tensor) -> torch.Tensor:
        """Reparameterized draws theta = mean + sd * eps; eps (S, P) -> (S, P)."""
        return sample_theta(self.mean, self.log_sd, eps)

    def forward(self, z: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """Omega(z; theta): z (B, d), theta (P,) -> (B, D)."""
        w1, b1, w2, b2, w3, b3 = self.split(theta)
        h = F.leaky_relu(F.linear(z, w1, b1), self.slope)  # (B, H)
        h = F.leaky_relu(F.linear(h, w2, b2), self.slope)  # (B, H)
        return F.linear(h, w3, b3)  # (B, D)

    def kl(self) -> torch.Tensor:
        """KL(q(theta) || N(0, sigma_theta^2 I)) in closed form, summed over all P weights."""
        return theta_kl(self.mean, self.log_sd, self.sigma_theta)


def sample_theta(mean: torch.Tensor, log_sd: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    return mean + log_sd.exp() * eps


def theta_kl(mean: torch.Tensor, log_sd: torch.Tensor, sigma_theta: float) -> torch.Tensor:
    """sum[ log(sigma_theta / sd) + (sd^2 + mean^2) / (2 sigma_theta^2) - 1/2 ] over the weights.

    Written out rather than through torch.distributions: on 284k weights every step, the
    generic form's extra passes (a ratio, its log) cost more than the decoder's first layer.
    Functions of the tensors (not the module) so the seed-vectorized trainer can vmap them.
    """
    per_weight = ((2 * log_sd).exp() + mean.square()) / (2 * sigma_theta**2) - log_sd
    return per_weight.sum() + mean.numel() * (math.log(sigma_theta) - 0.5)
