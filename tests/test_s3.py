"""Results on object storage: every command on s3:// against a real S3 server (SeaweedFS, started
by the session's `s3_server` fixture), from a working directory that must stay empty."""

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.fs as pafs
import pytest
import torch

from analysis.cli import main as analysis_main
from sweep import storage
from sweep.cli import main
from sweep.trialrun import checkpointed_trials
from trainables import checkpoint

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "sweep" / "specs" / "smoke.yaml"


def sweep_cli(*args, cwd, **popen):
    cmd = [sys.executable, "-m", "sweep", *map(str, args)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, **popen)


def objects(s3_server, prefix: str) -> list[pafs.FileInfo]:
    fs = s3_server.filesystem()
    found = fs.get_file_info(pafs.FileSelector(prefix, recursive=True, allow_not_found=True))
    return [i for i in found if i.type == pafs.FileType.File]


def whole_checkpoints(trial_uri: str) -> list[str]:
    """A trial's checkpoints that hold a trial.pt, named as Tune named them: a driver killed mid-upload
    can leave a partial checkpoint_N, and the resumed trial numbers on past it."""
    return sorted(c for c in storage.children(trial_uri)
                  if c.startswith("checkpoint_") and storage.exists(f"{trial_uri}/{c}/trial.pt"))


def saved_epoch(checkpoint_uri: str) -> int:
    state = checkpoint.load(io.BytesIO(storage.read_bytes(f"{checkpoint_uri}/trial.pt")))
    return state["seeds"][0]["epoch"]


