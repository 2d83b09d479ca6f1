"""The fit loop: Adam over shuffled minibatches, per-epoch metrics, exact save and restore.

    trial = Trial(cfg, data, device)
    for metrics in trial.train():   # one dict per epoch
        ...
    trial.save(path); Trial.restore(path, data, device)  # continues bit for bit on CPU

``Loop`` is the loop itself: the epochs, the minibatches, the optimizers and learning-rate
schedules, gradient clipping and one state format. A ``Trial`` is a loop of one seed;
``vectorized.SeedBatch`` is a loop of several seeds of one configuration, each a ``Trial`` for its
model, streams and history, stepped together.
"""

from __future__ import annotations

import math
import os
import time
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import families
from .config import TrialConfig
from .data import Data
from .elbo import TERMS, draw_noise, elbo_terms, noise_rows
from .inference import InferredQ, infer
from .model import BayesianDecoder

STATE_VERSION = 3  # 3: one format for a trial and a batch of seeds; 2: F-VI's one (N, 2d) table


class NonFiniteELBOError(FloatingPointError):
    """The ELBO went NaN or infinite; the message names the epoch and the term."""


class Loop:
    """The training loop of ``trials``, seeds of one configuration trained side by side: subclasses
    build ``trials``, ``optimizers`` and ``schedulers`` and take one step (``_step``)."""

    cfg: TrialConfig
    device: torch.device
    trials: list[Trial]
    optimizers: list[torch.optim.Optimizer]
    schedulers: list[torch.optim.lr_scheduler.LRScheduler]

    def train_seeds(self, epochs: int | None = None) -> Iterator[list[dict[str, Any]]]:
        """Run up to ``epochs`` total (default cfg.epochs), yielding each epoch's metrics, a dict per seed."""
        until = self.cfg.epochs if epochs is None else epochs
        while self.trials[0].epoch < until:  # the seeds step together
            yield self.run_seeds_epoch()

    def run_seeds_epoch(self) -> list[dict[str, Any]]:
        cfg, n = self.cfg, self.cfg.n_train
        lr = self.optimizers[0].param_groups[0]["lr"]
        start = time.perf_counter()
        perms = torch.stack([t.permutation() for t in self.trials])  # (S, N): each seed's own stream
        sums = torch.zeros(len(self.trials), len(TERMS), device=self.device)
        for lo in range(0, n, cfg.batch_size):
            idx = perms[:, lo : lo + cfg.batch_size]  # (S, B)
            # weight |B|/N: equal batches give the plain mean of the minibatch estimates
            sums += self._step(idx) * (idx.shape[1] / n)
        for sched in self.schedulers:
            sched.step()
        values = sums.tolist()  # the epoch's one host read
        seconds = time.perf_counter() - start
        self._write_back()
        return [t.record_epoch(dict(zip(TERMS, v, strict=True)), lr, seconds)
                for t, v in zip(self.trials, values, strict=True)]

    def _step(self, idx: torch.Tensor) -> torch.Tensor:
        """One optimizer step on each seed's minibatch rows idx (S, B); its ELBO terms (S, 4)."""
        raise NotImplementedError

    def _write_back(self) -> None:
        """Before an epoch is recorded: each seed's Trial holds its current parameters."""

    def _update(self, objective: torch.Tensor, clip: list[list[torch.Tensor]] | None = None) -> None:
        """Minimize -``objective``: gradients, clipping (cfg.grad_clip; ``clip``: per seed, as
        ``clip_gradients``), and a step of every optimizer."""
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        (-objective).backward()
        if self.cfg.grad_clip is not None:
            clip_gradients(self.clip_parameters(), self.cfg.grad_clip * self.cfg.n_train, clip)
        for opt in self.optimizers:
            opt.step()

    def clip_parameters(self) -> list[torch.Tensor]:
        return dense_parameters(self.optimizers)

    # ---- state: one format, one seed or many ----------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "seeds": [t.seed_state() for t in self.trials],
            "optimizers": [o.state_dict() for o in self.optimizers],
            "schedulers": [s.state_dict() for s in self.schedulers],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for t, s in zip(self.trials, state["seeds"], strict=True):
            t.load_seed_state(s)
        self._read_back()
        for opt, s in zip(self.optimizers, state["optimizers"], strict=True):
            opt.load_state_dict(s)
        for sched, s in zip(self.schedulers, state["schedulers"], strict=True):
            sched.load_state_dict(s)

    def _read_back(self) -> None:
        """After a load: the loop's parameters from each seed's Trial."""

    def save(self, path: str | os.PathLike) -> None:
        save_state(self.state_dict(), path)


