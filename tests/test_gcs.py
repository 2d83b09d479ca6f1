"""Results on Google Cloud Storage: test_s3.py's scenario on gs:// against a real GCS server
(fake-gcs-server, started by the session's `gcs_server` fixture), reached through pyarrow's GCS
client with plain gs://bucket/path URIs and Google's standard variables, from a working directory
that must stay empty. The sweeps are `slow` (`make test-all`): in `make test`, tests/test_s3.py runs
the same code paths on a bucket, and here the one-line refusals."""

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
from test_s3 import ROOT, SMOKE, saved_epoch, sweep_cli, whole_checkpoints

from analysis.cli import main as analysis_main
from sweep import storage
from sweep.cli import main


@pytest.fixture(scope="module")
def gcs(gcs_server):
    """The session's GCS server; where fake-gcs-server is missing, a failure under CI=true (the
    suite must run these), else a one-line skip."""
    if gcs_server is None:
        from testbed.gcs import emulator_binary

        try:
            emulator_binary()
            why = "the session's GCS server did not start"
        except FileNotFoundError as e:
            why = str(e)
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(why)
        pytest.skip(why)
    return gcs_server


def objects(prefix: str) -> list[pafs.FileInfo]:
    """The objects under gs://``prefix`` (a bucket, then a path in it), "directory" markers left out."""
    fs, path = storage.resolve(f"gs://{prefix}")
    found = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    return [i for i in found if i.type == pafs.FileType.File]


def kill_once_checkpointed(proc: subprocess.Popen, prefix: str, timeout: float = 240) -> list[str]:
    """SIGKILL ``proc``'s process group once a checkpoint and Tune's experiment state are under
    gs://``prefix``: the objects there at that moment."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        names = [i.path for i in objects(prefix)]
        if any("/checkpoint_" in n for n in names) and any("experiment_state-" in n for n in names):
            break
        time.sleep(0.2)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("the sweep never checkpointed to the bucket")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    return names


@pytest.fixture(scope="module")
def bucket_smoke(gcs, ray_address, fashion_available, tmp_path_factory):
    """The smoke sweep with its results on the bucket, launched from an empty working directory,
    its driver SIGKILLed once a checkpoint and Tune's state are on the bucket, then `sweep resume`d
    from the bucket: (resume's output, the experiment's URI, that directory, the objects at the kill)."""
    cwd = tmp_path_factory.mktemp("cwd")
    exp = "gs://gap/exps/smoke"
    cmd = [sys.executable, "-m", "sweep", "run", str(SMOKE), "--storage", "gs://gap/exps", "--name", "smoke",
           "--address", ray_address]
    proc = subprocess.Popen(cmd, cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    names = kill_once_checkpointed(proc, "gap/exps/smoke")
    return sweep_cli("resume", exp, "--address", ray_address, cwd=cwd), exp, cwd, names


@pytest.mark.slow
def test_smoke_sweep_killed_and_resumed_writes_every_trial_to_the_bucket(bucket_smoke):
    out, exp, cwd, at_kill = bucket_smoke
    finished_before = [n for n in at_kill if "/checkpoint_000001/" in n]  # epoch 4 of 4
    assert len(finished_before) < 8, "killed too late: every trial had finished"
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("8 trials: 8 TERMINATED")
    assert f"python -m sweep export {exp} -o {exp}.parquet" in out.stdout  # the next step, a URI
    names = {i.path.removeprefix("gap/exps/smoke/") for i in objects("gap/exps/smoke")}
    assert "sweep-spec.json" in names
    trials = {n.split("/")[0] for n in names if "-fashion_mnist-" in n}
    assert len(trials) == 8
    for t in trials:  # checkpoints every 2 epochs of 4, at most two kept; the newest one the end
        kept = whole_checkpoints(f"{exp}/{t}")
        assert 1 <= len(kept) <= 2, kept
        assert saved_epoch(f"{exp}/{t}/{kept[-1]}") == 4, kept
    assert list(cwd.iterdir()) == []


@pytest.mark.slow
def test_status_evaluate_export_and_figures_read_the_bucket(bucket_smoke, tmp_path, monkeypatch, capsys):
    exp = bucket_smoke[1]
    monkeypatch.chdir(tmp_path)  # nothing may appear here: no folder named "gs:", no stray copy
    assert main(["status", exp]) == 0
    assert "8 trials: 8 TERMINATED" in capsys.readouterr().out

    assert main(["evaluate", exp, "--points", "10", "--iwae-samples", "20"]) == 0
    assert "amort. train" in capsys.readouterr().out
    gaps = [storage.read_json(storage.join(exp, t, "gap.json")) for t in storage.children(exp)
            if "-fashion_mnist-" in t]
    assert len(gaps) == 8 and all(g["results"][0]["train"]["n"] == 10 for g in gaps)

    out = "gs://gap/exports/smoke.parquet"
    assert main(["export", exp, "-o", out]) == 0
    assert f"-> {out}" in capsys.readouterr().out
    table = pd.read_parquet(io.BytesIO(storage.read_bytes(out)))
    assert len(table) == 8 * 4 and table.trial_id.nunique() == 8
    # resumed after the kill: every epoch of every trial exactly once, each trial finished
    assert table.groupby("trial_id").epoch.apply(list).map(lambda e: e == [1, 2, 3, 4]).all()
    assert (table.groupby("trial_id").status.first() == "TERMINATED").all()

    assert analysis_main(["figures", exp, "-o", str(tmp_path / "from_dir")]) == 0
    assert analysis_main(["figures", out, "-o", "gs://gap/figures"]) == 0
    from_bucket = storage.read_bytes("gs://gap/figures/gap_table.md").decode()
    assert (tmp_path / "from_dir" / "gap_table.md").read_text() == from_bucket  # same table both ways
    assert storage.exists("gs://gap/figures/fashion_mnist_gap_split.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["from_dir"]


@pytest.mark.slow
def test_no_credential_is_written_with_the_results(bucket_smoke, gcs, ray_address):
    """The service account's private key (in the file GOOGLE_APPLICATION_CREDENTIALS names) is on
    no object and in no Ray log: each line of its PEM body, as it would appear in a copy, raw or
    JSON-escaped."""
    import ray

    secrets = [line.encode() for line in gcs.secret_key.splitlines() if not line.startswith("-----")]
    assert len(secrets) > 10
    fs, _ = storage.resolve("gs://gap")
    for info in objects("gap"):
        with fs.open_input_stream(info.path) as f:
            data = f.read()
        assert not any(s in data for s in secrets), info.path
    logs = Path(ray._private.worker._global_node.get_session_dir_path()) / "logs"
    for path in (p for p in logs.rglob("*") if p.is_file()):
        data = path.read_bytes()
        assert not any(s in data for s in secrets), path


@pytest.mark.parametrize("storage_uri, says", [
    ("gs://no-such-bucket/x", "storage='gs://no-such-bucket/x': cannot write there"),
    ("gs://me:topsecret@gap/exps", "carries credentials; give them through GOOGLE_APPLICATION_CREDENTIALS"),
])
def test_bad_bucket_storage_is_one_line_and_writes_nothing(gcs, storage_uri, says, tmp_path, monkeypatch,
                                                           capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(SMOKE), "--storage", storage_uri, "--name", "bad"]) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and "\n" not in err
    assert not [i for i in objects("gap") if "/bad/" in i.path]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("cli, args, says", [
    ("sweep", ["status", "gs://gap/no-such-experiment"], "gs://gap/no-such-experiment is not a directory"),
    ("sweep", ["export", "gs://gap/exps/smoke", "-o", "gs://no-such-bucket/x.parquet"],
     "-o gs://no-such-bucket/x.parquet: cannot write there"),
    ("analysis", ["figures", "gs://gap/exps/smoke", "-o", "gs://no-such-bucket/figs"],
     "-o gs://no-such-bucket/figs: cannot write there"),
    ("analysis", ["figures", "gs://gap/none.parquet", "-o", "figs"], "gs://gap/none.parquet: no such file"),
])
def test_bad_bucket_paths_are_one_line(bucket_smoke, cli, args, says, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert (main if cli == "sweep" else analysis_main)(args) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and "\n" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_no_google_credentials_is_refused_in_seconds(gcs, monkeypatch, tmp_path, capsys):
    """Without a key file Google's client asks a metadata server for a token, and would retry that
    for 15 minutes; the storage probe gives up after a few seconds, in one line."""
    monkeypatch.chdir(tmp_path)
    with monkeypatch.context() as without:  # the bucket is read below with the credentials back
        without.delenv("GOOGLE_APPLICATION_CREDENTIALS")
        without.setenv("HOME", str(tmp_path))  # no gcloud login of this machine's either
        start = time.monotonic()
        assert main(["run", str(SMOKE), "--storage", "gs://gap/exps", "--name", "nocreds"]) == 2
    err = capsys.readouterr().err.strip()
    assert "storage='gs://gap/exps': cannot write there" in err and "OAuth2 access token" in err
    assert "\n" not in err and time.monotonic() - start < 60
    assert not [i for i in objects("gap") if "/nocreds/" in i.path]
    assert list(tmp_path.iterdir()) == []


def guide_gcs_lines() -> list[str]:
    """The bash block of docs/guide.md that puts results on gs://."""
    import re

    guide = (ROOT / "docs" / "guide.md").read_text()
    [block] = [b for b in re.findall(r"```bash\n(.*?)```", guide, re.S) if "gs://YOUR-BUCKET" in b]
    return [ln.split("  #")[0].strip() for ln in block.splitlines() if ln.strip()]


