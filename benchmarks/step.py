"""The ELBO step at the paper's sizes: speed, FLOPs, and the projected cost of whole sweeps.

    python benchmarks/step.py                       # this machine's CPU, all its cores
    python benchmarks/step.py --device cuda         # the GPU
    python benchmarks/step.py --threads 1 --epochs 2

For each family (amortized k = 1, 64, 256; full-covariance and SA-VAE k = 64; factorized;
constant) at N = 10,000, minibatch 1,000,
d = 64, H = 256, D = 784 it prints optimization steps per second, seconds per epoch, FLOPs per
step counted from the layer shapes (forward and backward), the achieved FLOP rate, and that rate
as a fraction of this machine's float32 matmul rate at the step's largest layer shape, measured
in the same run. Then several seeds trained as one vectorized batch (trainables.vectorized)
against the same seeds one after another, and the projected hours of optimization of every spec in
sweep/specs/ here. --json PATH writes every figure printed, the machine and the command line.
Synthetic [0, 1] images: the cost does not depend on the pixel values.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sweep.specfile import load_spec  # noqa: E402
from trainables import Data, Fit, SeedRun, TrialConfig, families  # noqa: E402
from trainables.data import DATA_DIM  # noqa: E402
from trainables.vectorized import Stacked  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = [("amortized", 1), ("amortized", 64), ("amortized", 256), ("fullcov", 64), ("flow", 64),
            ("sa_vae", 64), ("factorized", None), ("constant", None)]


def step_flops(cfg: TrialConfig, batch: int, d: int, h: int, D: int) -> float:
    """Matmul FLOPs of one step, from the layer shapes: forward 2*m*n*k per layer; backward twice
    that, except that no gradient flows into the images (an encoder's first layer backward is
    weights only). The family's layers are read off a model built on the meta device. A family
    that refines q (SA-VAE, K steps) adds K + 1 decoder passes forward and K backward, and the
    backward through them: counted as 6 K decoder forwards, an estimate. A flow's coupling layers
    are parameters, not Linear layers: counted from their shapes."""
    dec = 2 * batch * (d * h + h * h + h * D)  # forward of the decoder
    total = 3 * dec
    with torch.device("meta"):
        family = families.build(cfg, cfg.n_train, D)
    for i, layer in enumerate(m for m in family.modules() if isinstance(m, torch.nn.Linear)):
        forward = 2 * batch * layer.in_features * layer.out_features
        total += forward * (2 if i == 0 else 3)
    if isinstance(family, families.Flow):  # its coupling layers: (d, H) and (H, 2d) per layer and draw
        total += 3 * 2 * batch * (family.w_in[0].numel() + family.w_out[0].numel()) * family.layers
    if family.refines:
        total += 6 * cfg.family_options["steps"] * dec
    return float(total)


def matmul_rate(device: torch.device, m: int, k: int, n: int, seconds: float = 1.0) -> float:
    """float32 FLOP/s of torch.matmul on an (m, k) x (k, n) product on this device."""
    a, b = torch.rand(m, k, device=device), torch.rand(k, n, device=device)
    for _ in range(3):
        a @ b
    _sync(device)
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(10):
            a @ b
        reps += 10
        _sync(device)
    return 2 * m * k * n * reps / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def synthetic(cfg: TrialConfig) -> Data:
    """Uniform [0, 1] images of the dataset's shape: the cost does not depend on pixel values."""
    gen = torch.Generator().manual_seed(0)
    D = DATA_DIM[cfg.dataset]
    return Data(
        cfg.dataset,
        torch.rand(cfg.n_train, D, generator=gen),
        torch.rand(cfg.n_test, D, generator=gen),
        "synthetic",
    )


def timed_epochs(fit: Fit, epochs: int) -> float:
    """Seconds of optimization per epoch of a fit, after one warm-up epoch (which also compiles,
    with --compile); evaluation is excluded by the engine's own clock."""
    clock = fit.runs[0]
    fit.run_epoch()
    before = clock.opt_seconds
    for _ in range(epochs):
        fit.run_epoch()
    return (clock.opt_seconds - before) / epochs


def epoch_seconds(cfg: TrialConfig, device: torch.device, epochs: int, compile: bool = False) -> float:
    """One seed's run of ``cfg``."""
    return timed_epochs(Fit([SeedRun(cfg, synthetic(cfg), device)], compile=compile), epochs)


def stacked_epoch_seconds(cfg: TrialConfig, seeds: int, device: torch.device, epochs: int) -> float:
    """All ``seeds`` trained together, stacked (trainables.vectorized.Stacked)."""
    data = synthetic(cfg)
    runs = [SeedRun(dataclasses.replace(cfg, seed=s), data, device) for s in range(seeds)]
    return timed_epochs(Fit(runs, Stacked), epochs)


