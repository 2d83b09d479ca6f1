"""The Slurm lines of docs/guide.md ("Where to run it", Slurm), run as written on the session's real
Slurm: submitted from a folder that holds the repository's `cluster/`, `sweep/` and `.venv` (links),
so the job's log and `results/` land there and not in the checkout. The only change: JOBID, which
`sbatch` printed. The job is cancelled once a trial has checkpointed and the same command resumes
it, as the page says; `export` then holds every epoch of every trial once."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from test_slurm import wait_for_checkpoint

ROOT = Path(__file__).resolve().parents[1]
GUIDE = (ROOT / "docs" / "guide.md").read_text()


def slurm_blocks() -> list[list[str]]:
    """The shell lines of each bash block of the guide's Slurm section."""
    section = GUIDE.split("### Slurm", 1)[1].split("\n### ", 1)[0]
    return [[ln.split("  #")[0].strip() for ln in block.splitlines() if ln.strip()]
            for block in re.findall(r"```bash\n(.*?)```", section, re.S)]


def test_the_section_is_what_the_test_runs():
    run, stop = slurm_blocks()
    assert run[0].startswith("sbatch ")
    assert run[0].endswith("cluster/slurm/sweep.sbatch sweep/specs/smoke.yaml")
    assert run[1:] == ["squeue --me", "python -m sweep status results/smoke --watch",
                       "python -m sweep export results/smoke -o results/smoke.parquet"]
    assert stop == ["scancel JOBID", run[0]]  # the same command resumes


def shell(line: str, cwd: Path, env: dict) -> str:
    done = subprocess.run(line, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{line}\n{(done.stdout + done.stderr)[-3000:]}"
    return done.stdout


@pytest.mark.slow
def test_the_slurm_lines_run_as_written(slurm, fashion_available, tmp_path):
    (run, stop), here = slurm_blocks(), tmp_path / "checkout"
    here.mkdir()
    for name in ("cluster", "sweep", ".venv"):  # `.venv/bin/python` is the script's default Python
        (here / name).symlink_to(ROOT / name)
    bins = f"{Path(sys.executable).parent}:{slurm.env()['PATH']}"  # `python` is the project's, as activated
    env = slurm.env(PATH=bins, GAP_RAY_TMP=str(slurm.root))  # Ray's files go with the test cluster
    job = re.fullmatch(r"Submitted batch job (\d+)\n", shell(run[0], here, env)).group(1)
    assert job in shell(run[1], here, env)
    wait_for_checkpoint(here / "results" / "smoke")
    shell(stop[0].replace("JOBID", job), here, env)
    assert slurm.wait(job, "CANCELLED", timeout=120)["JobState"] == "CANCELLED"
    again = re.fullmatch(r"Submitted batch job (\d+)\n", shell(stop[1], here, env)).group(1)
    watched = shell(run[2], here, env)  # until every trial has ended
    assert watched.strip().endswith("8 trials: 8 TERMINATED; epochs 32/32")
    assert slurm.wait(again, "COMPLETED", "FAILED", timeout=120)["JobState"] == "COMPLETED"
    shell(run[3], here, env)
    table = pd.read_parquet(here / "results" / "smoke.parquet")
    assert table.groupby("trial_id").epoch.apply(list).map(lambda e: e == [1, 2, 3, 4]).all()
    assert (table.groupby("trial_id").status.first() == "TERMINATED").all() and table.trial_id.nunique() == 8
    assert (here / f"gap-sweep-{job}.out").exists() and (here / f"gap-sweep-{again}.out").exists()
