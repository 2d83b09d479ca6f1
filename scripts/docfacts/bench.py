"""The benchmarks' figures (docs/engineering.md, README.md's "Scale"): each benchmark's `--json` file
in docs/bench/, written by the command it records (its "command" key):

    python benchmarks/step.py --json docs/bench/step.json
    python benchmarks/tune_overhead.py --json docs/bench/tune_overhead.json
    python benchmarks/step_compare.py 905c54d --rounds 3 --epochs 3 --json docs/bench/step_compare.json
    python benchmarks/families.py --sigma-x 0.1 --runs ... --json docs/bench/families_demo.json
    python benchmarks/scale_read.py --sizes 100x100 135x5000 10000x100 --experiments results/DEMO \
        --json docs/bench/scale_read.json
    python benchmarks/faults.py --kills 2 --json docs/bench/faults.json
    python benchmarks/scale.py --trials 100 1000 10000 --s3 --reads --json docs/bench/scale.json

and the demo's wall time (docs/demo/timing.json, `make readme-figures`); with them a few counts the
code sets (the decoder's weights, the display's and the figures' limits)."""

from __future__ import annotations

import re

import tomllib

from .artifacts import ROOT, and_list, fmt, load_json, minutes, sig, span, spec

STEP, TUNE, COMPARE = "docs/bench/step.json", "docs/bench/tune_overhead.json", "docs/bench/step_compare.json"
FAMILIES, READ = "docs/bench/families_demo.json", "docs/bench/scale_read.json"
FAULTS, SCALE, DEMO = "docs/bench/faults.json", "docs/bench/scale.json", "docs/demo/timing.json"


def _load(rel: str) -> dict:
    """A benchmark's --json file; where missing, the command that writes it (this module's docstring)."""
    if not (ROOT / rel).is_file():
        line = next((ln.strip() for ln in __doc__.splitlines() if rel in ln), f"what writes {rel}")
        raise FileNotFoundError(f"{rel} is missing: run `{line}` (scripts/docfacts/bench.py)")
    return load_json(rel)


def _cmd(doc: dict) -> str:
    return f"`{doc['command']}`"


def _table(head: list[str], rows: list[list[str]]) -> str:
    return "\n".join([f"| {' | '.join(head)} |", "|" + "---|" * len(head),
                      *(f"| {' | '.join(r)} |" for r in rows)])


def _range(xs: list[float], digits: int = 2) -> str:
    return span(xs, lambda v: fmt(v, digits))


def _threads(n: int) -> str:
    return "one thread" if n == 1 else f"{n} threads"


def _hours(h: float) -> str:
    """Hours to two significant figures; under 0.01 h (36 s), '< 0.01'."""
    return sig(h) if h >= 0.01 else "< 0.01"


def _label(f: dict) -> str:
    """The benchmark's label of a variant; the study's encoder's ('k=64') with its family's name."""
    return f"amortized {f['label']}" if f["label"].startswith("k=") else f["label"]


def step() -> dict[str, str]:
    s = _load(STEP)
    m, z = s["machine"], s["sizes"]
    rows = [[_label(f), fmt(f["steps_per_s"], 1), fmt(f["s_per_epoch"], 3), fmt(f["gflop_per_step"], 2),
             fmt(f["gflops"], 1), f"{f['of_matmul']:.0%}"] for f in s["families"]]
    projections = [[f"`{p['spec']}.yaml`", fmt(p["trials"]), _hours(p["trial_hours"]), f"{p['concurrent']}",
                    _hours(p["wall_hours"])] for p in s["projections"]]
    by_spec = {p["spec"]: p for p in s["projections"]}
    shipped = sorted(f.stem for f in (ROOT / "sweep" / "specs").glob("*.yaml"))
    stale = [n for n in shipped if n not in by_spec or spec(n).num_trials != by_spec[n]["trials"]]
    if stale:  # a spec added, or its trials changed, since the projections were measured
        raise ValueError(f"{STEP}: its projections predate sweep/specs/ ({', '.join(stale)}): rerun "
                         f"`python benchmarks/step.py --json {STEP}`")
    v = s["vectorized_seeds"]
    speedups = [f["speedup"] for f in v["families"]]
    if max(speedups) < 1.05:
        gains = "it gains nothing"
    elif min(speedups) >= 1.05:
        gains = "it is faster for every family measured"
    else:
        gains = "it gains little"
    of = [f["of_matmul"] for f in s["families"]]
    return {
        "bench.step-command": _cmd(s),
        "bench.step-sizes": f"N = {fmt(z['n_train'])}, minibatch {fmt(z['batch'])}, d = {z['latent_dim']}, "
                            f"H = {z['hidden_dim']}, D = {z['data_dim']}",
        "bench.step-cores": f"{m['cpu_cores']}",
        "bench.step-torch": m["torch"],
        "bench.step-threads": _threads(m["torch_threads"]),
        "bench.step-matmul": fmt(s["matmul_gflops"], 0),
        "bench.step-table": _table(["family", "steps/s", "s/epoch", "GFLOP/step", "GFLOP/s", "of matmul"],
                                   rows),
        "bench.step-of-matmul": f"{min(of):.0%}-{max(of):.0%}",
        "bench.step-projections": _table(["spec", "trials", "trial-hours of optimization",
                                          "concurrent trials", "hours here"], projections),
        "bench.step-quick-hours": _hours(by_spec["quick"]["wall_hours"]),
        "bench.step-quick-slots": f"{by_spec['quick']['concurrent']}",
        "bench.vseeds-range": _range(speedups) + "x",
        "bench.vseeds-seeds": f"{v['seeds']}",
        "bench.vseeds-gains": gains,
    }


