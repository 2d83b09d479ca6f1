"""The fit loop: Adam over shuffled minibatches, per-epoch metrics, exact save and restore.

    fit = Fit([SeedRun(cfg, data, device)])      # one seed; several seeds of one config: a run each
    for per_seed in fit.train():                  # each epoch: a metrics dict per seed
        ...
    fit.save(path); Fit.restore(path, data, device)   # continues bit for bit on CPU

A ``SeedRun`` is one seed's record: its images on the device, decoder, family, random stream,
history and timings. ``Fit`` is the one loop, over a list of them: the epochs, the minibatches,
the learning-rate schedules and the saved state (its format: trainables/checkpoint.py). How a
step moves the seeds' parameters is its ``optim``: ``Separate`` (each seed's own ELBO, backward
and Adam), or ``vectorized.Stacked`` (the seeds' parameters stacked under one vmapped ELBO).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from . import checkpoint, families
from .config import TrialConfig
from .data import Data
from .elbo import TERMS, draw_noise, elbo_terms, noise_rows
from .inference import InferredQ, infer
from .model import BayesianDecoder


class NonFiniteELBOError(FloatingPointError):
    """The ELBO went NaN or infinite; the message names the epoch and the term."""


class SeedRun:
    """One seed of one configuration: its data, decoder, family, random stream, history and timings."""

    def __init__(self, cfg: TrialConfig, data: Data, device: str | torch.device = "cpu"):
        if data.x_train.shape[0] != cfg.n_train or data.x_test.shape[0] != cfg.n_test:
            raise ValueError(
                f"data has {data.x_train.shape[0]}/{data.x_test.shape[0]} train/test images; "
                f"config asks for {cfg.n_train}/{cfg.n_test}"
            )
        self.cfg, self.device = cfg, torch.device(device)
        self.x_train = data.x_train.to(self.device)  # (N, D), resident for the whole run
        self.x_test = data.x_test.to(self.device)  # (M, D)
        # the 'latents unused' floor: the MSE of decoding every image as the mean image
        self.mean_image_mse = (self.x_train - self.x_train.mean(0)).square().mean().item()
        with torch.random.fork_rng(devices=[]):  # seeded init without touching global RNG
            torch.manual_seed(cfg.seed)
            self.decoder = BayesianDecoder(
                cfg.latent_dim, cfg.hidden_dim, data.dim, cfg.slope, cfg.sigma_theta,
                cfg.theta_init,
            )
            self.family = families.build(cfg, cfg.n_train, data.dim)
        self.decoder.to(self.device)
        self.family.to(self.device)
        self.generator = torch.Generator(self.device).manual_seed(cfg.seed)
        self.epoch = 0
        self.history: list[dict[str, Any]] = []
        self.opt_seconds = 0.0
        self.eval_seconds = 0.0
        self.threshold: tuple[int, float] | None = None  # (epoch, opt seconds) of first crossing

    def permutation(self) -> torch.Tensor:
        """This epoch's order of the n_train rows: shuffled by the seed's stream, or fixed contiguous
        minibatches, as Margossian & Blei's code."""
        if self.cfg.shuffle:
            return torch.randperm(self.cfg.n_train, generator=self.generator, device=self.device)
        return torch.arange(self.cfg.n_train, device=self.device)

    def record_epoch(self, values: dict[str, float], lr: float, seconds: float) -> dict[str, Any]:
        """Close an epoch whose optimization gave the mean ``values`` of the ELBO terms."""
        self.opt_seconds += seconds
        self.epoch += 1
        _check_finite(self.epoch, values)
        metrics = {
            "epoch": self.epoch,
            "neg_elbo": -values["elbo"],
            "neg_elbo_per_datapoint": -values["elbo"] / self.cfg.n_train,
            "loglik": values["loglik"],
            "kl_z": values["kl_z"],
            "kl_z_per_datapoint": values["kl_z"] / self.cfg.n_train,
            "kl_theta": values["kl_theta"],
            "epoch_lr": lr,
            **self._evaluate(),
        }
        self.history.append(metrics)
        return metrics

    def _evaluate(self) -> dict[str, Any]:
        """Plug-in MSEs on eval epochs, timed apart from optimization."""
        cfg = self.cfg
        out: dict[str, Any] = {"train_mse": None, "test_mse": None, "active_dims": None}
        if self.epoch % cfg.eval_every == 0 or self.epoch == cfg.epochs:
            start = time.perf_counter()
            out["train_mse"], means = reconstruction(self.decoder, self.family, self.x_train, cfg.sigma_x)
            out["active_dims"] = active_dims(means)
            if self.family.has_test_time_q:  # F-VI has no q for unseen images (docs/science.md)
                out["test_mse"], _ = reconstruction(self.decoder, self.family, self.x_test, cfg.sigma_x)
            self.eval_seconds += time.perf_counter() - start
            if self.threshold is None and out["train_mse"] < cfg.mse_threshold:
                self.threshold = (self.epoch, self.opt_seconds)
        out["mean_image_mse"] = self.mean_image_mse
        out["opt_seconds"] = self.opt_seconds
        out["eval_seconds"] = self.eval_seconds
        out["epochs_to_threshold"] = self.threshold[0] if self.threshold else None
        out["seconds_to_threshold"] = self.threshold[1] if self.threshold else None
        return out

    def infer_test(self, **kwargs: Any) -> InferredQ:
        """Test-time q for the n_test images and its cost (see ``inference.infer``)."""
        # its own noise stream, so inference never shifts the training run's
        gen = torch.Generator(self.device).manual_seed(self.cfg.seed + 1_000_003)
        return infer(self.decoder, self.family, self.x_test, self.cfg.sigma_x, gen, **kwargs)

    def state_dict(self) -> dict[str, Any]:
        """This seed's part of a fit's state: all but the optimizers and schedules."""
        return {
            "config": self.cfg.to_dict(),
            "decoder": self.decoder.state_dict(),
            "family": self.family.state_dict(),
            "generator": self.generator.get_state(),
            "epoch": self.epoch,
            "history": self.history,
            "opt_seconds": self.opt_seconds,
            "eval_seconds": self.eval_seconds,
            "threshold": self.threshold,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # through TrialConfig: a state saved before a setting existed reads as its default
        if TrialConfig.from_dict(state["config"]) != self.cfg:
            raise ValueError("saved state belongs to a different config")
        self.decoder.load_state_dict(state["decoder"])
        self.family.load_state_dict(state["family"])
        self.generator.set_state(state["generator"].cpu())
        self.epoch = state["epoch"]
        self.history = list(state["history"])
        self.opt_seconds = state["opt_seconds"]
        self.eval_seconds = state["eval_seconds"]
        self.threshold = tuple(state["threshold"]) if state["threshold"] else None

    @classmethod
    def from_state(cls, state: dict[str, Any], data: Data, device: str | torch.device = "cpu") -> SeedRun:
        """One seed of a saved fit (``state["seeds"][i]``), its model and history: to evaluate."""
        run = cls(TrialConfig.from_dict(state["config"]), data, device)
        run.load_state_dict(state)
        return run


class Separate:
    """Each seed's parameters moved on their own: its ELBO, backward, clipping and Adam, as a lone
    run's. ``compile``: the ELBO's forward and backward through torch.compile; on CUDA with CUDA
    graphs ("reduce-overhead"), since these small layers are bound by kernel launches."""

    def __init__(self, runs: list[SeedRun], compile: bool = False):
        if compile and (twice := list(dict.fromkeys(r.cfg.family for r in runs if r.family.refines))):
            raise ValueError(f"compile=True cannot train {', '.join(twice)}: its q is refined inside the "
                             "objective, which differentiates twice, and torch.compile's autograd cannot "
                             "(train it eager)")
        self.runs = runs
        self.own = [optimizers([r.decoder, r.family], r.cfg.lr) for r in runs]
        self.optimizers = [o for opts in self.own for o in opts]
        self.clipped = [dense_parameters(opts) for opts in self.own]
        mode = "reduce-overhead" if runs[0].device.type == "cuda" else "default"
        self.elbo = torch.compile(elbo_terms, mode=mode) if compile else elbo_terms

    def step(self, idx: torch.Tensor) -> torch.Tensor:
        """One optimizer step on each seed's minibatch rows idx (S, B); its ELBO terms (S, 4)."""
        seeds = zip(self.runs, self.own, self.clipped, idx, strict=True)
        return torch.stack([self._step(*seed) for seed in seeds])

    def _step(self, run: SeedRun, opts: list, clipped: list, idx: torch.Tensor) -> torch.Tensor:
        cfg = run.cfg
        x = run.x_train[idx]  # (B, D)
        rows = noise_rows(cfg.latent_terms, cfg.objective, idx.numel(), cfg.n_train,
                          run.family.q_type.closed_form_kl)
        noise = draw_noise(run.decoder.num_params, rows, cfg.latent_dim, cfg.mc_samples, run.generator,
                           refine=run.family.refines)
        x_all = run.x_train if cfg.latent_terms == "all" else None
        terms = self.elbo(
            run.decoder, run.family, x, idx, cfg.n_train, cfg.sigma_x, noise, x_all, cfg.objective
        )
        update(opts, terms.get("objective", terms["elbo"]), cfg, clipped)
        return torch.stack([terms[k].detach() for k in TERMS])  # (4,), stays on device

    def write_back(self) -> None:
        """Each run holds its parameters itself: nothing to copy."""

    def read_back(self) -> None:
        """Each run holds its parameters itself: nothing to copy."""


class Fit:
    """The training loop of ``runs``, seeds of one configuration trained side by side, their
    parameters moved by ``optim`` (``Separate``, or ``vectorized.Stacked``)."""

    def __init__(self, runs: list[SeedRun], optim: type = Separate, compile: bool = False):
        first = runs[0].cfg
        if len({r.cfg.seed for r in runs}) != len(runs) or any(
            dataclasses.replace(r.cfg, seed=first.seed) != first for r in runs
        ):
            raise ValueError("a fit takes configs that differ in their seeds only, each seed once")
        self.runs, self.device = runs, runs[0].device
        self.optim = optim(runs, compile=compile)
        self.schedulers = [scheduler(opt, first) for opt in self.optim.optimizers]

    @property
    def cfg(self) -> TrialConfig:
        """The runs' configuration (the first's seed)."""
        return self.runs[0].cfg

    @property
    def epoch(self) -> int:
        return self.runs[0].epoch  # the seeds step together

    def train(self, epochs: int | None = None) -> Iterator[list[dict[str, Any]]]:
        """Run up to ``epochs`` total (default cfg.epochs), yielding each epoch's metrics, a dict per seed."""
        until = self.cfg.epochs if epochs is None else epochs
        while self.epoch < until:
            yield self.run_epoch()

    def run_epoch(self) -> list[dict[str, Any]]:
        cfg, n = self.cfg, self.cfg.n_train
        lr = self.optim.optimizers[0].param_groups[0]["lr"]
        start = time.perf_counter()
        perms = torch.stack([r.permutation() for r in self.runs])  # (S, N): each seed's own stream
        sums = torch.zeros(len(self.runs), len(TERMS), device=self.device)
        for lo in range(0, n, cfg.batch_size):
            idx = perms[:, lo : lo + cfg.batch_size]  # (S, B)
            # weight |B|/N: equal batches give the plain mean of the minibatch estimates
            sums += self.optim.step(idx) * (idx.shape[1] / n)
        for sched in self.schedulers:
            sched.step()
        values = sums.tolist()  # the epoch's one host read
        seconds = time.perf_counter() - start
        self.optim.write_back()
        return [r.record_epoch(dict(zip(TERMS, v, strict=True)), lr, seconds)
                for r, v in zip(self.runs, values, strict=True)]

    def state_dict(self) -> dict[str, Any]:
        return checkpoint.state(
            [r.state_dict() for r in self.runs],
            [o.state_dict() for o in self.optim.optimizers],
            [s.state_dict() for s in self.schedulers],
        )

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["optimizers"]) != len(self.optim.optimizers):
            raise ValueError(
                f"a state of {len(state['seeds'])} seeds and {len(state['optimizers'])} optimizers is not "
                f"this fit's ({len(self.optim.optimizers)} under {type(self.optim).__name__}): it resumes "
                "under the optim it was saved with"
            )
        for r, s in zip(self.runs, state["seeds"], strict=True):
            r.load_state_dict(s)
        self.optim.read_back()
        for opt, s in zip(self.optim.optimizers, state["optimizers"], strict=True):
            opt.load_state_dict(s)
        for sched, s in zip(self.schedulers, state["schedulers"], strict=True):
            sched.load_state_dict(s)

    def save(self, path: str | os.PathLike) -> None:
        checkpoint.save(self.state_dict(), path)

    @classmethod
    def from_state(
        cls, state: dict[str, Any], data: Data, device: str | torch.device = "cpu", optim: type = Separate
    ) -> Fit:
        """The fit of a state (``checkpoint.load``), to continue it under the optim it was saved with."""
        runs = [SeedRun(TrialConfig.from_dict(s["config"]), data, device) for s in state["seeds"]]
        fit = cls(runs, optim)
        fit.load_state_dict(state)
        return fit

    @classmethod
    def restore(
        cls, path: str | os.PathLike, data: Data, device: str | torch.device = "cpu", optim: type = Separate
    ) -> Fit:
        return cls.from_state(checkpoint.load(path, device), data, device, optim)


