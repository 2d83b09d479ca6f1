"""Margossian & Blei's code's settings: their objective transliterated, all-rows latent terms, their
starts, dense F-VI rows, fixed batches, a random training subset; the reported ELBO stays true."""

import dataclasses

import numpy as np
import pytest
import torch

from trainables import Fit, SeedRun, TrialConfig, load
from trainables.elbo import Noise, elbo_terms
from trainables.families import Constant, Factorized
from trainables.fit import Separate, optimizers
from trainables.model import BayesianDecoder

D, H, d, N, B = 6, 5, 3, 12, 4
HALF = 0.5**0.5  # their likelihood and theta prior: variance 1/2


def _setup(samples=2, rows=N):
    torch.manual_seed(0)
    dec = BayesianDecoder(d, H, D, sigma_theta=HALF, init="torch").double()
    with torch.no_grad():
        dec.log_sd.uniform_(-3, -1)
    fam = Factorized(N, d, init="random", sparse=False).double()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(N, D, generator=g, dtype=torch.float64)
    noise = Noise(torch.randn(samples, dec.num_params, generator=g, dtype=torch.float64),
                  torch.randn(samples, rows, d, generator=g, dtype=torch.float64))
    return dec, fam, x, noise


def _their_compute_elbo(dec, fam, x, idx, noise):
    """vae.ipynb's Model.compute_elbo in numpy float64: every latent's prior and (their) log q, the
    minibatch's likelihood times N/B, theta's prior -sum theta^2, log q called with the sd."""
    mu_t, sd_t = dec.mean.detach().numpy(), np.exp(dec.log_sd.detach().numpy())
    m, sd = fam.mean.detach().numpy(), np.exp(0.5 * fam.spread.detach().numpy())
    eps_t, eps_z = noise.theta.numpy(), noise.z.numpy()
    S = eps_t.shape[0]
    total = 0.0
    for s in range(S):
        z = m + sd * eps_z[s]  # (N, d): every latent
        th = mu_t + sd_t * eps_t[s]
        sizes = [H * d, H, H * H, H, D * H, D]
        w1, b1, w2, b2, w3, b3 = np.split(th, np.cumsum(sizes)[:-1])
        h = z[idx] @ w1.reshape(H, d).T + b1
        h = np.where(h > 0, h, 0.2 * h)
        h = h @ w2.reshape(H, H).T + b2
        h = np.where(h > 0, h, 0.2 * h)
        f = h @ w3.reshape(D, H).T + b3
        log_joint = -0.5 * np.sum(z**2) - (N / len(idx)) * np.sum((x[idx] - f) ** 2) - np.sum(th**2)
        log_q = (np.sum(-0.5 * np.log(sd_t) - (th - mu_t) ** 2 / (2 * sd_t))
                 + np.sum(-0.5 * np.log(sd) - (z - m) ** 2 / (2 * sd)))
        total += log_joint - log_q
    return total / S


def test_paper_objective_is_their_formula():
    dec, fam, x, noise = _setup()
    idx = torch.tensor([4, 5, 6, 7])
    got = elbo_terms(dec, fam, x[idx], idx, N, HALF, noise, x_all=x, objective="paper")
    want = _their_compute_elbo(dec, fam, x.numpy(), idx.numpy(), noise)
    assert got["objective"].item() == pytest.approx(want, rel=1e-10)


@pytest.mark.parametrize("all_rows", [False, True])
def test_reported_terms_stay_the_true_elbo_under_their_objective(all_rows):
    dec, fam, x, noise = _setup(rows=N if all_rows else B)
    idx = torch.tensor([1, 9, 3, 0])
    x_all = x if all_rows else None
    paper = elbo_terms(dec, fam, x[idx], idx, N, HALF, noise, x_all=x_all, objective="paper")
    # the true ELBO with the same draws for the minibatch's z
    batch_noise = Noise(noise.theta, noise.z[:, idx] if all_rows else noise.z)
    true = elbo_terms(dec, fam, x[idx], idx, N, HALF, batch_noise, x_all=x_all)
    assert "objective" not in true
    for k in ("elbo", "loglik", "kl_z", "kl_theta"):
        assert paper[k].item() == pytest.approx(true[k].item(), rel=1e-12), k
    assert paper["objective"].item() != pytest.approx(paper["elbo"].item(), rel=1e-3)


def test_all_rows_kl_is_every_rows_exact_kl_and_the_estimate_stays_unbiased():
    dec, fam, x, noise = _setup(rows=N)
    m, lv = fam.mean.detach(), fam.spread.detach()
    exact = 0.5 * (lv.exp() + m.square() - 1 - lv).sum()
    parts = []
    for idx in torch.arange(N).split(B):
        t = elbo_terms(dec, fam, x[idx], idx, N, 0.4, Noise(noise.theta, noise.z[:, idx]), x_all=x)
        assert t["kl_z"].item() == pytest.approx(exact.item(), rel=1e-12)
        parts.append(elbo_terms(dec, fam, x[idx], idx, N, 0.4, Noise(noise.theta, noise.z[:, idx])))
    # the minibatch estimates of the KL average to the same exact total over a partition
    assert (sum(p["kl_z"] for p in parts) / len(parts)).item() == pytest.approx(exact.item(), rel=1e-12)


def test_dense_factorized_moves_every_row_by_momentum():
    fac = Factorized(N, d, sparse=False)
    (opt,) = optimizers([fac], lr=0.1)
    assert isinstance(opt, torch.optim.Adam)

    def step(idx):
        opt.zero_grad()
        m, lv = fac(None, idx)
        ((m - 1.0).square().sum() + lv.square().sum()).backward()
        opt.step()

    step(torch.tensor([0, 1, 2]))
    before = fac.mean.detach().clone()
    step(torch.tensor([10, 11]))
    moved = (fac.mean.detach() != before).any(dim=1).nonzero().flatten().tolist()
    assert moved == [0, 1, 2, 10, 11]  # rows 0-2 moved by momentum alone