def compare() -> dict[str, str]:
    c = _load(COMPARE)
    ratios = [f["ratio"] for f in c["families"]]
    slower = [f for f in c["families"] if f["ratio"] < 1]
    verdict = ("no family slower" if not slower else
               "slower: " + ", ".join(f"{f['label']} ({f['ratio']:.2f})" for f in slower))
    return {
        "bench.compare-command": _cmd(c),
        "bench.compare-ratios": _range(ratios),
        "bench.compare-verdict": verdict,
        "bench.compare-setup": f"{c['rounds']} rounds of {c['epochs']} epochs, "
                               f"{_threads(c['machine']['torch_threads'])}",
    }


def tune() -> dict[str, str]:
    t = _load(TUNE)
    return {
        "bench.tune-command": _cmd(t),
        "bench.tune-setup": f"{t['label']}, {fmt(t['epochs'])} epochs at N = {fmt(t['n_train'])}, "
                            f"reports every {t['report_every']} epochs, checkpoints every "
                            f"{t['checkpoint_every']}, {_threads(t['machine']['torch_threads'])}",
        "bench.tune-cli": fmt(t["cli_s"], 1),
        "bench.tune-tune": fmt(t["tune_s"], 1),
        "bench.tune-overhead": f"{t['overhead_pct']:+.1f} %",
    }


def families() -> dict[str, str]:
    """F-VI sparse and dense and A-VI k = 64 at the demo's settings, over learning rates."""
    f = _load(FAMILIES)

    def runs(family: str, width, optimizer) -> dict[float, float]:
        return {r["settings"]["lr"]: r["neg_elbo_per_datapoint"] for r in f["runs"]
                if r["family"] == family and r["width"] == width
                and r["settings"].get("optimizer") == optimizer}

    def grid(found: dict[float, float]) -> str:
        lrs = sorted(found)
        return " / ".join(fmt(found[lr]) for lr in lrs) + " at " + " / ".join(f"{lr:g}" for lr in lrs)

    sparse, dense, avi = runs("factorized", None, None), runs("factorized", None, "dense"), \
        runs("amortized", 64, None)
    # the demo's learning rates (quick.yaml) against each grid's best
    quick = spec("quick")
    lr = {c.family: quick.trial_config(c, quick.seeds[0]).lr for c in quick.cells()
          if c.family in ("amortized", "factorized")}
    best = {"amortized": min(avi, key=avi.get), "factorized": min(dense, key=dense.get)}
    if best == lr:
        verdict = (f"the demo's (`quick.yaml`: A-VI {lr['amortized']:g}, F-VI {lr['factorized']:g}) are "
                   "each family's best of a measured grid at its settings")
    else:
        verdict = (f"the demo's (`quick.yaml`: A-VI {lr['amortized']:g}, F-VI {lr['factorized']:g}) are not "
                   f"all the best of the measured grid at its settings (best: A-VI {best['amortized']:g}, "
                   f"F-VI {best['factorized']:g})")
    return {
        "bench.fams-command": _cmd(f),
        "bench.fams-setup": f"N = {fmt(f['n_train'])}, {f['epochs']} epochs, minibatch {f['batch_size']}, "
                            f"sigma_x {f['sigma_x']:g}, seed {f['seed']}, "
                            f"{_threads(f['machine']['torch_threads'])}",
        "bench.fams-sparse": " and ".join(f"{fmt(sparse[lr])} at lr {lr:g}" for lr in sorted(sparse)),
        "bench.fams-dense-at": f"{fmt(dense[0.01])} with dense Adam at lr 0.01",
        "bench.fams-avi-grid": grid(avi),
        "bench.fams-dense-grid": grid(dense),
        "bench.fams-verdict": verdict,
    }