@torch.no_grad()
def reconstruction(
    decoder, family, x: torch.Tensor, sigma_x: float = 1.0, chunk: int = 4096
) -> tuple[float, torch.Tensor]:
    """Decode each q-mean of z (q.point()) with the q-mean of theta: (mean squared error over pixels
    and images, the q-means (n, d))."""
    total, means = torch.zeros((), device=x.device), []
    for lo in range(0, x.shape[0], chunk):
        xb = x[lo : lo + chunk]  # (C, D)
        idx = torch.arange(lo, lo + xb.shape[0], device=x.device)
        q = family.q(xb, idx)
        if family.refines:  # the refined q's mean, refined without noise (theta and z at their means)
            still = xb.new_zeros(1, *q.point().shape)
            q = family.refine(q, xb, decoder, decoder.mean[None], still, sigma_x)
        mean = q.point()  # (C, d)
        total += (decoder(mean, decoder.mean) - xb).square().sum()
        means.append(mean)
    return total.item() / x.numel(), torch.cat(means)


def active_dims(means: torch.Tensor, threshold: float = 0.01) -> int:
    """Latent dimensions whose q-mean varies across the images: Cov_x(E_q[z_d]) > 0.01 (Burda,
    Grosse & Salakhutdinov 2016). None active: the decoder ignores z, the latents collapsed."""
    return int((means.var(0, unbiased=False) > threshold).sum().item())


