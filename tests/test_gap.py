"""The gap decomposition on probabilistic PCA, where everything is known in closed form."""

import math

import pytest
import torch
from test_fit import trained
from torch.distributions import MultivariateNormal

from trainables import TrialConfig, load
from trainables.families import Factorized
from trainables.families.q import DiagonalGaussian
from trainables.gap import evaluate_trial, gap_of_split, iwae
from trainables.metrics import GAP_KEYS
from trainables.model import BayesianDecoder

d, H, D, SIGMA = 2, 4, 6, 0.5


def ppca(orthogonal: bool, seed: int = 0):
    """Linear decoder x = A z + c (theta fixed at its mean); returns (decoder, A, c)."""
    g = torch.Generator().manual_seed(seed)
    dec = BayesianDecoder(d, H, D, slope=1.0).double()
    w1 = torch.eye(H, d, dtype=torch.float64)
    if orthogonal:
        q, _ = torch.linalg.qr(torch.randn(D, H, generator=g, dtype=torch.float64))
        w3 = q * torch.tensor([1.5, 0.7, 0.3, 0.2], dtype=torch.float64)
    else:
        w3 = torch.randn(D, H, generator=g, dtype=torch.float64)
    b1, b2, b3 = (0.3 * torch.randn(n, generator=g, dtype=torch.float64) for n in (H, H, D))
    with torch.no_grad():
        dec.mean.copy_(
            torch.cat([w1.flatten(), b1, torch.eye(H, dtype=torch.float64).flatten(), b2, w3.flatten(), b3])
        )
    A = w3 @ w1
    return dec, A, w3 @ (b1 + b2) + b3


def data(A, c, n=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, d, generator=g, dtype=torch.float64)
    return z @ A.T + c + SIGMA * torch.randn(n, D, generator=g, dtype=torch.float64)


def exact(A, c, x):
    """log p(x), the posterior precision, its mean, and the best diagonal Gaussian's gap."""
    log_px = MultivariateNormal(c, A @ A.T + SIGMA**2 * torch.eye(D, dtype=torch.float64)).log_prob(x)
    prec = torch.eye(d, dtype=torch.float64) + A.T @ A / SIGMA**2
    mean = (x - c) @ A @ torch.linalg.inv(prec) / SIGMA**2
    gap = 0.5 * (torch.diag(prec).log().sum() - torch.logdet(prec))  # 0.5 (sum log diag S^-1 - log det S^-1)
    return log_px, prec, mean, gap.item()


def test_iwae_converges_to_exact_log_evidence():
    dec, A, c = ppca(orthogonal=False)
    x = data(A, c)
    log_px, prec, mean, _ = exact(A, c, x)
    logvar = (1 / torch.diag(prec)).log().expand_as(mean)  # the best diagonal Gaussian: a good proposal
    errors = []
    for k in (1, 10, 3000):
        q = DiagonalGaussian(mean, logvar)
        est, se = iwae(dec, dec.mean.detach(), x, q, SIGMA, k, torch.Generator().manual_seed(k))
        errors.append((log_px - est).mean().item())
        assert (se >= 0).all()
    assert errors[0] > errors[1] > abs(errors[2])  # the bound tightens with K
    assert abs(errors[2]) < 0.01


@pytest.mark.parametrize("orthogonal", [True, False])
def test_approximation_gap_equals_closed_form(orthogonal):
    dec, A, c = ppca(orthogonal)
    x = data(A, c)
    _, _, _, want = exact(A, c, x)
    assert (want < 1e-9) if orthogonal else (want > 0.05)  # diagonal posterior: no gap at all
    fam = Factorized(x.shape[0], d).double()  # starts at the prior: q* must be found
    out = gap_of_split(
        dec,
        fam,
        x,
        torch.arange(x.shape[0]),
        SIGMA,
        torch.Generator().manual_seed(0),
        iwae_samples=4000,
        eval_samples=4000,
        qstar={"max_steps": 6000, "lr": 0.02, "window": 100, "rtol": 1e-5, "samples": 32, "decays": 3},
    )
    assert out["approximation_gap"] == pytest.approx(want, abs=0.03)
    assert out["amortization_gap"] > 1.0  # the prior is far from each posterior


