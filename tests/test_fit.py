"""The fit loop on real Fashion-MNIST: learning, exact restore, loud failures, test-time q."""

import math

import pytest
import torch

from trainables import Data, Fit, NonFiniteELBOError, SeedRun, TrialConfig, checkpoint, load
from trainables.families import FAMILIES
from trainables.metrics import latents_unused

TIME_KEYS = ("opt_seconds", "eval_seconds", "seconds_to_threshold")
SMALL = dict(dataset="fashion_mnist", n_train=400, n_test=200, batch_size=100, sigma_x=0.3,
             theta_init="torch", lr=3e-3)


def cfg_for(family, **kw):
    return TrialConfig(**{**SMALL, "family": family,
                          "width": 32 if FAMILIES[family].has_width else None, **kw})


def trained(cfg, data, epochs=None, **kw):
    """One seed's run of ``cfg``, trained to ``epochs`` (default cfg.epochs)."""
    fit = Fit([SeedRun(cfg, data)], **kw)
    for _ in fit.train(epochs):
        pass
    return fit.runs[0]


@pytest.fixture(scope="module")
def fashion(fashion_available):
    return load("fashion_mnist", 400, 200)


@pytest.mark.parametrize("family", ["amortized", "factorized", "constant"])
def test_each_family_learns_on_real_fashion_mnist(fashion, family):
    hist = trained(cfg_for(family, epochs=8), fashion).history
    assert [m["epoch"] for m in hist] == list(range(1, 9))
    assert hist[-1]["neg_elbo"] < hist[0]["neg_elbo"]
    # at N = 400 the KL of 284k weights dominates the total; the data part must improve clearly
    data_part = [m["loglik"] - m["kl_z"] for m in hist]
    assert data_part[-1] > data_part[0] + 0.2 * abs(data_part[0])
    assert hist[-1]["neg_elbo_per_datapoint"] == pytest.approx(hist[-1]["neg_elbo"] / 400)
    for m in hist:
        assert m["neg_elbo"] == pytest.approx(-(m["loglik"] - m["kl_z"] - m["kl_theta"]), rel=1e-5)
        assert 0 < m["train_mse"] < 1
        assert (m["test_mse"] is None) == (family == "factorized")  # F-VI has no test-time q
    assert hist[-1]["opt_seconds"] > hist[0]["opt_seconds"] > 0


def test_amortized_uses_its_latents(fashion):
    """Past the 'latents unused' floor (mean image, ~0.087) within a few epochs."""
    hist = trained(cfg_for("amortized", epochs=15), fashion).history
    floor = (fashion.x_train - fashion.x_train.mean(0)).square().mean().item()
    assert hist[-1]["mean_image_mse"] == pytest.approx(floor)
    assert hist[-1]["train_mse"] < 0.9 * floor
    assert hist[-1]["test_mse"] < 0.9 * floor
    assert hist[-1]["active_dims"] > 0 and hist[-1]["kl_z_per_datapoint"] > 1
    assert latents_unused(hist[-1]["train_mse"], floor, hist[-1]["active_dims"]) is None


def test_constant_family_is_flagged_as_collapsed(fashion):
    """One q for every image: no latent dimension varies across images, so none is active."""
    m = trained(cfg_for("constant", epochs=3), fashion).history[-1]
    assert m["active_dims"] == 0
    assert latents_unused(m["train_mse"], m["mean_image_mse"], m["active_dims"]).startswith("latents unused")


def _strip_time(hist):
    return [{k: v for k, v in m.items() if k not in TIME_KEYS} for m in hist]


@pytest.mark.parametrize("family", ["amortized", "factorized"])
def test_save_restore_continue_is_exact(fashion, tmp_path, family):
    cfg = cfg_for(family, epochs=6, lr_schedule="step3", mse_threshold=0.08)
    reference = trained(cfg, fashion)
    straight = reference.history
    first = Fit([SeedRun(cfg, fashion)])
    list(first.train(3))
    first.save(tmp_path / "state.pt")
    fit = Fit.restore(tmp_path / "state.pt", fashion)
    assert fit.epoch == 3
    list(fit.train())
    resumed = fit.runs[0]
    assert _strip_time(resumed.history) == _strip_time(straight)
    for a, b in zip(resumed.family.parameters(), reference.family.parameters(), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(resumed.decoder.log_sd, reference.decoder.log_sd)
    assert [m["epoch_lr"] for m in straight] == pytest.approx([3e-3] * 2 + [3e-4] * 2 + [3e-5] * 2)


def test_restore_refuses_a_truncated_state(fashion, tmp_path):
    t = Fit([SeedRun(cfg_for("constant", epochs=1), fashion)])
    t.save(tmp_path / "s.pt")
    blob = (tmp_path / "s.pt").read_bytes()
    (tmp_path / "s.pt").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="cannot read trial state .*s.pt"):
        Fit.restore(tmp_path / "s.pt", fashion)


