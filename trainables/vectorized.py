"""Several seeds of one configuration trained at once, their matrix multiplies batched.

    fit = Fit([SeedRun(cfg_seed0, data), SeedRun(cfg_seed1, data), ...], Stacked)
    for per_seed in fit.train():      # one metrics dict per seed per epoch
        ...

Each seed keeps what a separate run has (its initial parameters, its shuffling and Monte Carlo
streams, drawn in the same order, its history and threshold timing: its ``fit.SeedRun``), so its
numbers are those of a separate run of that seed up to floating-point reassociation in the
batched matmuls. The one objective, ``elbo.elbo_terms``, is ``torch.func.vmap``-ed over a leading
seed dimension through ``functional_call`` on the seeds' stacked parameters (the Linear layers
become batched matmuls); Adam is elementwise, so one Adam over the stacked parameters is S
independent Adams. A per-datapoint family (F-VI) keeps each seed's own table and optimizer
outside the vmap (its rows are looked up per seed, so SparseAdam still moves only the
minibatch's rows).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from .config import TrialConfig
from .elbo import TERMS, Noise, draw_noise, elbo_terms, noise_rows
from .fit import SeedRun, dense_parameters, optimizers, update


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


class Stacked:
    """The seeds' parameters stacked (name -> (S, ...)) under one vmapped ELBO and one Adam; each
    seed's run gets its slice back before it evaluates or saves, as a lone run would."""

    def __init__(self, runs: list[SeedRun], compile: bool = False):
        first, family = runs[0].cfg, runs[0].family
        if compile:
            raise ValueError("vectorized seeds: compile applies to seeds stepped separately")
        if first.train_subset != "first":
            raise ValueError("vectorized seeds share their images: train_subset 'random' draws them per seed")
        if family.refines:  # autograd.grad inside vmap: torch.func would be needed
            raise ValueError(f"vectorized seeds: {first.family!r} refines q by autograd; vmap can't batch it")
        self.runs, self.cfg, self.device = runs, first, runs[0].device
        self.x_train = runs[0].x_train
        self.per_point = family.per_datapoint
        # a per-datapoint family: only the decoders are stacked; each seed's table stays its own
        modules = [_Objective(r.decoder, nn.Module() if self.per_point else r.family, first) for r in runs]
        self.params, _ = stack_module_state(modules)  # name -> (S, ...)
        self.stacked = list(self.params.values())
        self.base = copy.deepcopy(_Objective(runs[0].decoder, family, first)).to("meta")
        self.optimizers = [torch.optim.Adam(self.stacked, lr=first.lr, fused=True)]
        # a per-datapoint family: each seed's own table, its own optimizer
        self.own = [optimizers([r.family], first.lr) if self.per_point else [] for r in runs]
        self.optimizers += [o for opts in self.own for o in opts]
        # seeds share no parameter: each gets its own gradient, and is clipped on its own
        self.clipped = [dense_parameters(opts) for opts in self.own]

    def step(self, idx: torch.Tensor) -> torch.Tensor:
        """One optimizer step on each seed's minibatch rows idx (S, B); its ELBO terms (S, 4)."""
        cfg = self.cfg
        x = self.x_train[idx]  # (S, B, D)
        rows = noise_rows(cfg.latent_terms, cfg.objective, idx.shape[1], cfg.n_train,
                          self.runs[0].family.q_type.closed_form_kl)
        num_params = self.params["decoder.mean"].shape[1]
        noise = [  # each seed's draws from its own generator, in a separate run's order
            draw_noise(num_params, rows, cfg.latent_dim, cfg.mc_samples, r.generator) for r in self.runs
        ]
        eps_theta = torch.stack([nz.theta for nz in noise])  # (S, S_mc, P)
        eps_z = torch.stack([nz.z for nz in noise])  # (S, S_mc, R, d)
        x_all = self.x_train if cfg.latent_terms == "all" else None
        given = self._given(x, idx, x_all) if self.per_point else None

        def one_seed(params, x, idx, eps_theta, eps_z, given):
            return functional_call(self.base, params, (x, idx, x_all, eps_theta, eps_z, given))

        in_dims = (0, 0, 0, 0, 0, 0 if given is not None else None)
        terms = vmap(one_seed, in_dims=in_dims)(self.params, x, idx, eps_theta, eps_z, given)  # (S, 1 + 4)
        # the stacked parameters clipped per seed; the seeds' own tables are clip's per-seed lists
        update(self.optimizers, terms[:, 0].sum(), cfg, self.stacked, self.clipped)
        return terms[:, 1:].detach()  # (S, 4)

    def _given(self, x, idx, x_all) -> dict[str, torch.Tensor]:
        """Each seed's own per-datapoint q for the step's rows (all N with latent_terms "all"), stacked."""
        if x_all is not None:
            rows = torch.arange(self.cfg.n_train, device=self.device)
            qs = [r.family.q(x_all, rows) for r in self.runs]
        else:
            qs = [r.family.q(xs, ix) for r, xs, ix in zip(self.runs, x, idx, strict=True)]
        return {k: torch.stack([q.local()[k] for q in qs]) for k in qs[0].local()}

    def _own(self, run: SeedRun) -> dict[str, torch.Tensor]:
        """One seed's parameters, by the names of the stacked ones."""
        mine = {f"decoder.{k}": v for k, v in run.decoder.named_parameters()}
        if not self.per_point:
            mine.update({f"family.{k}": v for k, v in run.family.named_parameters()})
        return mine

    @torch.no_grad()
    def write_back(self) -> None:
        """Copy each seed's slice into its run, which evaluates and saves it as a lone run would."""
        for s, r in enumerate(self.runs):
            for name, p in self._own(r).items():
                p.copy_(self.params[name][s])

    @torch.no_grad()
    def read_back(self) -> None:
        """The stacked parameters from the seeds' own, after a load."""
        for name, p in self.params.items():
            p.copy_(torch.stack([self._own(r)[name] for r in self.runs]))