def optimizers(modules: list[nn.Module], lr: float) -> list[torch.optim.Optimizer]:
    """Adam for dense parameters; SparseAdam for sparse embedding tables (F-VI's rows)."""
    sparse = [
        m.weight for mod in modules for m in mod.modules()
        if isinstance(m, nn.Embedding) and m.sparse
    ]
    sparse_ids = {id(p) for p in sparse}
    dense = [p for mod in modules for p in mod.parameters() if id(p) not in sparse_ids]
    # fused: one kernel over all parameters instead of a dozen passes (CPU and CUDA, torch >= 2.4)
    opts: list[torch.optim.Optimizer] = [torch.optim.Adam(dense, lr=lr, fused=True)] if dense else []
    if sparse:
        opts.append(torch.optim.SparseAdam(sparse, lr=lr))
    return opts


def update(
    optimizers: list[torch.optim.Optimizer], objective: torch.Tensor, cfg: TrialConfig,
    clipped: list[torch.Tensor], per_seed: list[list[torch.Tensor]] | None = None,
) -> None:
    """Minimize -``objective``: gradients, clipping of ``clipped`` (cfg.grad_clip; ``per_seed``: as
    ``clip_gradients``), and a step of every optimizer."""
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    (-objective).backward()
    if cfg.grad_clip is not None:
        clip_gradients(clipped, cfg.grad_clip * cfg.n_train, per_seed)
    for opt in optimizers:
        opt.step()


