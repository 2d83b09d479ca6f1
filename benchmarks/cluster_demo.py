"""The `ray start` workflow of docs/guide.md, "Where to run it", end to end on this one machine
(`make cluster-demo`).

    python benchmarks/cluster_demo.py                      # quick.yaml: about 10 min on 2 cores
    python benchmarks/cluster_demo.py --spec sweep/specs/smoke.yaml

Starts a real S3 server (SeaweedFS, testbed/s3.py) and a real multi-node Ray cluster
(`ray start --head --num-cpus 0` and worker nodes, token authentication on; testbed/cluster.py),
submits the sweep as a Ray job (`ray job submit --working-dir .`) with its results on the bucket,
follows its progress, then, from outside the cluster, prints `sweep status` and the gap table read
from the bucket. Tears down only what it started (by process), and prints the wall time.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from testbed.cluster import LocalCluster, ray_binary  # noqa: E402
from testbed.s3 import S3Server  # noqa: E402


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--spec", default="sweep/specs/quick.yaml", help="the sweep spec (default quick.yaml)")
    p.add_argument("--workers", type=int, default=2, help="worker nodes of 1 CPU each (default 2)")
    p.add_argument("--report", default="results/cluster-demo-report", help="where the figures go")
    args = p.parse_args()
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cluster-demo-") as tmp, S3Server(Path(tmp) / "s3") as s3:
        s3.create_bucket("gap")
        env_s3 = s3.env()  # the nodes get the endpoint and the credentials file from their environment
        step(f"S3 server (SeaweedFS) at {s3.endpoint}, bucket s3://gap")
        os.environ.update(env_s3)
        with LocalCluster(workers=args.workers, cpus_per_worker=1) as cluster:
            step(f"Ray cluster: a 0-CPU head at {cluster.address}, {args.workers} workers; `ray status`:")
            print(cluster.status(), flush=True)
            name = Path(args.spec).stem
            exp = f"s3://gap/exps/{name}"
            step(f"ray job submit: python -m sweep run {args.spec} --storage s3://gap/exps")
            job = subprocess.run(
                [ray_binary(), "job", "submit", "--address", cluster.dashboard_url,
                 "--working-dir", str(ROOT), "--",
                 "python", "-m", "sweep", "run", args.spec, "--address", "auto", "--storage", "s3://gap/exps"],
                env=cluster.env(), cwd=ROOT)
            if job.returncode != 0:
                print(f"cluster_demo: the job failed (exit {job.returncode})", file=sys.stderr)
                return 1
            step(f"python -m sweep status {exp}  (from outside the cluster)")
            client = {**os.environ, "PYTHONPATH": str(ROOT)}
            subprocess.run([sys.executable, "-m", "sweep", "status", exp], env=client, cwd=ROOT, check=True)
            step(f"python -m analysis figures {exp} -o {args.report}")
            subprocess.run([sys.executable, "-m", "analysis", "figures", exp, "-o", args.report], env=client,
                           cwd=ROOT, check=True)
            print((ROOT / args.report / "gap_table.md").read_text(), flush=True)
        step("torn down: the cluster's processes and the S3 server (only those this demo started)")
    print(f"cluster demo: {time.monotonic() - began:.0f} s wall", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
