"""The cluster demos' timings and results: `make slurm-demo` (benchmarks/slurm_demo.py --out, copied to
docs/cluster/slurm_demo.json)."""

from __future__ import annotations

from .artifacts import load_json


def facts() -> dict[str, str]:
    s = load_json("docs/cluster/slurm_demo.json")
    return {"cluster.slurm-wall": f"{s['wall_s']:.0f} s wall ({s['job_s']:.0f} s from sbatch to the job's "
                                  f"end, {s['nodes']} nodes, `{s['spec']}`)"}
