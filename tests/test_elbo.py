"""The estimator against an independent float64 computation, unbiasedness, and pPCA's known answer."""

import math

import numpy as np
import pytest
import torch
from torch.distributions import MultivariateNormal, Normal, kl_divergence

from trainables.elbo import Noise, draw_noise, elbo_terms
from trainables.families import Amortized, Constant, Factorized
from trainables.model import BayesianDecoder

D, H, d, N = 6, 5, 3, 12


def _decoder(slope=0.2, sigma_theta=1.3, init="torch"):
    torch.manual_seed(0)
    dec = BayesianDecoder(d, H, D, slope=slope, sigma_theta=sigma_theta, init=init).double()
    with torch.no_grad():
        dec.log_sd.uniform_(-3, -1)  # a q(theta) with real spread
    return dec


def _numpy_elbo(dec, mean, logvar, x, eps_theta, eps_z, n_total, sigma_x, slope, sigma_theta):
    """The ELBO of docs/science.md written out in numpy float64, sharing only the noise."""
    mu, lsd = dec.mean.detach().numpy(), dec.log_sd.detach().numpy()
    S, B = eps_theta.shape[0], x.shape[0]
    loglik = 0.0
    for s in range(S):
        th = mu + np.exp(lsd) * eps_theta[s]
        sizes = [H * d, H, H * H, H, D * H, D]
        w1, b1, w2, b2, w3, b3 = np.split(th, np.cumsum(sizes)[:-1])
        z = mean + np.exp(0.5 * logvar) * eps_z[s]
        h = z @ w1.reshape(H, d).T + b1
        h = np.where(h > 0, h, slope * h)
        h = h @ w2.reshape(H, H).T + b2
        h = np.where(h > 0, h, slope * h)
        f = h @ w3.reshape(D, H).T + b3
        loglik += np.sum(-0.5 * np.log(2 * np.pi * sigma_x**2) - (x - f) ** 2 / (2 * sigma_x**2))
    loglik /= S
    kl_z = 0.5 * np.sum(np.exp(logvar) + mean**2 - 1 - logvar)
    var = np.exp(2 * lsd)
    kl_t = np.sum(np.log(sigma_theta) - lsd + (var + mu**2) / (2 * sigma_theta**2) - 0.5)
    scale = n_total / B
    return {"loglik": scale * loglik, "kl_z": scale * kl_z, "kl_theta": kl_t,
            "elbo": scale * loglik - scale * kl_z - kl_t}


@pytest.mark.parametrize("samples", [1, 3])
def test_matches_independent_float64(samples):
    dec = _decoder()
    fam = Factorized(N, d).double()
    with torch.no_grad():
        fam.mean.normal_()
        fam.spread.uniform_(-2, 1)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(N, D, generator=g, dtype=torch.float64)
    idx = torch.tensor([3, 7, 1, 10])
    noise = Noise(torch.randn(samples, dec.num_params, generator=g, dtype=torch.float64),
                  torch.randn(samples, 4, d, generator=g, dtype=torch.float64))
    got = elbo_terms(dec, fam, x[idx], idx, N, 0.4, noise)
    want = _numpy_elbo(dec, fam.mean[idx].detach().numpy(),
                       fam.spread[idx].detach().numpy(), x[idx].numpy(),
                       noise.theta.numpy(), noise.z.numpy(), N, 0.4, 0.2, 1.3)
    for k, v in want.items():
        assert got[k].item() == pytest.approx(v, rel=1e-10), k


def test_minibatch_mean_equals_full_batch_with_same_noise():
    dec = _decoder()
    fam = Amortized(D, 7, d).double()
    g = torch.Generator().manual_seed(2)
    x = torch.rand(N, D, generator=g, dtype=torch.float64)
    eps_theta = torch.randn(2, dec.num_params, generator=g, dtype=torch.float64)
    eps_z = torch.randn(2, N, d, generator=g, dtype=torch.float64)  # one draw per datapoint
    full = elbo_terms(dec, fam, x, torch.arange(N), N, 0.5, Noise(eps_theta, eps_z))
    perm = torch.randperm(N, generator=g)
    parts = [elbo_terms(dec, fam, x[b], b, N, 0.5, Noise(eps_theta, eps_z[:, b]))
             for b in perm.split(4)]
    for k in full:
        mean_of_minibatches = sum(p[k] for p in parts) / len(parts)
        assert mean_of_minibatches.item() == pytest.approx(full[k].item(), rel=1e-12), k
    # and the estimate is not trivially the same for every minibatch
    assert len({round(p["loglik"].item(), 6) for p in parts}) == len(parts)