def scale_read() -> dict[str, str]:
    r = _load(READ)
    rows = r["sizes"]
    paper = next(row for row in rows if row.get("what", "") == "135x5000")
    demo = next((row for row in rows if not row.get("what", "x")[0].isdigit()), None)
    table = _table(["results", "trials", "rows", "`analysis figures` s", "figures drawn",
                    "notebook's first cells s", "loading s"],
                   [[("`make demo`'s experiment directory" if row is demo else
                      f"synthetic, {row['trials']:,} trials x {fmt(row['epochs'])} epochs"),
                     f"{row['trials']:,}", f"{row['rows']:,}", fmt(row["figures_s"], 1), str(row["figures"]),
                     fmt(row["notebook_s"], 1), fmt(row["load_s"], 2)] for row in rows])
    out = {
        "bench.read-command": _cmd(r),
        "bench.read-table": table,
        "bench.read-size": f"{paper['trials']} trials x {fmt(paper['epochs'])} epochs reported every epoch, "
                           f"{fmt(paper['rows'])} rows",
        "bench.read-figures-s": fmt(paper["figures_s"], 1),
        "bench.read-drawn": f"{paper['figures']}",
        "bench.read-load-s": fmt(paper["load_s"], 1),
    }
    if demo is not None:
        out["bench.read-demo-s"] = fmt(demo["figures_s"], 1)
    return out


def faults() -> dict[str, str]:
    f = _load(FAULTS)
    s = f["settings"]
    every = [str(e) for e in s["chaos_checkpoint_every"]]
    return {
        "bench.faults": f["table"],
        "bench.faults-command": _cmd(f),
        "bench.faults-seconds": f"{f['seconds']:.0f} s",
        "bench.faults-setup": f"{s['trials']} trials, {s['driver_kill_trials']} for the driver's kill, "
                              f"x {s['epochs']} epochs of {fmt(s['n_train'])} Fashion-MNIST images, "
                              f"a checkpoint every {s['checkpoint_every']}",
        "bench.faults-kills": f"{s['kills']}",
        "bench.faults-chaos": f"{s['chaos_trials']} trials x {s['chaos_epochs']} epochs, with checkpoints "
                              f"every {and_list(every)} epochs",
        "bench.faults-resume-kill": f"{s['chaos_resume_kill_epochs']} epochs",
    }


SLOPES = {"wall_s": "wall", "driver_peak_mb": "driver memory", "snapshot_kb": "snapshot",
          "display_s": "display", "status_s": "status", "export_s": "export", "figures_s": "figures",
          "notebook_load_s": "loading"}


def _slope_note(slopes: dict[str, float]) -> str:
    """Which figures grow slower than the trials, as fast (0.9-1.1), faster."""
    groups = {"slower than the trials": [], "as fast": [], "faster": []}
    for k, w in SLOPES.items():
        how = "slower than the trials" if slopes[k] < 0.9 else "as fast" if slopes[k] <= 1.1 else "faster"
        groups[how].append(w)
    return "1 is linear; " + "; ".join(f"{and_list(ws)} {'grow' if len(ws) > 1 else 'grows'} {how}"
                                       for how, ws in groups.items() if ws)


def _requests(counts: dict[str, int]) -> str:
    order = sorted(counts, key=lambda k: (k != "GET", k))
    return ", ".join(f"{fmt(counts[k])} {k}" for k in order)