@pytest.fixture(scope="module")
def bucket_smoke(ray_address, fashion_available, s3_server, tmp_path_factory):
    """The smoke sweep with its results on the bucket, launched from an empty working directory;
    its driver SIGKILLed once a checkpoint and Tune's state are on the bucket, then `sweep resume`d
    from the bucket: (resume's output, the experiment's URI, that directory, the objects on the
    bucket at the kill)."""
    cwd = tmp_path_factory.mktemp("cwd")
    exp, prefix = "s3://gap/exps/smoke", "gap/exps/smoke"
    cmd = [sys.executable, "-m", "sweep", "run", str(SMOKE), "--storage", "s3://gap/exps", "--name", "smoke",
           "--address", ray_address]
    proc = subprocess.Popen(cmd, cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline:  # kill once a checkpoint and Tune's state are on the bucket
        names = [i.path for i in objects(s3_server, prefix)]
        if any("/checkpoint_" in n for n in names) and any("experiment_state-" in n for n in names):
            break
        time.sleep(0.2)
    else:
        pytest.fail("the sweep never checkpointed to the bucket")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    return sweep_cli("resume", exp, "--address", ray_address, cwd=cwd), exp, cwd, names


@pytest.mark.slow  # the smoke sweep on the bucket, killed and resumed: most of a minute (`make test-all`, CI)
def test_smoke_sweep_killed_and_resumed_writes_every_trial_to_the_bucket(bucket_smoke, s3_server):
    out, exp, cwd, at_kill = bucket_smoke
    finished_before = [n for n in at_kill if "/checkpoint_000001/" in n]  # epoch 4 of 4
    assert len(finished_before) < 8, "killed too late: every trial had finished"
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("8 trials: 8 TERMINATED")
    assert f"python -m sweep export {exp} -o {exp}.parquet" in out.stdout  # the next step, a URI
    names = {i.path.removeprefix("gap/exps/smoke/") for i in objects(s3_server, "gap/exps/smoke")}
    assert "sweep-spec.json" in names
    trials = {n.split("/")[0] for n in names if "-fashion_mnist-" in n}
    assert len(trials) == 8
    for t in trials:  # checkpoints every 2 epochs of 4, at most two kept; the newest one the end
        kept = whole_checkpoints(f"{exp}/{t}")
        assert 1 <= len(kept) <= 2, kept
        assert saved_epoch(f"{exp}/{t}/{kept[-1]}") == 4, kept
    assert list(cwd.iterdir()) == []


@pytest.mark.slow  # the smoke sweep on the bucket, killed and resumed: most of a minute (`make test-all`, CI)
def test_status_evaluate_export_and_figures_read_the_bucket(bucket_smoke, tmp_path, monkeypatch, capsys):
    exp = bucket_smoke[1]
    monkeypatch.chdir(tmp_path)  # nothing may appear here: no folder named "s3:", no stray copy
    assert main(["status", exp]) == 0
    assert "8 trials: 8 TERMINATED" in capsys.readouterr().out
    assert main(["status", exp, "--watch", "--every", "1"]) == 0  # every trial ended: one look
    assert capsys.readouterr().out.count("8 trials: 8 TERMINATED") == 1

    assert main(["evaluate", exp, "--points", "10", "--iwae-samples", "20"]) == 0
    assert "amort. train" in capsys.readouterr().out
    gaps = [storage.read_json(storage.join(exp, t, "gap.json")) for t in storage.children(exp)
            if "-fashion_mnist-" in t]
    assert len(gaps) == 8 and all(g["results"][0]["train"]["n"] == 10 for g in gaps)

    out = "s3://gap/exports/smoke.parquet"
    assert main(["export", exp, "-o", out]) == 0
    printed = capsys.readouterr().out
    assert f"-> {out}" in printed and "-> s3://gap/exports/smoke.gaps.parquet" in printed
    table = pd.read_parquet(io.BytesIO(storage.read_bytes(out)))
    assert len(table) == 8 * 4 and table.trial_id.nunique() == 8
    # resumed after the kill: every epoch of every trial exactly once, each trial finished
    assert table.groupby("trial_id").epoch.apply(list).map(lambda e: e == [1, 2, 3, 4]).all()
    assert (table.groupby("trial_id").status.first() == "TERMINATED").all()
    assert len(pd.read_parquet(io.BytesIO(storage.read_bytes("s3://gap/exports/smoke.gaps.parquet")))) == 16

    assert analysis_main(["figures", exp, "-o", str(tmp_path / "from_dir")]) == 0
    assert analysis_main(["figures", out, "-o", "s3://gap/figures"]) == 0
    from_bucket = storage.read_bytes("s3://gap/figures/gap_table.md").decode()
    assert (tmp_path / "from_dir" / "gap_table.md").read_text() == from_bucket  # same table both ways
    assert storage.exists("s3://gap/figures/fashion_mnist_gap_split.png")
    assert storage.exists("s3://gap/figures/report.html")
    # --watch from the bucket into the bucket: every trial has ended, so one report and done
    capsys.readouterr()
    assert analysis_main(["figures", exp, "-o", "s3://gap/watched", "--watch", "--every", "1"]) == 0
    assert capsys.readouterr().out.count("in a browser: s3://gap/watched/report.html") == 1
    assert storage.read_bytes("s3://gap/watched/gap_table.md").decode() == from_bucket
    assert sorted(p.name for p in tmp_path.iterdir()) == ["from_dir"]


@pytest.mark.slow  # the smoke sweep on the bucket, killed and resumed: most of a minute (`make test-all`, CI)
def test_notebook_reads_the_bucket(bucket_smoke, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    exp = bucket_smoke[1]
    nb = nbformat.read(ROOT / "analysis" / "notebooks" / "explore.ipynb", as_version=4)
    monkeypatch.setenv("AMORTIZATION_GAP_RESULTS", exp)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert f"results: {exp}" in outputs[0].text
    figures = [c for c in nb.cells if "figure" in c.metadata.get("tags", [])]
    assert figures and all(any("image/png" in o.get("data", {}) for o in c.outputs) for c in figures)
    assert list(tmp_path.iterdir()) == []  # drawn inline, from the bucket: nothing written here


@pytest.mark.slow  # the smoke sweep on the bucket, killed and resumed: most of a minute (`make test-all`, CI)
def test_a_damaged_checkpoint_on_the_bucket_falls_back_to_the_one_before(bucket_smoke, s3_server, capsys):
    exp = bucket_smoke[1]
    trial = next(t for t in storage.children(exp)
                 if "-amortized-" in t and len(whole_checkpoints(f"{exp}/{t}")) >= 2)
    older, newest = whole_checkpoints(f"{exp}/{trial}")[-2:]
    copy = "gap/damaged/" + trial  # a copy: the other tests read the original
    fs = s3_server.filesystem()
    pafs.copy_files(f"gap/exps/smoke/{trial}", copy, source_filesystem=fs, destination_filesystem=fs)
    target = f"{copy}/{newest}/trial.pt"
    whole = storage.read_bytes(f"s3://{target}")
    with fs.open_output_stream(target) as f:
        f.write(whole[: len(whole) // 2])
    older_epoch = saved_epoch(f"s3://{copy}/{older}")
    config = storage.read_json(f"s3://gap/exps/smoke/{trial}/params.json")
    [engine] = checkpointed_trials(fs, copy, config, torch.device("cpu"))
    assert engine.epoch == older_epoch < 4  # the older checkpoint, whole
    assert f"{newest} unreadable, trying an older one" in capsys.readouterr().out


@pytest.mark.slow  # the smoke sweep on the bucket, killed and resumed: most of a minute (`make test-all`, CI)
def test_no_credential_is_written_with_the_results(bucket_smoke, s3_server, ray_address):
    import ray

    secret = s3_server.secret_key.encode()
    fs = s3_server.filesystem()
    for info in objects(s3_server, "gap"):
        with fs.open_input_stream(info.path) as f:
            assert secret not in f.read(), info.path
    logs = Path(ray._private.worker._global_node.get_session_dir_path()) / "logs"
    for path in (p for p in logs.rglob("*") if p.is_file()):
        assert secret not in path.read_bytes(), path


@pytest.mark.parametrize("storage_uri, says", [
    ("s3://no-such-bucket/exps", "storage='s3://no-such-bucket/exps': cannot write there"),
    ("s3://me:topsecret@gap/exps", "carries credentials; give them through AWS_ACCESS_KEY_ID"),
])
def test_bad_bucket_storage_is_one_line_and_writes_nothing(s3_server, storage_uri, says, tmp_path, capsys):
    assert main(["run", str(SMOKE), "--storage", storage_uri, "--name", "bad"]) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and "\n" not in err
    assert not [i for i in objects(s3_server, "gap") if "/bad/" in i.path]


@pytest.mark.parametrize("cli, args, says", [
    ("sweep", ["status", "s3://gap/no-such-experiment"], "s3://gap/no-such-experiment is not a directory"),
    ("sweep", ["export", "s3://gap/exps/smoke", "-o", "s3://no-such-bucket/x.parquet"],
     "-o s3://no-such-bucket/x.parquet: cannot write there"),
    ("analysis", ["figures", "s3://gap/exps/smoke", "-o", "s3://no-such-bucket/figs"],
     "-o s3://no-such-bucket/figs: cannot write there"),
    ("analysis", ["figures", "s3://gap/none.parquet", "-o", "figs"], "s3://gap/none.parquet: no such file"),
])
@pytest.mark.slow  # the smoke sweep on the bucket, killed and resumed: most of a minute (`make test-all`, CI)
def test_bad_bucket_paths_are_one_line(bucket_smoke, cli, args, says, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert (main if cli == "sweep" else analysis_main)(args) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and "\n" not in err
    assert list(tmp_path.iterdir()) == []
