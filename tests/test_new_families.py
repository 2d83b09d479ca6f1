"""Families no anchor sweeps, against known answers: the full-covariance amortized q and SA-VAE."""

import pytest
import torch
from test_fit import trained
from test_gap import SIGMA, d, data, exact, ppca
from torch.distributions import MultivariateNormal

from trainables import Fit, SeedRun, TrialConfig, load
from trainables.elbo import Noise, draw_noise, elbo_terms
from trainables.families import FullCovariance, SemiAmortized
from trainables.families.q import DiagonalGaussian, FullCovGaussian, gaussian_kl, standard_normal_log_prob
from trainables.gap import gap_of_split
from trainables.inference import per_point_elbo
from trainables.terms import z_terms


def _random_fullcov(n=5, dim=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    return FullCovGaussian(r(n, dim), 0.3 * r(n, dim), 0.5 * r(n, dim * (dim - 1) // 2))


def test_full_covariance_log_prob_is_the_multivariate_normal():
    q = _random_fullcov()
    z = q.sample(torch.randn(7, 5, 4, dtype=torch.float64))
    want = MultivariateNormal(q.mean, scale_tril=q.scale_tril).log_prob(z)
    torch.testing.assert_close(q.log_prob(z), want)


def test_full_covariance_closed_form_kl_equals_monte_carlo():
    q = _random_fullcov()
    z = q.sample(torch.randn(200_000, 5, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    log_ratio = q.log_prob(z) - standard_normal_log_prob(z)  # (S, n)
    mc, se = log_ratio.mean(0), log_ratio.std(0) / log_ratio.shape[0] ** 0.5
    assert ((q.kl() - mc).abs() < 4 * se).all(), (q.kl(), mc, se)
    # with no entries below the diagonal it is the diagonal Gaussian's KL
    diag = FullCovGaussian(q.mean, q.log_diag, torch.zeros_like(q.lower))
    torch.testing.assert_close(diag.kl(), gaussian_kl(q.mean, 2 * q.log_diag))


def test_full_covariance_closes_the_approximation_gap_on_ppca():
    """pPCA with a non-diagonal posterior: the diagonal family's q* leaves the closed-form gap
    0.5 (sum log diag S^-1 - log det S^-1); the full-covariance family's leaves none."""
    dec, A, c = ppca(orthogonal=False)
    x = data(A, c)
    _, _, _, diagonal_gap = exact(A, c, x)
    assert diagonal_gap > 0.05
    torch.manual_seed(0)
    fam = FullCovariance(x.shape[1], 8, d, slope=1.0).double()
    out = gap_of_split(
        dec, fam, x, torch.arange(x.shape[0]), SIGMA, torch.Generator().manual_seed(0),
        iwae_samples=4000, eval_samples=4000,
        qstar={"max_steps": 6000, "lr": 0.02, "window": 100, "rtol": 1e-5, "samples": 32, "decays": 3},
    )
    assert out["approximation_gap"] == pytest.approx(0.0, abs=0.03)
    assert out["amortization_gap"] > 0.1  # an untrained encoder is far from each posterior


@pytest.fixture(scope="module")
def fashion(fashion_available):
    return load("fashion_mnist", 200, 50)


SMALL = dict(n_train=200, n_test=50, batch_size=100, sigma_x=0.3, theta_init="torch", epochs=3, width=8,
             latent_dim=8, hidden_dim=32, lr=3e-3)


def _strip(hist):
    return [{k: v for k, v in m.items() if "seconds" not in k} for m in hist]


def test_sa_vae_with_no_steps_is_the_amortized_family_bit_for_bit(fashion):
    plain = trained(TrialConfig(family="amortized", **SMALL), fashion).history
    sa = trained(TrialConfig(family="sa_vae", family_options={"steps": 0}, **SMALL), fashion).history
    assert _strip(sa) == _strip(plain)


def test_sa_vae_refined_elbo_is_never_below_the_encoders(fashion):
    torch.manual_seed(0)
    cfg = TrialConfig(family="sa_vae", family_options={"steps": 5, "step_size": 0.1}, **SMALL)
    trial = trained(cfg, fashion, 2)
    x = trial.x_train[:64]
    theta = trial.decoder.mean.detach()[None]
    eps = torch.randn(3, 64, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        q0 = trial.family.q(x, None)
    refined = trial.family.refine(q0, x, trial.decoder, theta.expand(3, -1), eps, cfg.sigma_x)
    before = per_point_elbo(trial.decoder, theta, x, q0, cfg.sigma_x, eps)
    after = per_point_elbo(trial.decoder, theta, x, refined, cfg.sigma_x, eps)
    assert (after >= before).all() and (after - before).mean() > 0.1
    assert isinstance(refined, DiagonalGaussian) and not refined.mean.requires_grad


def test_sa_vae_trains_through_its_refinement(fashion):
    """The encoder's gradient flows through the K steps: it differs from the same step without them."""
    grads = []
    for steps in (0, 3):
        torch.manual_seed(0)
        cfg = TrialConfig(family="sa_vae", family_options={"steps": steps}, **SMALL)
        fit = Fit([SeedRun(cfg, fashion)])
        fit.optim.step(torch.arange(100)[None])  # one seed's rows (1, B)
        grads.append(fit.runs[0].family.mean_head.weight.detach().clone())
    assert not torch.allclose(grads[0], grads[1])
    hist = trained(TrialConfig(family="sa_vae", family_options={"steps": 3}, **SMALL), fashion).history
    assert all(m["neg_elbo"] == m["neg_elbo"] for m in hist) and hist[-1]["test_mse"] > 0


def test_new_families_refuse_what_they_cannot_do():
    from trainables.config import ConfigError

    with pytest.raises(ConfigError, match="objective='paper' is their code's, for diagonal Gaussian q"):
        TrialConfig(family="fullcov", width=4, objective="paper")
    with pytest.raises(ConfigError, match="latent_terms='all' with 'sa_vae'"):
        TrialConfig(family="sa_vae", width=4, latent_terms="all")
    with pytest.raises(ConfigError, match="family_options.steps=-1"):
        TrialConfig(family="sa_vae", width=4, family_options={"steps": -1})
    assert SemiAmortized.refines and not FullCovariance.refines


def test_sa_vae_scores_its_refined_q_on_draws_other_than_it_was_refined_on(fashion):
    """Refined on the draws that score it, q fits them and the objective flatters it; the step
    refines on Noise.refine and scores on Noise.z: its terms are that q's, scored on z."""
    torch.manual_seed(0)
    trial = SeedRun(TrialConfig(family="sa_vae", family_options={"steps": 3}, **SMALL), fashion)
    idx = torch.arange(100)
    x, dec, fam = trial.x_train[idx], trial.decoder, trial.family
    noise = draw_noise(dec.num_params, 100, 8, 1, torch.Generator().manual_seed(1), refine=True)
    terms = elbo_terms(dec, fam, x, idx, 200, 0.3, noise)
    thetas = dec.sample(noise.theta)
    with torch.no_grad():
        refined = fam.refine(fam.q(x, idx), x, dec, thetas, noise.refine, 0.3)
        loglik, kl = z_terms(dec, thetas, x, refined, noise.z, 0.3)
    assert torch.allclose(terms["loglik"], 2 * loglik.sum(), rtol=1e-5)  # scaled by N / B = 2
    assert torch.allclose(terms["kl_z"], 2 * kl.sum(), rtol=1e-5)
    with pytest.raises(ValueError, match="draws of its own"):
        elbo_terms(dec, fam, x, idx, 200, 0.3, Noise(noise.theta, noise.z))
