"""Several seeds of one configuration trained at once, their matrix multiplies batched.

    batch = SeedBatch([cfg_seed0, cfg_seed1, ...], data, device)
    for rows in batch.train():        # one metrics dict per seed per epoch
        ...

Each seed keeps what a separate ``Trial`` has (its initial parameters, its shuffling and Monte
Carlo streams, drawn in the same order, its history and threshold timing), so its numbers are
those of a separate run of that seed up to floating-point reassociation in the batched matmuls.
The one objective, ``elbo.elbo_terms``, is ``torch.func.vmap``-ed over a leading seed dimension
through ``functional_call`` on the seeds' stacked parameters (the Linear layers become batched
matmuls); Adam is elementwise, so one Adam over the stacked parameters is S independent Adams.
A per-datapoint family (F-VI) keeps each seed's own table and optimizer outside the vmap (its
rows are looked up per seed, so SparseAdam still moves only the minibatch's rows).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from .config import TrialConfig
from .data import Data
from .elbo import TERMS, Noise, draw_noise, elbo_terms, noise_rows
from .fit import Loop, Trial, dense_parameters, optimizers, scheduler


class _Objective(nn.Module):
    """elbo_terms as a module's forward, so functional_call can swap in one seed's parameters."""

    def __init__(self, decoder: nn.Module, family: nn.Module, cfg: TrialConfig):
        super().__init__()
        self.decoder, self.family, self.cfg = decoder, family, cfg

    def forward(self, x, idx, x_all, eps_theta, eps_z, given: dict[str, torch.Tensor] | None):
        cfg = self.cfg
        family = _Given(self.family.q_type, given) if given is not None else self.family
        terms = elbo_terms(self.decoder, family, x, idx, cfg.n_train, cfg.sigma_x, Noise(eps_theta, eps_z),
                           x_all, cfg.objective)
        return torch.stack([terms.get("objective", terms["elbo"]), *(terms[k] for k in TERMS)])


class _Given:
    """A per-datapoint family's q, looked up outside the vmap: answers with what it was given."""

    def __init__(self, q_type: type, local: dict[str, torch.Tensor]):
        self.q_type, self.local = q_type, local

    def q(self, x, idx):
        return self.q_type.from_local(**self.local)