def test_exact_best_diagonal_q_leaves_no_amortization_gap():
    dec, A, c = ppca(orthogonal=False)
    x = data(A, c)
    log_px, prec, mean, want = exact(A, c, x)
    fam = Factorized(x.shape[0], d).double()
    with torch.no_grad():
        fam.mean.copy_(mean)
        fam.spread.copy_((1 / torch.diag(prec)).log().expand_as(mean))
    out = gap_of_split(
        dec,
        fam,
        x,
        torch.arange(x.shape[0]),
        SIGMA,
        torch.Generator().manual_seed(0),
        iwae_samples=4000,
        eval_samples=4000,
        per_point=True,
    )
    assert out["amortization_gap"] == pytest.approx(0.0, abs=0.02)
    assert out["elbo_q"] == pytest.approx((log_px.mean() - want).item(), abs=0.05)
    assert out["log_px"] == pytest.approx(log_px.mean().item(), abs=0.02)


def test_qstar_never_worse_than_q_on_any_datapoint():
    dec, A, c = ppca(orthogonal=False)
    x = data(A, c, n=40)
    _, prec, mean, _ = exact(A, c, x)
    fam = Factorized(x.shape[0], d).double()
    with torch.no_grad():  # near-optimal for some points, poor for others
        fam.mean.copy_(mean + torch.linspace(0, 1, 40, dtype=torch.float64)[:, None])
        fam.spread.copy_((1 / torch.diag(prec)).log().expand_as(mean))
    out = gap_of_split(
        dec,
        fam,
        x,
        torch.arange(40),
        SIGMA,
        torch.Generator().manual_seed(3),
        iwae_samples=100,
        eval_samples=200,
        qstar={"max_steps": 30},
        per_point=True,
    )
    pts = out["points"]
    assert (pts["elbo_qstar"] >= pts["elbo_q"]).all()
    assert out["amortization_gap"] >= 0


def test_evaluate_a_trained_trial(fashion_available):
    data_ = load("fashion_mnist", 300, 100)
    cfg = TrialConfig(
        family="amortized",
        width=16,
        n_train=300,
        n_test=100,
        batch_size=100,
        epochs=5,
        sigma_x=0.3,
        theta_init="torch",
        lr=3e-3,
    )
    trial = trained(cfg, data_)
    out = evaluate_trial(
        trial, points=50, iwae_samples=64, eval_samples=16, refine_steps=(0, 1, 5), qstar={"max_steps": 50}
    )
    for split in ("train", "test"):
        r = out[split]
        assert set(r) == {*GAP_KEYS, "refine"}  # the row gap.json holds, as the results table reads it
        assert r["n"] == 50 and r["amortization_gap"] >= 0 and math.isfinite(r["approximation_gap"])
        assert r["log_px"] >= r["elbo_qstar"] - 1.0
        ks = [p["steps"] for p in r["refine"]]
        assert ks == [0, 1, 5] and r["refine"][0]["elbo"] == pytest.approx(r["elbo_q"], rel=1e-6)
        assert r["refine"][-1]["seconds"] >= r["refine"][0]["seconds"]
    fvi = trained(TrialConfig(**{**cfg.to_dict(), "family": "factorized", "width": None}), data_)
    out = evaluate_trial(fvi, points=30, iwae_samples=32, eval_samples=8, qstar={"max_steps": 30})
    assert math.isfinite(out["train"]["amortization_gap"])
    assert math.isnan(out["test"]["amortization_gap"])  # F-VI has no q for unseen images
    assert "refine" not in out["train"]