class Trial(Loop):
    """One run of one configuration: its data, decoder, family, optimizers, RNG and history."""

    def __init__(
        self, cfg: TrialConfig, data: Data, device: str | torch.device = "cpu", compile: bool = False
    ):
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
        self.trials = [self]
        self.optimizers = optimizers([self.decoder, self.family], cfg.lr)
        self.schedulers = [scheduler(opt, cfg) for opt in self.optimizers]
        self.generator = torch.Generator(self.device).manual_seed(cfg.seed)
        # compile: the ELBO's forward and backward through torch.compile; on CUDA with CUDA
        # graphs ("reduce-overhead"), since these small layers are bound by kernel launches
        mode = "reduce-overhead" if self.device.type == "cuda" else "default"
        self._elbo = torch.compile(elbo_terms, mode=mode) if compile else elbo_terms
        self.epoch = 0
        self.history: list[dict[str, Any]] = []
        self.opt_seconds = 0.0
        self.eval_seconds = 0.0
        self.threshold: tuple[int, float] | None = None  # (epoch, opt seconds) of first crossing

    # ---- training -------------------------------------------------------------------------
    def train(self, epochs: int | None = None) -> Iterator[dict[str, Any]]:
        """Run up to ``epochs`` total (default cfg.epochs), yielding each epoch's metrics."""
        for (metrics,) in self.train_seeds(epochs):
            yield metrics

    def run_epoch(self) -> dict[str, Any]:
        return self.run_seeds_epoch()[0]

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

    def _step(self, idx: torch.Tensor) -> torch.Tensor:
        cfg, idx = self.cfg, idx[0]  # one seed: its rows (B,)
        x = self.x_train[idx]  # (B, D)
        rows = noise_rows(cfg.latent_terms, cfg.objective, idx.numel(), cfg.n_train,
                          self.family.q_type.closed_form_kl)
        noise = draw_noise(self.decoder.num_params, rows, cfg.latent_dim, cfg.mc_samples, self.generator,
                           refine=self.family.refines)
        x_all = self.x_train if cfg.latent_terms == "all" else None
        terms = self._elbo(
            self.decoder, self.family, x, idx, cfg.n_train, cfg.sigma_x, noise, x_all, cfg.objective
        )
        self._update(terms.get("objective", terms["elbo"]))
        return torch.stack([terms[k].detach() for k in TERMS])[None]  # (1, 4), stays on device

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

    # ---- state ------------------------------------------------------------------------------
    def seed_state(self) -> dict[str, Any]:
        """This seed's part of a loop's state: all but the optimizers and schedules."""
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

    def load_seed_state(self, state: dict[str, Any]) -> None:
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
    def restore(cls, path: str | os.PathLike, data: Data, device: str | torch.device = "cpu") -> Trial:
        return cls.from_state(load_state(path, device), data, device)

    @classmethod
    def from_state(cls, state: dict[str, Any], data: Data, device: str | torch.device = "cpu") -> Trial:
        """The trial of a one-seed state, to continue it."""
        if len(state["seeds"]) != 1:
            raise ValueError(f"a state of {len(state['seeds'])} seeds is a SeedBatch's, not a Trial's")
        trial = cls.from_seed_state(state["seeds"][0], data, device)
        trial.load_state_dict(state)
        return trial

    @classmethod
    def from_seed_state(cls, seed: dict[str, Any], data: Data, device: str | torch.device = "cpu") -> Trial:
        """One seed of a state (a trial's, or one of a batch's), its model and history: to evaluate."""
        trial = cls(TrialConfig.from_dict(seed["config"]), data, device)
        trial.load_seed_state(seed)
        return trial


def save_state(state: dict[str, Any], path: str | os.PathLike) -> None:
    """Write a state atomically: a crash mid-write leaves the old file whole."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_state(
    path: str | os.PathLike | typing.BinaryIO, device: str | torch.device = "cpu", name: str | None = None
) -> dict[str, Any]:
    """A state written by ``Trial.save``, from a path or an open binary file."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # a truncated or foreign file: say which, not a pickle traceback
        raise ValueError(f"cannot read trial state {name or path}: {type(e).__name__}: {e}") from None
    if not isinstance(state, dict) or state.get("version") not in (2, STATE_VERSION):
        raise ValueError(f"cannot read trial state {name or path}: not a version 2 or {STATE_VERSION} state")
    return _from_version_2(state) if state["version"] == 2 else state


def _from_version_2(state: dict[str, Any]) -> dict[str, Any]:
    """A version 2 state (a Trial's, or a SeedBatch's "seed_states") in the one format of version 3."""
    loop = {"optimizers": state["optimizers"], "schedulers": state["schedulers"]}
    seeds = state.get("seed_states", [state])
    drop = {"version", "optimizers", "schedulers"}
    seeds = [{k: v for k, v in s.items() if k not in drop} for s in seeds]
    return {"version": STATE_VERSION, "seeds": seeds, **loop}


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