class SeedBatch(Loop):
    def __init__(self, cfgs: list[TrialConfig], data: Data, device: str | torch.device = "cpu"):
        first = cfgs[0]
        if len({c.seed for c in cfgs}) != len(cfgs) or any(
            dataclasses.replace(c, seed=first.seed) != first for c in cfgs
        ):
            raise ValueError("SeedBatch takes configs that differ in their seeds only, each seed once")
        if first.train_subset != "first":
            raise ValueError("vectorized seeds share their images: train_subset 'random' draws them per seed")
        self.cfg, self.device = first, torch.device(device)
        self.trials = [Trial(c, data, device) for c in cfgs]  # per-seed init, streams, histories
        family = self.trials[0].family
        if family.refines:  # autograd.grad inside vmap: torch.func would be needed
            raise ValueError(f"vectorized seeds: {first.family!r} refines q by autograd; vmap can't batch it")
        self.x_train = self.trials[0].x_train
        self.per_point = family.per_datapoint
        modules = [_Objective(t.decoder, t.family, first) for t in self.trials]
        if self.per_point:  # only the decoders are stacked; each seed's table stays its own
            modules = [_Objective(t.decoder, nn.Module(), first) for t in self.trials]
        self.params, _ = stack_module_state(modules)  # name -> (S, ...)
        self.base = copy.deepcopy(_Objective(self.trials[0].decoder, family, first)).to("meta")
        self.optimizers = [torch.optim.Adam(list(self.params.values()), lr=first.lr, fused=True)]
        # a per-datapoint family: each seed's own table, its own optimizer
        self.own_optimizers = [optimizers([t.family], first.lr) if self.per_point else []
                               for t in self.trials]
        self.optimizers += [o for opts in self.own_optimizers for o in opts]
        self.schedulers = [scheduler(o, first) for o in self.optimizers]

    @property
    def epoch(self) -> int:
        return self.trials[0].epoch

    @property
    def history(self) -> list[list[dict[str, Any]]]:
        """Per epoch, one metrics dict per seed."""
        return [list(rows) for rows in zip(*(t.history for t in self.trials), strict=True)]

    @classmethod
    def from_state(cls, state: dict[str, Any], data: Data, device: str | torch.device = "cpu") -> SeedBatch:
        batch = cls([TrialConfig.from_dict(s["config"]) for s in state["seeds"]], data, device)
        batch.load_state_dict(state)
        return batch

    def train(self, epochs: int | None = None):
        """Up to ``epochs`` total (default cfg.epochs), yielding each epoch's metrics, a dict per seed."""
        return self.train_seeds(epochs)

    def run_epoch(self) -> list[dict[str, Any]]:
        return self.run_seeds_epoch()

    def _step(self, idx: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        x = self.x_train[idx]  # (S, B, D)
        rows = noise_rows(cfg.latent_terms, cfg.objective, idx.shape[1], cfg.n_train,
                          self.trials[0].family.q_type.closed_form_kl)
        num_params = self.params["decoder.mean"].shape[1]
        noise = [  # each seed's draws from its own generator, in a separate trial's order
            draw_noise(num_params, rows, cfg.latent_dim, cfg.mc_samples, t.generator) for t in self.trials
        ]
        eps_theta = torch.stack([nz.theta for nz in noise])  # (S, S_mc, P)
        eps_z = torch.stack([nz.z for nz in noise])  # (S, S_mc, R, d)
        x_all = self.x_train if cfg.latent_terms == "all" else None
        given = self._given(x, idx, x_all) if self.per_point else None

        def one_seed(params, x, idx, eps_theta, eps_z, given):
            return functional_call(self.base, params, (x, idx, x_all, eps_theta, eps_z, given))

        in_dims = (0, 0, 0, 0, 0, 0 if given is not None else None)
        terms = vmap(one_seed, in_dims=in_dims)(self.params, x, idx, eps_theta, eps_z, given)  # (S, 1 + 4)
        # seeds share no parameter: each gets its own gradient, and is clipped on its own
        self._update(terms[:, 0].sum(), clip=[dense_parameters(opts) for opts in self.own_optimizers])
        return terms[:, 1:].detach()  # (S, 4)

    def clip_parameters(self) -> list[torch.Tensor]:
        return list(self.params.values())  # stacked; the seeds' own tables are clip's per-seed lists

    def _given(self, x, idx, x_all) -> dict[str, torch.Tensor]:
        """Each seed's own per-datapoint q for the step's rows (all N with latent_terms "all"), stacked."""
        if x_all is not None:
            rows = torch.arange(self.cfg.n_train, device=self.device)
            qs = [t.family.q(x_all, rows) for t in self.trials]
        else:
            qs = [t.family.q(xs, ix) for t, xs, ix in zip(self.trials, x, idx, strict=True)]
        return {k: torch.stack([q.local()[k] for q in qs]) for k in qs[0].local()}

    def _own(self, trial: Trial) -> dict[str, torch.Tensor]:
        """One seed's parameters, by the names of the stacked ones."""
        mine = {f"decoder.{k}": v for k, v in trial.decoder.named_parameters()}
        if not self.per_point:
            mine.update({f"family.{k}": v for k, v in trial.family.named_parameters()})
        return mine

    @torch.no_grad()
    def _write_back(self) -> None:
        """Copy each seed's slice into its Trial, which evaluates and saves it as a lone run would."""
        for s, t in enumerate(self.trials):
            for name, p in self._own(t).items():
                p.copy_(self.params[name][s])

    @torch.no_grad()
    def _read_back(self) -> None:
        """The stacked parameters from the seeds' own, after a load."""
        for name, p in self.params.items():
            p.copy_(torch.stack([self._own(t)[name] for t in self.trials]))