def test_threshold_epoch_and_seconds_recorded(fashion):
    hist = trained(cfg_for("amortized", epochs=5, mse_threshold=0.5), fashion).history
    assert hist[0]["epochs_to_threshold"] == 1
    assert hist[-1]["epochs_to_threshold"] == 1
    assert hist[-1]["seconds_to_threshold"] == pytest.approx(hist[0]["opt_seconds"])


def test_eval_every_skips_mse_but_not_the_last_epoch(fashion):
    hist = trained(cfg_for("constant", epochs=5, eval_every=2), fashion).history
    assert [m["train_mse"] is not None for m in hist] == [False, True, False, True, True]


def test_non_finite_elbo_names_epoch_and_term():
    x = torch.rand(40, 784)
    x[7, 3] = float("nan")
    data = Data("fashion_mnist", x, torch.rand(10, 784), "test")
    cfg = TrialConfig(family="constant", n_train=40, n_test=10, batch_size=20, epochs=3)
    with pytest.raises(NonFiniteELBOError, match=r"non-finite at epoch 1: term loglik = nan"):
        trained(cfg, data)


def test_divergent_learning_rate_stops_the_run():
    torch.manual_seed(0)
    data = Data("fashion_mnist", torch.rand(40, 784), torch.rand(10, 784), "test")
    cfg = TrialConfig(family="amortized", width=8, n_train=40, n_test=10, batch_size=20,
                      epochs=50, lr=1e9, sigma_x=1e-3)
    with pytest.raises(NonFiniteELBOError, match=r"non-finite at epoch \d+: term \w+"):
        trained(cfg, data)


def test_trial_does_not_touch_global_rng(fashion):
    torch.manual_seed(123)
    want = torch.rand(3)
    torch.manual_seed(123)
    trained(cfg_for("amortized", epochs=1), fashion)
    assert torch.equal(torch.rand(3), want)


def test_seeds_differ_and_repeat(fashion):
    run = lambda s: [m["neg_elbo"] for m in trained(cfg_for("constant", epochs=2, seed=s), fashion).history]  # noqa: E731
    assert run(1) == run(1)
    assert run(1) != run(2)


def test_test_time_inference(fashion):
    amort = trained(cfg_for("amortized", epochs=3), fashion)
    qa = amort.infer_test()
    assert qa.steps == 0 and qa.q.point().shape == (200, 64) and math.isfinite(qa.elbo_per_datapoint)

    fvi = trained(cfg_for("factorized", epochs=3), fashion)
    q = fvi.infer_test(max_steps=400)
    assert 0 < q.steps <= 400 and q.seconds > qa.seconds
    prior_q = fvi.infer_test(max_steps=0)  # the starting point: every q_n at the prior
    assert q.elbo_per_datapoint > prior_q.elbo_per_datapoint + 10


VECTORIZED = {
    "amortized": ("amortized", {}),
    "factorized": ("factorized", {}),
    "constant": ("constant", {}),
    # clipped per seed: each seed's gradient norm its own, F-VI's dense table counted with its seed's
    "amortized, clipped": ("amortized", {"grad_clip": 0.5}),
    "dense factorized, clipped": ("factorized", {"grad_clip": 0.5, "family_options": {"optimizer": "dense"}}),
    "sa_vae, no steps": ("sa_vae", {"family_options": {"steps": 0}}),  # the amortized family exactly
    "flow": ("flow", {}),
}


@pytest.mark.parametrize("case", list(VECTORIZED))
def test_vectorized_seeds_match_separate_trials(fashion, case):
    """Stacked seeds: each seed's numbers are its lone run's, up to batched-matmul rounding."""
    import dataclasses

    from trainables.vectorized import Stacked

    family, settings = VECTORIZED[case]
    cfgs = [dataclasses.replace(cfg_for(family, epochs=3, eval_every=1, **settings), seed=s)
            for s in (0, 1, 2)]
    alone = [trained(c, fashion).history for c in cfgs]
    batch = list(Fit([SeedRun(c, fashion) for c in cfgs], Stacked).train())
    assert len(batch) == 3 and all(len(rows) == 3 for rows in batch)
    for s in range(3):
        for e in range(3):
            a, b = alone[s][e], batch[e][s]
            for key in ("neg_elbo", "loglik", "kl_z", "kl_theta", "train_mse"):
                assert b[key] == pytest.approx(a[key], rel=1e-5), (s, e, key)
            assert (a["test_mse"] is None) == (b["test_mse"] is None)
    assert batch[-1][0]["neg_elbo"] != batch[-1][1]["neg_elbo"]  # the seeds do differ


def test_vectorized_seeds_refuse_other_differences(fashion):
    from trainables.vectorized import Stacked

    runs = [SeedRun(cfg_for("constant", seed=0), fashion),
            SeedRun(cfg_for("constant", seed=1, lr=0.1), fashion)]
    with pytest.raises(ValueError, match="differ in their seeds only"):
        Fit(runs, Stacked)