def test_sweep_evaluate_and_export(smoke_experiment, smoke_copy, tmp_path, capsys):
    """The smoke sweep ran `evaluate` at its end (its spec's `evaluate:`), as Ray tasks: a gap.json
    per trial, carried by export (its figures: tests/test_analysis.py). A second `sweep evaluate`
    (after one killed midway) computes only the missing files and leaves the rest untouched."""
    import pandas as pd

    from sweep.cli import main as sweep_main

    _, exp = smoke_experiment
    assert len(list(exp.glob("*/gap.json"))) == 8
    assert sweep_main(["export", str(exp), "-o", str(tmp_path / "r.parquet")]) == 0
    gaps = pd.read_parquet(tmp_path / "r.gaps.parquet")
    refine = pd.read_parquet(tmp_path / "r.refine.parquet")
    assert len(gaps) == 16 and set(gaps.split) == {"train", "test"}
    assert (gaps.n == 40).all() and (gaps.amortization_gap.dropna() >= 0).all()
    fvi_test = gaps[(gaps.family == "factorized") & (gaps.split == "test")]
    assert fvi_test.amortization_gap.isna().all()  # no test-time q for F-VI
    assert set(refine.family) == {"amortized"} and set(refine.steps) == {0, 1, 5, 20, 100}
    capsys.readouterr()
    files = sorted(smoke_copy.glob("*/gap.json"))
    for f in files[:2]:
        f.unlink()
    kept = {f: f.stat().st_mtime_ns for f in files[2:]}
    assert sweep_main(["evaluate", str(smoke_copy), "--points", "40", "--iwae-samples", "32"]) == 0
    assert all(f.exists() for f in files[:2]) and {f: f.stat().st_mtime_ns for f in kept} == kept
    said = capsys.readouterr().out.splitlines()  # the gap split, as status shows training
    assert said[0].split()[:4] == ["dataset", "variant", "amort.", "train"]
    assert [ln.split()[1] for ln in said[1:5]] == ["k=2", "k=8", "factorized", "constant"]
    assert "±" in said[1] and "2 trials evaluated now" in said[5]


def test_evaluate_at_the_two_kept_checkpoints_says_whether_the_gap_still_moved(smoke_copy, capsys):
    """`sweep evaluate --checkpoints 2` measures each trial at its last checkpoint and the one before
    (the smoke sweep checkpoints at epochs 2 and 4); the analysis reads the last as the gap and the
    earlier one for the closing width's convergence."""
    import json

    from analysis.closing import closing_table
    from analysis.load import load
    from sweep.cli import main as sweep_main

    assert sweep_main(["evaluate", str(smoke_copy), "--checkpoints", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--checkpoints 3 must be 1 to 2" in err
    assert sweep_main(["evaluate", str(smoke_copy), "--points", "10", "--iwae-samples", "8",
                       "--checkpoints", "2"]) == 0
    files = list(smoke_copy.glob("*/gap.json"))
    assert len(files) == 8  # a trial per variant and seed
    for f in files:
        assert sorted(r["epoch"] for r in json.loads(f.read_text())["results"]) == [2, 4]
    results = load(smoke_copy)
    assert set(results.measured.epoch) == {4} and set(results.earlier.epoch) == {2}
    assert len(results.measured) == len(results.earlier) == 8 * 2  # a row per trial and split
    closing = closing_table(results.table, results.measured, earlier=results.earlier)
    assert set(closing.epoch) == {4} and set(closing.epoch_before) == {2}
    assert set(closing.family) == {"amortized"} and closing.widest.eq(8).all()


def test_evaluate_refuses_a_non_experiment(tmp_path, capsys):
    from sweep.cli import main as sweep_main

    assert sweep_main(["evaluate", str(tmp_path)]) == 2
    assert "is not a sweep experiment" in capsys.readouterr().err
    assert sweep_main(["evaluate", str(tmp_path), "--points", "0"]) == 2