def dense_parameters(optimizers: list[torch.optim.Optimizer]) -> list[torch.Tensor]:
    """The parameters of the dense optimizers: all but F-VI's sparse table."""
    return [p for o in optimizers if not isinstance(o, torch.optim.SparseAdam)
            for group in o.param_groups for p in group["params"]]


def clip_gradients(
    params: list[torch.Tensor], max_norm: float, per_seed: list[list[torch.Tensor]] | None = None
) -> None:
    """Scale the gradients of ``params`` so their joint norm is at most ``max_norm``, as
    torch.nn.utils.clip_grad_norm_ does. ``per_seed`` (one list per seed of a vectorized batch):
    each parameter's first dimension is a seed, each seed's own further parameters are listed,
    and each seed's gradients are clipped on their own, as in a separate run."""
    if per_seed is None:
        torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)
        return
    grads = [p.grad for p in params if p.grad is not None]
    squares = torch.stack([g.flatten(1).square().sum(1) for g in grads]).sum(0)  # (S,)
    own = [[p.grad for p in mine if p.grad is not None] for mine in per_seed]
    if any(own):
        squares = squares + torch.stack([sum(g.square().sum() for g in mine) for mine in own])
    coef = (max_norm / (squares.sqrt() + 1e-6)).clamp(max=1.0)  # torch's own formula, per seed
    for g in grads:
        g.mul_(coef.view(-1, *[1] * (g.ndim - 1)))
    for c, mine in zip(coef, own, strict=True):
        for g in mine:
            g.mul_(c)


def scheduler(opt: torch.optim.Optimizer, cfg: TrialConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """Margossian & Blei's three-phase decay (x0.1 at each third of the epochs), or constant."""
    thirds = [cfg.epochs // 3, 2 * cfg.epochs // 3] if cfg.lr_schedule == "step3" else []
    return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=thirds, gamma=0.1)


def _check_finite(epoch: int, values: dict[str, float]) -> None:
    for name in ("loglik", "kl_z", "kl_theta", "elbo"):
        if not math.isfinite(values[name]):
            raise NonFiniteELBOError(
                f"ELBO went non-finite at epoch {epoch}: term {name} = {values[name]}"
            )