@pytest.mark.slow
def test_the_guide_lines_run_as_written(gcs, fashion_available, tmp_path):
    """Only the bucket (the server's "gap", under a folder of its own) and the key file (the
    server's) are the test's; each line runs in one shell, as a user types them."""
    lines = guide_gcs_lines()
    assert lines[0] == "export GOOGLE_APPLICATION_CREDENTIALS=$HOME/gap-key.json"
    (home := tmp_path / "home").mkdir()
    (home / "gap-key.json").write_bytes(Path(gcs.env()["GOOGLE_APPLICATION_CREDENTIALS"]).read_bytes())
    (work := tmp_path / "work").mkdir()
    (work / "sweep").symlink_to(ROOT / "sweep")  # the guide's relative spec path
    script = "\n".join(["set -e", *(ln.replace("gs://YOUR-BUCKET", "gs://gap/guide") for ln in lines)])
    mine = ("RAY_ADDRESS", "GOOGLE_APPLICATION_CREDENTIALS")  # a fresh local Ray; the guide's key
    env = {**{k: v for k, v in os.environ.items() if k not in mine},
           "HOME": str(home), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert done.stdout.count("8 trials: 8 TERMINATED") == 2  # run's summary, then status's
    table = pd.read_parquet(io.BytesIO(storage.read_bytes("gs://gap/guide/gap/smoke.parquet")))
    assert table.groupby("trial_id").epoch.apply(list).map(lambda e: e == [1, 2, 3, 4]).all()
    assert (work / "smoke-report" / "gap_table.md").exists()