def bench_config(family, width, **kw) -> TrialConfig:
    return TrialConfig(family=family, width=width, n_test=100, eval_every=10_000, epochs=10_000, **kw)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--epochs", type=int, default=3, help="timed epochs per configuration")
    p.add_argument("--no-projection", action="store_true", help="skip the sweep projections")
    p.add_argument("--compile", action="store_true", help="torch.compile the ELBO (CUDA graphs on cuda)")
    p.add_argument("--seeds", type=int, default=4, help="seeds for the vectorized-seeds comparison (0: skip)")
    p.add_argument("--n-train", type=int, default=10_000,
                   help="images per epoch (default: the paper's 10,000; fewer: a quicker, rougher run)")
    p.add_argument("--specs", nargs="+", metavar="NAME",
                   help="project only these specs of sweep/specs/ (default: every one)")
    p.add_argument("--json", metavar="PATH", help="also write every figure to this file")
    args = p.parse_args()
    specs = args.specs or sorted(f.stem for f in (ROOT / "sweep" / "specs").glob("*.yaml"))
    if unknown := [s for s in specs if not (ROOT / "sweep" / "specs" / f"{s}.yaml").is_file()]:
        p.error(f"--specs {' '.join(unknown)}: not in sweep/specs/")
    if args.n_train < 1000 or args.n_train % 1000:
        p.error(f"--n-train {args.n_train} must be a positive multiple of the minibatch, 1000")
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("benchmarks/step.py: --device cuda asked for, but torch sees no CUDA device")
    if args.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # as the trials run
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {args.threads} threads"
    d, h, D, B, N = 64, 256, 784, 1000, args.n_train
    peak = matmul_rate(device, B, h, D)
    print(f"device: {name}; torch {torch.__version__}; {'compiled' if args.compile else 'eager'}")
    print(f"float32 matmul ({B}x{h}) @ ({h}x{D}): {peak / 1e9:.1f} GFLOP/s")
    sizes = "paper sizes" if N == 10_000 else "sizes"
    print(f"{sizes}: N={N}, minibatch {B}, d={d}, H={h}, D={D}; {N // B} steps per epoch\n")
    out: dict = {"device": name, "compiled": args.compile, "epochs": args.epochs,
                 "sizes": {"n_train": N, "batch": B, "latent_dim": d, "hidden_dim": h, "data_dim": D},
                 "matmul_gflops": peak / 1e9, "families": []}
    print(f"{'family':<16}{'steps/s':>9}{'s/epoch':>9}{'GFLOP/step':>12}{'GFLOP/s':>9}{'of matmul':>11}")
    for family, width in FAMILIES:
        cfg = bench_config(family, width, n_train=N)
        label = cfg.family_class.variant(width)
        if args.compile and families.probe(cfg).refines:  # the engine refuses: torch.compile cannot
            print(f"{label:<16}not compiled: its refinement differentiates twice", flush=True)
            continue
        sec = epoch_seconds(cfg, device, args.epochs, args.compile)
        flops = step_flops(cfg, B, d, h, D)
        rate = flops * (N // B) / sec
        out["families"].append({"family": family, "width": width, "label": label, "steps_per_s": N // B / sec,
                                "s_per_epoch": sec, "gflop_per_step": flops / 1e9, "gflops": rate / 1e9,
                                "of_matmul": rate / peak})
        print(
            f"{label:<16}{N // B / sec:>9.1f}{sec:>9.3f}{flops / 1e9:>12.2f}"
            f"{rate / 1e9:>9.1f}{rate / peak:>10.0%}",
            flush=True,
        )
    if args.seeds > 1:
        print(f"\nvectorized seeds: {args.seeds} seeds stacked in one fit against {args.seeds} runs in turn")
        print(f"{'family':<16}{'separate s/epoch':>18}{'batched s/epoch':>17}{'speed-up':>10}")
        out["vectorized_seeds"] = {"seeds": args.seeds, "families": []}
        for family, width in (("amortized", 64), ("factorized", None), ("constant", None)):
            cfg = bench_config(family, width, n_train=N)
            alone = args.seeds * epoch_seconds(cfg, device, args.epochs)
            batched = stacked_epoch_seconds(cfg, args.seeds, device, args.epochs)
            label = cfg.family_class.variant(width)
            out["vectorized_seeds"]["families"].append(
                {"label": label, "separate_s_per_epoch": alone, "batched_s_per_epoch": batched,
                 "speedup": alone / batched})
            print(f"{label:<16}{alone:>18.3f}{batched:>17.3f}{alone / batched:>9.2f}x", flush=True)
    if not args.no_projection:
        print()
        out["projections"] = [project(spec_name, device, args) for spec_name in specs]
    if args.json:
        from record import write

        write(args.json, out, args.threads)


def project(spec_name: str, device: torch.device, args: argparse.Namespace) -> dict:
    """Sum of trial times measured here at the spec's sizes, divided by concurrent trials."""
    spec = load_spec(ROOT / "sweep" / "specs" / f"{spec_name}.yaml")
    cache: dict[tuple, float] = {}
    total = 0.0
    if device.type == "cpu":  # each trial runs with its own CPUs' worth of threads
        torch.set_num_threads(max(1, int(spec.resources.cpu)))
    for cell in spec.cells():
        cfg = spec.trial_config(cell, spec.seeds[0])
        timed = dataclasses.replace(cfg, n_test=100, eval_every=10_000, epochs=10_000, seed=0)
        key = repr(timed)  # one measurement per distinct trial configuration
        if key not in cache:
            cache[key] = epoch_seconds(timed, device, 1)
        total += cache[key] * cfg.epochs * len(spec.seeds)
    torch.set_num_threads(args.threads)
    if device.type == "cuda":
        slots = max(1, int(1 / spec.resources.gpu)) if spec.resources.gpu else 1
    else:
        slots = max(1, int(args.threads // spec.resources.cpu))
    print(
        f"{spec_name}.yaml: {spec.num_trials} trials, {total / 3600:.2f} trial-hours of optimization here; "
        f"{total / slots / 3600:.2f} h wall with {slots} concurrent trials"
        " (evaluation and Ray overhead extra)",
        flush=True,
    )
    return {"spec": spec_name, "trials": spec.num_trials, "trial_hours": total / 3600, "concurrent": slots,
            "wall_hours": total / slots / 3600, "threads_per_trial": max(1, int(spec.resources.cpu))}


if __name__ == "__main__":
    main()
