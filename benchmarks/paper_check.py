"""The paper-scale ablation: which of Margossian & Blei's settings decides whether F-VI learns.

Single-seed A-VI k=64 and F-VI at their scale (Fashion-MNIST, N = 10,000, minibatch 1,000,
sigma_x 0.7071, Adam 1e-3), one run per (setting combination, family), each in its own process
with one torch thread. Prints, at every 250 epochs, each run's train MSE and KL(q(z)) per image
beside their ten seeds' range (analysis/reference), and the mean-image MSE (the 'latents
unused' floor). Runs are resumable: each keeps its per-epoch log and a checkpoint every 250
epochs under --out; a finished run is not re-run.

    python benchmarks/paper_check.py --epochs 2000 --jobs 2 --out results/paper_check
    python benchmarks/paper_check.py --runs mb2024/factorized theta-torch/factorized --epochs 2000
    python benchmarks/paper_check.py --table --out results/paper_check     # print what is there
    python benchmarks/paper_check.py --table --brief --figures docs/paper  # + DIR/paper_check.md
    python benchmarks/paper_check.py --list                                # the combinations
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BASE = dict(dataset="fashion_mnist", n_train=10_000, n_test=10_000, batch_size=1_000, sigma_x=0.7071,
            theta_init="paper", lr=1e-3, seed=0)


def from_spec(name: str) -> dict:
    """A shipped spec's settings: its `train` and its `family_options` (per family)."""
    from sweep.specfile import load_spec

    spec = load_spec(ROOT / "sweep" / "specs" / f"{name}.yaml")
    return {**spec.train, "family_options": spec.family_options}


MB2024 = from_spec("mb2024")  # everything their vae.ipynb does (docs/science.md, "Margossian & Blei's runs")
COMBOS: dict[str, tuple[str, dict]] = {
    "shipped": ("the defaults: q(theta) at the paper start, F-VI at the prior, sparse rows", {}),
    "fvi-random": ("F-VI at their random start, sparse rows",
                   {"family_options": {"factorized": {"init": "random"}}}),
    "fvi-random-dense": ("F-VI at their random start, dense Adam",
                         {"family_options": {"factorized": {"init": "random", "optimizer": "dense"}}}),
    "fvi-random-dense-all": ("F-VI at their start, dense Adam, every row's prior and entropy each step",
                             {"family_options": {"factorized": {"init": "random", "optimizer": "dense"}},
                              "latent_terms": "all"}),
    "mb2024": ("their code (mb2024.yaml): all of the above, their log q, theta prior sd 0.7071, log-sd "
               "spreads, fixed batches, random subset", MB2024),
    "mb2024-elbo": ("their code but the true ELBO as objective", {**MB2024, "objective": "elbo"}),
    "mb2024-logvar": ("their code but spreads held as log-variances", {**MB2024, "spread_param": "logvar"}),
    "paper": ("paper.yaml: the true ELBO, with the settings under which F-VI learns", from_spec("paper")),
    "mb2024-torch": ("their code but q(theta) started like nn.Linear", {**MB2024, "theta_init": "torch"}),
    "paper-dense": ("paper.yaml but F-VI's rows moved by dense Adam at every step",
                    {**from_spec("paper"), "family_options": {"factorized": {"optimizer": "dense"}}}),
    "paper-dense-all": ("paper.yaml, F-VI with dense Adam and every row's prior and entropy each step",
                        {**from_spec("paper"), "latent_terms": "all",
                         "family_options": {"factorized": {"optimizer": "dense"}}}),
}
FAMILIES = {"amortized": {"family": "amortized", "width": 64}, "factorized": {"family": "factorized"}}
DEFAULT_RUNS = [
    "mb2024/amortized", "paper/amortized", "mb2024/factorized", "mb2024-elbo/factorized",
    "mb2024-logvar/factorized", "fvi-random-dense-all/factorized", "fvi-random-dense/factorized",
    "fvi-random/factorized", "shipped/factorized", "paper/factorized",
    "paper-dense-all/factorized",
]
EVERY = 250


def trial_config(run: str, epochs: int, eval_every: int):
    from trainables import TrialConfig

    combo, family = run.split("/")
    settings = {**BASE, **COMBOS[combo][1], **FAMILIES[family], "epochs": epochs, "eval_every": eval_every}
    per_family = settings.pop("family_options", {})
    settings["family_options"] = per_family.get(family, {})
    return TrialConfig(**settings)


def run_one(args: tuple[str, int, int, str]) -> str:
    """Train one run to ``epochs``, appending each evaluated epoch to OUT/<run>.jsonl."""
    run, epochs, eval_every, out = args
    import torch

    from trainables import Fit, SeedRun
    from trainables.data import load_for

    torch.set_num_threads(1)
    cfg = trial_config(run, epochs, eval_every)
    stem = Path(out) / run.replace("/", "__")
    log, state = stem.with_suffix(".jsonl"), stem.with_suffix(".pt")
    data = load_for(cfg)
    if state.exists():
        fit = Fit.restore(state, data)
        saved = {**fit.cfg.to_dict(), "epochs": epochs}
        if saved != cfg.to_dict():
            differ = [k for k, v in cfg.to_dict().items() if saved[k] != v]
            raise SystemExit(f"{state} was trained with other {', '.join(differ)}; move it away")
        fit.runs[0].cfg = cfg  # a longer --epochs: the same run, continued
    else:
        fit = Fit([SeedRun(cfg, data)])
    kept = [r for r in _rows(log) if r["epoch"] <= fit.epoch]  # drop what came after the checkpoint
    log.write_text("".join(json.dumps(r) + "\n" for r in kept))
    with open(log, "a") as f:
        for (m,) in fit.train():
            if m["train_mse"] is not None:
                keys = ("epoch", "train_mse", "test_mse", "kl_z_per_datapoint", "active_dims",
                        "neg_elbo_per_datapoint", "mean_image_mse", "opt_seconds")
                f.write(json.dumps({k: m[k] for k in keys}) + "\n")
                f.flush()
            if m["epoch"] % EVERY == 0 or m["epoch"] == epochs:
                fit.save(state)
    return run


