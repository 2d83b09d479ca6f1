"""Several seeds of one configuration trained at once, their matrix multiplies batched.

    batch = SeedBatch([cfg_seed0, cfg_seed1, ...], data, device)
    for rows in batch.train():        # one metrics dict per seed per epoch
        ...

Each seed keeps what a separate ``Trial`` has (its initial parameters, its shuffling and Monte
Carlo streams, drawn in the same order, its history and threshold timing), so its numbers are
those of a separate run of that seed up to floating-point reassociation in the batched matmuls.
The per-seed ELBO is ``torch.func.vmap``-ed over a leading seed dimension (the decoder's and
encoder's Linear layers become batched matmuls); Adam is elementwise, so one Adam over the
stacked parameters is S independent Adams. F-VI's S tables are one sparse (S*N, 2d) table.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from .config import TrialConfig
from .data import Data
from .elbo import TERMS, draw_noise, z_terms
from .fit import STATE_VERSION, Trial, _scheduler, save_state
from .model import sample_theta, theta_kl


class SeedBatch:
    def __init__(self, cfgs: list[TrialConfig], data: Data, device: str | torch.device = "cpu"):
        first = cfgs[0]
        if len({c.seed for c in cfgs}) != len(cfgs) or any(
            dataclasses.replace(c, seed=first.seed) != first for c in cfgs
        ):
            raise ValueError("SeedBatch takes configs that differ in their seeds only, each seed once")
        unsupported = {
            "latent_terms": first.latent_terms != "minibatch",
            "objective": first.objective != "elbo",
            "train_subset": first.train_subset != "first",  # each seed would draw its own images
            "family_options.optimizer": first.family_options.get("optimizer", "sparse") != "sparse",
        }
        if any(unsupported.values()):
            bad = ", ".join(k for k, v in unsupported.items() if v)
            raise ValueError(f"vectorized seeds support the default {bad} only; train the seeds apart")
        self.cfg, self.device = first, torch.device(device)
        self.trials = [Trial(c, data, device) for c in cfgs]  # per-seed init, streams, histories
        self.x_train = self.trials[0].x_train
        self.decoder = self.trials[0].decoder  # its forward(z, theta) is reused under vmap
        self.dec_mean = nn.Parameter(torch.stack([t.decoder.mean.detach() for t in self.trials]))  # (S, P)
        self.dec_log_sd = nn.Parameter(torch.stack([t.decoder.log_sd.detach() for t in self.trials]))
        dense = [self.dec_mean, self.dec_log_sd]
        if first.family == "factorized":
            self.table = nn.Embedding(len(cfgs) * first.n_train, 2 * first.latent_dim, sparse=True)
            with torch.no_grad():
                self.table.weight.copy_(torch.cat([t.family.table.weight for t in self.trials]))
            self.table.to(self.device)
        else:
            self.fam_params, _ = stack_module_state([t.family for t in self.trials])  # name -> (S, ...)
            self.fam_base = copy.deepcopy(self.trials[0].family).to("meta")
            dense += list(self.fam_params.values())
        self.optimizers: list[torch.optim.Optimizer] = [torch.optim.Adam(dense, lr=first.lr, fused=True)]
        if first.family == "factorized":
            self.optimizers.append(torch.optim.SparseAdam([self.table.weight], lr=first.lr))
        self.schedulers = [_scheduler(o, first) for o in self.optimizers]

    @property
    def epoch(self) -> int:
        return self.trials[0].epoch

    @property
    def history(self) -> list[list[dict[str, Any]]]:
        """Per epoch, one metrics dict per seed."""
        return [list(rows) for rows in zip(*(t.history for t in self.trials), strict=True)]

    def state_dict(self) -> dict[str, Any]:
        """Each seed's own Trial state (parameters written back), plus the batch's optimizers."""
        return {
            "version": STATE_VERSION,
            "seed_states": [t.state_dict() for t in self.trials],
            "optimizers": [o.state_dict() for o in self.optimizers],
            "schedulers": [s.state_dict() for s in self.schedulers],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for t, s in zip(self.trials, state["seed_states"], strict=True):
            t.load_state_dict(s)
        with torch.no_grad():  # the stacked parameters from the seeds' own
            self.dec_mean.copy_(torch.stack([t.decoder.mean for t in self.trials]))
            self.dec_log_sd.copy_(torch.stack([t.decoder.log_sd for t in self.trials]))
            if self.cfg.family == "factorized":
                self.table.weight.copy_(torch.cat([t.family.table.weight for t in self.trials]))
            else:
                for name, p in self.fam_params.items():
                    p.copy_(torch.stack([dict(t.family.named_parameters())[name] for t in self.trials]))
        for opt, s in zip(self.optimizers, state["optimizers"], strict=True):
            opt.load_state_dict(s)
        for sched, s in zip(self.schedulers, state["schedulers"], strict=True):
            sched.load_state_dict(s)

    def save(self, path) -> None:
        save_state(self.state_dict(), path)

    @classmethod
    def from_state(cls, state: dict[str, Any], data: Data, device: str | torch.device = "cpu") -> SeedBatch:
        cfgs = [TrialConfig.from_dict(s["config"]) for s in state["seed_states"]]
        batch = cls(cfgs, data, device)
        batch.load_state_dict(state)
        return batch

    def train(self, epochs: int | None = None) -> Iterator[list[dict[str, Any]]]:
        until = self.cfg.epochs if epochs is None else epochs
        while self.epoch < until:
            yield self.run_epoch()

    def run_epoch(self) -> list[dict[str, Any]]:
        n, b = self.cfg.n_train, self.cfg.batch_size
        lr = self.optimizers[0].param_groups[0]["lr"]
        start = time.perf_counter()
        perms = torch.stack(  # (S, N): each seed shuffles with its own stream, as alone
            [torch.randperm(n, generator=t.generator, device=self.device) for t in self.trials]
        )
        sums = torch.zeros(len(self.trials), len(TERMS), device=self.device)
        for lo in range(0, n, b):
            idx = perms[:, lo : lo + b]  # (S, B)
            sums += self._step(idx) * (idx.shape[1] / n)
        for sched in self.schedulers:
            sched.step()
        values = sums.tolist()  # the epoch's one host read
        seconds = time.perf_counter() - start
        self._write_back()
        return [
            t.record_epoch(dict(zip(TERMS, v, strict=True)), lr, seconds)
            for t, v in zip(self.trials, values, strict=True)
        ]

    def _q(self, x: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q's mean and log-variance for every seed's minibatch, each (S, B, d)."""
        if self.cfg.family == "factorized":
            offsets = torch.arange(len(self.trials), device=self.device)[:, None] * self.cfg.n_train
            return self.table(idx + offsets).chunk(2, dim=-1)
        call = lambda p, xs, ix: functional_call(self.fam_base, p, (xs, ix))  # noqa: E731
        return vmap(call)(self.fam_params, x, idx)

    def _seed_terms(self, mean, log_sd, x, q_mean, q_logvar, eps_theta, eps_z) -> torch.Tensor:
        """One seed's ELBO terms in TERMS order, (4,); vmapped over seeds."""
        thetas = sample_theta(mean, log_sd, eps_theta)  # (S_mc, P)
        loglik, kl_z = z_terms(self.decoder, thetas, x, q_mean, q_logvar, eps_z, self.cfg.sigma_x)
        scale = self.cfg.n_train / x.shape[0]
        ll, kz = scale * loglik.sum(), scale * kl_z.sum()
        kt = theta_kl(mean, log_sd, self.cfg.sigma_theta)
        return torch.stack([ll - kz - kt, ll, kz, kt])

    def _step(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.x_train[idx]  # (S, B, D)
        cfg = self.cfg
        noise = [  # each seed's draws from its own generator, in a separate trial's order
            draw_noise(self.dec_mean.shape[1], idx.shape[1], cfg.latent_dim, cfg.mc_samples, t.generator)
            for t in self.trials
        ]
        eps_theta = torch.stack([nz.theta for nz in noise])  # (S, S_mc, P)
        eps_z = torch.stack([nz.z for nz in noise])  # (S, S_mc, B, d)
        q_mean, q_logvar = self._q(x, idx)
        terms = vmap(self._seed_terms)(self.dec_mean, self.dec_log_sd, x, q_mean, q_logvar, eps_theta, eps_z)
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        (-terms[:, 0].sum()).backward()  # seeds share no parameter: each gets its own gradient
        for opt in self.optimizers:
            opt.step()
        return terms.detach()  # (S, 4)

    @torch.no_grad()
    def _write_back(self) -> None:
        """Copy each seed's slice into its Trial, which evaluates and saves it as a lone run would."""
        n = self.cfg.n_train
        for s, t in enumerate(self.trials):
            t.decoder.mean.copy_(self.dec_mean[s])
            t.decoder.log_sd.copy_(self.dec_log_sd[s])
            if self.cfg.family == "factorized":
                t.family.table.weight.copy_(self.table.weight[s * n : (s + 1) * n])
            else:
                for name, p in t.family.named_parameters():
                    p.copy_(self.fam_params[name][s])