def scale() -> dict[str, str]:
    s = _load(SCALE)
    rows = s["sweeps"]
    last = rows[-1]

    def added(r: dict, key: str, digits: int, unit: str) -> str:
        return f"{fmt(r[key], digits)} {unit}" if key in r else "-"

    full = [[fmt(r["trials"]), f"{fmt(r['wall_s'], 1)} s", f"{r['per_trial_s']:.3f} s",
             added(r, "added_per_trial_s", 3, "s"), f"{fmt(r['driver_peak_mb'])} MB",
             added(r, "added_mb_per_trial", 3, "MB"), f"{sig(r['snapshot_kb'] / 1024)} MB",
             f"{fmt(r['status_s'], 1)} s", f"{fmt(r['export_s'], 1)} s", f"{fmt(r['figures_s'], 1)} s",
             f"{fmt(r['notebook_load_s'], 1)} s"] for r in rows]
    short = [[fmt(r["trials"]), f"{r['wall_s']:.0f} s", added(r, "added_per_trial_s", 3, "s"),
              f"{r['driver_peak_mb'] / 1024:.1f} GB", f"{fmt(r['status_s'], 1)} s",
              f"{fmt(r['export_s'], 1)} s"]
             for r in rows]
    bucket = [[fmt(r["trials"]), f"{fmt(r['s3_status_s'], 1)} s", _requests(r["s3_status_requests"]),
               f"{fmt(r['s3_export_s'], 1)} s", _requests(r["s3_export_requests"])] for r in rows]
    slopes = s["sweep_slopes"]
    end_to_end = sum(last[k] for k in ("wall_s", "status_s", "export_s", "figures_s"))
    gets = last["s3_export_requests"].get("GET", 0)
    return {
        "bench.scale-command": _cmd(s),
        "bench.scale-cores": f"{s['machine']['cpu_cores']}",
        "bench.scale-table": _table(["trials", "wall", "per trial", "added per trial", "driver peak",
                                     "added per trial", "snapshot", "status", "export", "figures",
                                     "notebook load"], full),
        "bench.scale-bucket-table": _table(["trials", "status on the bucket", "its requests",
                                            "export on the bucket", "its requests"], bucket),
        "bench.scale-readme-table": _table(["trials", "wall", "added per trial", "driver peak", "status",
                                            "export"], short),
        "bench.scale-slopes": ", ".join(f"{w} {slopes[k]:.2f}" for k, w in SLOPES.items()),
        "bench.scale-slopes-short": ", ".join(f"{SLOPES[k]} {slopes[k]:.2f}"
                                              for k in ("wall_s", "driver_peak_mb", "status_s", "export_s")),
        "bench.scale-slopes-note": _slope_note(slopes),
        "bench.scale-largest": fmt(last["trials"]),
        "bench.scale-end-to-end": minutes(end_to_end),
        "bench.scale-display-share": f"{last['display_share']:.2%}",
        "bench.scale-snapshot": f"{sig(last['snapshot_kb'] / 1024)} MB",
        "bench.scale-snapshot-s": f"{last['snapshot_s']:.1f} s",
        "bench.scale-s3-status": _requests(last["s3_status_requests"]),
        "bench.scale-s3-export": f"{fmt(gets)} GETs, {gets / last['trials']:.1f} per trial, in "
                                 f"{fmt(last['s3_export_s'], 1)} s",
    }


def demo() -> dict[str, str]:
    t = _load(DEMO)
    return {"bench.demo-wall": minutes(t["demo"]["seconds"])}


def code() -> dict[str, str]:
    """Counts the code sets that the page quotes."""
    import torch

    from analysis.figures import MAX_CELLS
    from sweep.progress import MANY
    from trainables.data import DATA_DIM
    from trainables.model import BayesianDecoder

    train = spec("paper").trial_config(next(iter(spec("paper").cells())), 0)
    with torch.device("meta"):
        weights = BayesianDecoder(train.latent_dim, train.hidden_dim, DATA_DIM["fashion_mnist"]).num_params
    addopts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["addopts"]
    durations = re.search(r"--durations=(\d+)", addopts)
    if durations is None:
        raise ValueError("pyproject.toml: pytest's addopts hold no --durations=N (docs/engineering.md)")
    return {
        "bench.theta-weights": fmt(weights),
        "bench.display-many": f"{MANY}",
        "bench.figures-max-cells": f"{MAX_CELLS}",
        "bench.durations": durations.group(1),
    }


def facts() -> dict[str, str]:
    return {**step(), **compare(), **tune(), **families(), **scale_read(), **faults(), **scale(), **demo(),
            **code()}