def test_vectorized_save_restore_continue_is_exact(fashion, tmp_path):
    import dataclasses

    from trainables.vectorized import Stacked

    cfgs = [dataclasses.replace(cfg_for("amortized", epochs=4, lr_schedule="step3"), seed=s) for s in (3, 4)]
    straight = Fit([SeedRun(c, fashion) for c in cfgs], Stacked)
    list(straight.train())
    first = Fit([SeedRun(c, fashion) for c in cfgs], Stacked)
    list(first.train(2))
    first.save(tmp_path / "b.pt")
    resumed = Fit.from_state(checkpoint.load(tmp_path / "b.pt"), fashion, optim=Stacked)
    list(resumed.train())
    strip = lambda r: [{k: v for k, v in m.items() if k not in TIME_KEYS} for m in r.history]  # noqa: E731
    assert [strip(r) for r in resumed.runs] == [strip(r) for r in straight.runs]


def test_clipping_bounds_each_seeds_gradient_as_torch_does():
    from trainables.fit import clip_gradients

    g = torch.Generator().manual_seed(0)
    stacked = [torch.zeros(3, 4, 5, requires_grad=True), torch.zeros(3, 7, requires_grad=True)]
    own = [[torch.zeros(6, requires_grad=True)] for _ in range(3)]  # each seed's own table
    for p in stacked + [t for mine in own for t in mine]:
        p.grad = torch.randn(p.shape, generator=g) * 10
    want = []
    for s in range(3):  # each seed alone, through torch.nn.utils.clip_grad_norm_
        alone = [torch.zeros_like(p[s], requires_grad=True) for p in stacked] + [own[s][0].detach().clone()]
        for a, grad in zip(alone, [p.grad[s] for p in stacked] + [own[s][0].grad], strict=True):
            a.grad = grad.clone()
        torch.nn.utils.clip_grad_norm_(alone, 4.0)
        want.append([a.grad for a in alone])
    clip_gradients(stacked, 4.0, per_seed=own)
    for s in range(3):
        got = [p.grad[s] for p in stacked] + [own[s][0].grad]
        for a, b in zip(got, want[s], strict=True):
            torch.testing.assert_close(a, b)
        assert torch.cat([x.flatten() for x in got]).norm().item() == pytest.approx(4.0, rel=1e-5)


def test_a_trial_reads_its_version_2_checkpoint_and_refuses_a_batchs_state(fashion, tmp_path):
    """Version 2 states (a lone trial's flat, a vectorized batch's "seed_states") still resume
    exactly; a stacked batch's state does not resume with its seeds stepped separately."""
    import dataclasses

    from trainables.vectorized import Stacked

    cfg = cfg_for("amortized", epochs=4, lr_schedule="step3")
    straight = trained(cfg, fashion)
    first = Fit([SeedRun(cfg, fashion)])
    list(first.train(2))
    state = first.state_dict()
    flat = {"version": 2, **state["seeds"][0], "optimizers": state["optimizers"],
            "schedulers": state["schedulers"]}
    torch.save(flat, tmp_path / "v2.pt")
    resumed = Fit.restore(tmp_path / "v2.pt", fashion)
    list(resumed.train())
    strip = lambda h: [{k: v for k, v in m.items() if k not in TIME_KEYS} for m in h]  # noqa: E731
    assert strip(resumed.runs[0].history) == strip(straight.history)

    batch = Fit([SeedRun(dataclasses.replace(cfg, seed=s), fashion) for s in (0, 1)], Stacked)
    list(batch.train(1))
    state = batch.state_dict()
    torch.save({"version": 2, "seed_states": state["seeds"], "optimizers": state["optimizers"],
                "schedulers": state["schedulers"]}, tmp_path / "v2batch.pt")
    old = checkpoint.load(tmp_path / "v2batch.pt")
    assert [s["epoch"] for s in old["seeds"]] == [1, 1]
    Fit.from_state(old, fashion, optim=Stacked)
    with pytest.raises(ValueError, match="2 seeds and 1 optimizers is not this fit's .* under Separate"):
        Fit.from_state(old, fashion)


@pytest.mark.slow  # a cold Inductor compile
def test_compiled_elbo_matches_eager(fashion):
    """torch.compile path (CUDA graphs on GPUs): same numbers as eager, here on the CPU."""
    cfg = cfg_for("amortized", epochs=2)
    eager = [m["neg_elbo"] for m in trained(cfg, fashion).history]
    compiled = [m["neg_elbo"] for m in trained(cfg, fashion, compile=True).history]
    assert compiled == pytest.approx(eager, rel=1e-4)


def test_compile_refuses_a_family_that_refines_inside_the_objective(fashion):
    """SA-VAE's refinement differentiates twice, which torch.compile's autograd cannot (seen on a
    GPU: "does not currently support double backward"): the engine says so before any step."""
    with pytest.raises(ValueError, match="compile=True cannot train sa_vae: .* differentiates twice"):
        Fit([SeedRun(cfg_for("sa_vae"), fashion)], compile=True)