def test_their_random_starts():
    torch.manual_seed(0)
    fac = Factorized(20_000, 4, init="random")
    log_sd = 0.5 * fac.spread.detach()
    assert fac.mean.mean().item() == pytest.approx(0, abs=0.02)
    assert fac.mean.std().item() == pytest.approx(1, abs=0.02)
    assert log_sd.mean().item() == pytest.approx(-1, abs=0.02)  # N(0, 1) - 1
    assert log_sd.std().item() == pytest.approx(1, abs=0.02)
    assert torch.equal(Factorized(5, 4).table.weight, torch.zeros(5, 8))  # the default: the prior
    const = Constant(50_000 // 50, init="random")
    assert const.mean.std().item() == pytest.approx(1, abs=0.1)
    assert (0.5 * const.spread).std().item() == pytest.approx(1, abs=0.1)  # log-sd N(0, 1)


@pytest.fixture(scope="module")
def fashion(fashion_available):
    return load("fashion_mnist", 300, 100)


def _batches(cfg, data, monkeypatch, epochs=2):
    seen = []
    original = Separate.step

    def record(self, idx):
        seen.append(idx[0].tolist())  # (seeds, B): a lone run is a fit of one seed
        return original(self, idx)

    monkeypatch.setattr(Separate, "step", record)
    list(Fit([SeedRun(cfg, data)]).train(epochs))
    return seen


def test_fixed_batches_are_contiguous_and_repeat(fashion, monkeypatch):
    cfg = TrialConfig(family="constant", n_train=300, n_test=100, batch_size=100, shuffle=False)
    seen = _batches(cfg, fashion, monkeypatch)
    assert seen == [list(range(0, 100)), list(range(100, 200)), list(range(200, 300))] * 2
    shuffled = _batches(TrialConfig(family="constant", n_train=300, n_test=100, batch_size=100),
                        fashion, monkeypatch)
    assert shuffled[:3] != shuffled[3:]


def test_random_training_subset_is_seeded(fashion_available):
    first = load("fashion_mnist", 300, 10)
    full = load("fashion_mnist", 60_000, 10)
    a = load("fashion_mnist", 300, 10, subset="random", seed=3)
    b = load("fashion_mnist", 300, 10, subset="random", seed=3)
    c = load("fashion_mnist", 300, 10, subset="random", seed=4)
    assert torch.equal(a.x_train, b.x_train) and not torch.equal(a.x_train, c.x_train)
    assert not torch.equal(a.x_train, first.x_train)
    perm = torch.randperm(60_000, generator=torch.Generator().manual_seed(3))[:300]
    assert torch.equal(a.x_train, full.x_train[perm])
    assert torch.equal(a.x_test, first.x_test)  # the test images stay the first n_test


def test_every_mode_trains_and_reports_true_nats(fashion):
    cfg = TrialConfig(family="factorized", n_train=300, n_test=100, batch_size=100, epochs=2,
                      objective="paper", latent_terms="all", shuffle=False, sigma_theta=HALF,
                      family_options={"init": "random", "optimizer": "dense"})
    hist = [m for (m,) in Fit([SeedRun(cfg, fashion)]).train()]
    for m in hist:
        assert m["neg_elbo"] == pytest.approx(-(m["loglik"] - m["kl_z"] - m["kl_theta"]), rel=1e-6)
        assert m["kl_z_per_datapoint"] == pytest.approx(m["kl_z"] / 300)
        assert 0 <= m["active_dims"] <= 64


def _log_variance(q) -> torch.Tensor:
    """The log-variance of q's Gaussian (a flow's base Gaussian; a full covariance's: of L's diagonal)."""
    return q.logvar if hasattr(q, "logvar") else 2 * q.log_diag


@pytest.mark.parametrize("family", ["amortized", "constant", "factorized", "flow", "fullcov", "sa_vae"])
def test_log_sd_spread_is_honoured_by_every_family(family):
    """spread_param log_sd (their code): the raw spread is a log-sd, so q's log-variance is twice it,
    and Adam's first step of lr in the raw parameter moves the log-variance by 2 lr."""
    from trainables.families import FAMILIES, build

    cls = FAMILIES[family]
    random_start = "init" in {f.name for f in dataclasses.fields(cls.Options)}
    base = dict(family=family, width=8 if cls.has_width else None, latent_dim=d, n_train=N, batch_size=B,
                family_options={"init": "random"} if random_start else {})
    x, idx = torch.rand(N, D, generator=torch.Generator().manual_seed(1)), torch.arange(N)
    starts, moves = [], []
    for spread, factor in (("logvar", 1.0), ("log_sd", 2.0)):
        torch.manual_seed(0)
        fam = build(TrialConfig(**base, spread_param=spread), N, D)
        before = _log_variance(fam.q(x, idx)).detach().clone()  # a view of the parameter at factor 1
        torch.testing.assert_close(before, factor * fam(x, idx)[1])  # applied once, by the contract
        _log_variance(fam.q(x, idx)).sum().backward()
        for opt in optimizers([fam], lr=1e-2):
            opt.step()
        starts.append(before)
        moves.append(_log_variance(fam.q(x, idx)).detach() - starts[-1])
    # a random start draws log-sds, the same q either way; an encoder's head starts at the same
    # raw values, twice the log-variance
    torch.testing.assert_close(starts[1], starts[0] if random_start else 2 * starts[0])
    torch.testing.assert_close(moves[1], 2 * moves[0])