def _rows(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def table(out: Path, runs: list[str], epochs: int, brief: bool = False) -> str:
    from analysis.reference import load_reference, their_band

    ref = load_reference()
    checks = list(range(EVERY, epochs + 1, EVERY))
    head = "| run | " + " | ".join(str(e) for e in checks) + " |"
    lines = [head, "|---" * (len(checks) + 1) + "|"]
    floor = None
    for family in FAMILIES:
        variant = "k=64" if family == "amortized" else "factorized"
        bands = [their_band(ref, variant, e) for e in checks]
        lines.append(f"| **theirs, {variant}** (10 seeds) | "
                     + " | ".join(f"{a:.4f}-{b:.4f}" for a, b in bands) + " |")
        for run in [r for r in runs if r.endswith("/" + family)]:
            by_epoch = {r["epoch"]: r for r in _rows(out / (run.replace("/", "__") + ".jsonl"))}
            cells = []
            for e in checks:
                r = by_epoch.get(e)
                cells.append("" if r is None else f"{r['train_mse']:.4f} ({r['kl_z_per_datapoint']:.1f})")
                floor = floor or (r and r["mean_image_mse"])
            label = run if brief else f"{run}: {COMBOS[run.split('/')[0]][0]}"
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    floor = floor or float("nan")
    note = f"\ntrain MSE (KL(q(z)) nats per image); mean-image MSE (latents unused): {floor:.4f}"
    return "\n".join(lines) + note


def figures(out: Path, runs: list[str], where: Path) -> list[Path]:
    """Per setting combination: its runs' train MSE over Margossian & Blei's published band
    (analysis.figures.against_reference), as where/<combo>_reference.png."""
    import pandas as pd

    from analysis.figures import against_reference
    from analysis.load import with_variant

    where.mkdir(parents=True, exist_ok=True)
    made = []
    for combo in dict.fromkeys(r.split("/")[0] for r in runs):
        rows = []
        for run in [r for r in runs if r.startswith(combo + "/")]:
            cfg = trial_config(run, 1, 1)
            for r in _rows(out / (run.replace("/", "__") + ".jsonl")):
                rows.append({**r, "trial_id": run, "status": "TERMINATED", "family": cfg.family,
                             "width": cfg.width, "seed": cfg.seed, "dataset": cfg.dataset,
                             "n_train": cfg.n_train, "batch_size": cfg.batch_size, "sigma_x": cfg.sigma_x,
                             "epochs": r["epoch"]})
        if rows:
            table = with_variant(pd.DataFrame(rows).astype({"width": "Int64"}))
            table["epochs"] = table.epoch.max()
            made += against_reference(table, where, f"{combo}_reference")[:1]
    return made


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=2000)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--jobs", type=int, default=2, help="runs at once, one thread each")
    p.add_argument("--out", default="results/paper_check")
    p.add_argument("--runs", nargs="+", default=DEFAULT_RUNS, metavar="COMBO/FAMILY")
    p.add_argument("--table", action="store_true", help="only print the table of what is there")
    p.add_argument("--list", action="store_true", help="list the setting combinations")
    p.add_argument("--figures", metavar="DIR",
                   help="also draw each combination's runs over their band; write the table to "
                        "DIR/paper_check.md")
    p.add_argument("--brief", action="store_true", help="rows named COMBO/FAMILY only (--list says what)")
    args = p.parse_args()
    if args.list:
        for name, (what, settings) in COMBOS.items():
            print(f"{name:24s} {what}\n{'':24s} {settings}")
        return 0
    bad = [r for r in args.runs if r.count("/") != 1 or r.split("/")[0] not in COMBOS
           or r.split("/")[1] not in FAMILIES]
    if bad:
        print(f"paper_check: error: --runs {bad}: each must be COMBO/FAMILY with COMBO one of "
              f"{', '.join(COMBOS)} and FAMILY one of {', '.join(FAMILIES)}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.table:
        todo = [(r, args.epochs, args.eval_every, str(out)) for r in args.runs]
        with mp.get_context("spawn").Pool(args.jobs) as pool:
            for done in pool.imap_unordered(run_one, todo):
                print(f"finished {done}", flush=True)
    text = table(out, args.runs, args.epochs, args.brief)
    print(text)
    if args.figures:  # the table beside the figures, for the docs (docs/paper/paper_check.md)
        Path(args.figures).mkdir(parents=True, exist_ok=True)
        (Path(args.figures) / "paper_check.md").write_text(text + "\n")
        print(f"table: {Path(args.figures) / 'paper_check.md'}")
    for path in figures(out, args.runs, Path(args.figures)) if args.figures else []:
        print(f"figure: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
