"""The Slurm path of docs/guide.md, "Where to run it", end to end on this one machine
(`make slurm-demo`).

    python benchmarks/slurm_demo.py                           # smoke.yaml: about a minute on 2 cores
    python benchmarks/slurm_demo.py --spec sweep/specs/quick.yaml --out results/slurm-demo

Starts a real Slurm cluster (munged, slurmctld and three `slurmd -N` nodes of one CPU each, from
Debian's slurm-wlm and munge; testbed/slurm.py), submits cluster/slurm/sweep.sbatch with sbatch as
a user would, shows `squeue`, waits for the job, prints the end of its log, then reads the results
from outside the job (`sweep status`, `sweep export`). Stops only what it started, prints the wall
time, and writes it with the job's own seconds to OUT/slurm_demo.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from testbed.slurm import SlurmCluster  # noqa: E402


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--spec", default="sweep/specs/smoke.yaml", help="the sweep spec (default smoke.yaml)")
    p.add_argument("--out", default="results/slurm-demo", help="results, the job's log and the timing JSON")
    args = p.parse_args()
    out = (ROOT / args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    name = f"{Path(args.spec).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="slurm-", dir="/tmp") as tmp, \
            SlurmCluster(Path(tmp), nodes=3) as slurm:
        step(f"Slurm: slurmctld and 3 slurmd nodes (1 CPU each); sinfo:\n{slurm.run('sinfo').stdout}")
        cmd = ["--nodes=3", "--cpus-per-task=1", "--time=60", f"--output={out}/job-%j.out",
               "cluster/slurm/sweep.sbatch", args.spec, name]
        step(f"sbatch {' '.join(cmd)}   (GAP_STORAGE={out})")
        job = slurm.submit(*cmd, cwd=ROOT, GAP_PYTHON=sys.executable, GAP_STORAGE=str(out), GAP_RAY_TMP=tmp)
        submitted = time.monotonic()
        print(slurm.queue(), flush=True)
        info = slurm.wait(job, "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", timeout=3 * 3600)
        job_s = time.monotonic() - submitted
        log = (out / f"job-{job}.out").read_text()
        step(f"job {job}: {info['JobState']} after {job_s:.0f} s; the end of its log:")
        print("\n".join(log.splitlines()[-14:]), flush=True)
        if info["JobState"] != "COMPLETED":
            return 1
    exp = out / name
    client = {**os.environ, "PYTHONPATH": str(ROOT)}
    for what in (["status", str(exp)], ["export", str(exp), "-o", f"{exp}.parquet"]):
        step(f"python -m sweep {' '.join(what)}   (from outside the job)")
        subprocess.run([sys.executable, "-m", "sweep", *what], env=client, cwd=ROOT, check=True)
    wall = time.monotonic() - began
    timing = {"spec": args.spec, "wall_s": round(wall, 1), "job_s": round(job_s, 1), "nodes": 3}
    (out / "slurm_demo.json").write_text(json.dumps(timing, indent=2) + "\n")
    print(f"\nslurm demo: {wall:.0f} s wall ({job_s:.0f} s from sbatch to the job's end) "
          f"-> {out}/slurm_demo.json", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