def _ppca(sigma_x=0.5):
    """A linear decoder with orthogonal columns: x = A z + c + noise, A^T A diagonal."""
    dec = BayesianDecoder(d, H, D, slope=1.0).double()
    g = torch.Generator().manual_seed(3)
    q, _ = torch.linalg.qr(torch.randn(D, H, generator=g, dtype=torch.float64))  # (D, H) orthonormal
    scales = torch.tensor([2.0, 1.0, 0.5, 0.3, 0.2], dtype=torch.float64)
    w1 = torch.eye(H, d, dtype=torch.float64)
    w2 = torch.eye(H, dtype=torch.float64)
    w3 = q * scales
    b1, b2, b3 = (torch.randn(n, generator=g, dtype=torch.float64) for n in (H, H, D))
    with torch.no_grad():
        dec.mean.copy_(torch.cat([w1.flatten(), b1, w2.flatten(), b2, w3.flatten(), b3]))
    A = w3 @ w2 @ w1  # (D, d)
    c = w3 @ (w2 @ b1 + b2) + b3
    return dec, A, c, sigma_x


def _posterior(A, c, sigma_x, x):
    prec = torch.eye(d, dtype=torch.float64) + A.T @ A / sigma_x**2
    cov = torch.linalg.inv(prec)
    assert torch.allclose(cov, torch.diag(torch.diag(cov)), atol=1e-12)  # diagonal by construction
    mean = (x - c) @ A @ cov / sigma_x**2  # (n, d)
    return mean, torch.diag(cov).log().expand_as(mean)


def _z_elbo(dec, fam, x, sigma_x, samples, seed):
    """loglik - kl_z per datapoint at theta = its mean (theta held fixed: zero theta noise)."""
    n = x.shape[0]
    g = torch.Generator().manual_seed(seed)
    noise = Noise(torch.zeros(samples, dec.num_params, dtype=torch.float64),
                  torch.randn(samples, n, d, generator=g, dtype=torch.float64))
    t = elbo_terms(dec, fam, x, torch.arange(n), n, sigma_x, noise)
    return ((t["loglik"] - t["kl_z"]) / n).item()


def test_ppca_exact_posterior_reaches_log_evidence():
    dec, A, c, sx = _ppca()
    g = torch.Generator().manual_seed(4)
    x = (torch.randn(8, d, generator=g, dtype=torch.float64) @ A.T + c
         + sx * torch.randn(8, D, generator=g, dtype=torch.float64))
    log_px = MultivariateNormal(c, A @ A.T + sx**2 * torch.eye(D, dtype=torch.float64)).log_prob(x)
    fam = Factorized(8, d).double()
    m, lv = _posterior(A, c, sx, x)
    with torch.no_grad():
        fam.mean.copy_(m)
        fam.spread.copy_(lv)
    est = _z_elbo(dec, fam, x, sx, samples=4000, seed=5)
    assert est == pytest.approx(log_px.mean().item(), abs=0.05)


@pytest.mark.parametrize("family", ["factorized", "constant", "amortized"])
def test_ppca_elbo_below_log_evidence_by_the_kl(family):
    dec, A, c, sx = _ppca()
    g = torch.Generator().manual_seed(6)
    x = (torch.randn(8, d, generator=g, dtype=torch.float64) @ A.T + c
         + sx * torch.randn(8, D, generator=g, dtype=torch.float64))
    log_px = MultivariateNormal(c, A @ A.T + sx**2 * torch.eye(D, dtype=torch.float64)).log_prob(x)
    torch.manual_seed(7)
    fam = {"factorized": lambda: Factorized(8, d), "constant": lambda: Constant(d),
           "amortized": lambda: Amortized(D, 4, d, slope=1.0)}[family]().double()
    with torch.no_grad():
        for p in fam.parameters():
            p.normal_(0, 0.5)
    est = _z_elbo(dec, fam, x, sx, samples=4000, seed=8)
    # the gap is exactly KL(q || posterior), here computed independently in closed form
    qm, qlv = fam(x, torch.arange(8))
    pm, plv = _posterior(A, c, sx, x)
    kl = kl_divergence(Normal(qm, (0.5 * qlv).exp()), Normal(pm, (0.5 * plv).exp())).sum(-1)
    assert kl.mean().item() > 0.5
    assert est < log_px.mean().item()
    assert est == pytest.approx((log_px - kl).mean().item(), abs=0.05 + 0.01 * kl.mean().item())


def test_draw_noise_shapes_and_generator():
    g = torch.Generator().manual_seed(0)
    n = draw_noise(10, 4, 3, 2, g)
    assert n.theta.shape == (2, 10) and n.z.shape == (2, 4, 3)
    g2 = torch.Generator().manual_seed(0)
    assert torch.equal(draw_noise(10, 4, 3, 2, g2).theta, n.theta)
    assert math.isfinite(n.z.sum().item())
