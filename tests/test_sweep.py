"""The sweep on a real local Ray (2 CPUs): run, status, export, errors, resume, Optuna."""

import collections
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from sweep.cli import main
from sweep.specfile import load_spec
from testbed.trials import trial_dirs

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "sweep" / "specs" / "smoke.yaml"


def write_spec(path, **changes):
    raw = yaml.safe_load(SMOKE.read_text())
    raw.update(changes)
    raw = {k: v for k, v in raw.items() if v is not None}  # None: drop the key
    path.write_text(yaml.safe_dump(raw))
    return path


def test_smoke_sweep_all_trials_terminate(smoke_experiment, capsys):
    rc, exp = smoke_experiment
    assert rc == 0
    assert main(["status", str(exp)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 + 8 + 1  # header, one row per trial, the summary
    assert all("TERMINATED" in ln and " 4/4 " in ln for ln in lines[1:-1])
    constant = [ln for ln in lines if " constant " in ln]
    assert len(constant) == 2 and all("latents unused" in ln for ln in constant)  # the collapse flag


def test_status_of_many_trials_is_a_row_per_variant_and_the_trials_to_look_at(smoke_experiment, capsys,
                                                                              monkeypatch):
    """Past MANY trials (here 3, for the smoke sweep's 8): a row per variant with its trials by
    state, then only the trials running, failed or flagged (latents unused: both constant trials
    among them), the first MANY of them; --all gives every trial its row again."""
    import sweep.cli

    _, exp = smoke_experiment
    assert main(["status", str(exp), "--all"]) == 0
    every = capsys.readouterr().out.strip().splitlines()
    assert len(every) == 1 + 8 + 1
    flagged = [ln for ln in every[1:-1] if "latents unused" in ln]
    assert sum(" constant " in ln for ln in flagged) == 2
    monkeypatch.setattr(sweep.cli, "MANY", 3)
    assert main(["status", str(exp)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].split()[:5] == ["dataset", "family", "width", "trials", "states"]
    variants = out[1:5]  # k=2, k=8, F-VI, constant (the families' own order): two seeds each, finished
    assert [v.split()[1:3] for v in variants] == [["amortized", "2"], ["amortized", "8"], ["factorized", "-"],
                                                ["constant", "-"]]
    assert all(v.split()[3:6] == ["2", "2", "TERMINATED"] for v in variants)
    more = "; the first 3:" if len(flagged) > 3 else ":"
    assert out[6] == f"{len(flagged)} trials running, waiting, failed or flagged{more}"
    assert [ln.split() for ln in out[8:-1]] == [ln.split() for ln in flagged[:3]]  # their rows, as --all
    assert out[-1].endswith(f"a row per trial: python -m sweep status {exp} --all")


def test_status_of_many_running_trials_lists_the_unfinished(smoke_copy, capsys, monkeypatch):
    """A sweep still running, as its newest snapshot says (two trials RUNNING at epoch 2, one in
    ERROR, one PENDING): past MANY trials the variant rows count them by state, and the trials to
    look at are those four and the flagged ones, nothing else; the finished, unflagged trials are
    left out."""
    import sweep.cli
    from sweep.experiment import experiment_states

    newest = experiment_states(str(smoke_copy))[-1]
    state = json.loads(Path(newest).read_text())
    ids = []
    for i, (status, epoch) in enumerate([("RUNNING", 2), ("RUNNING", 2), ("ERROR", 3), ("PENDING", 0)]):
        trial, meta = json.loads(state["trial_data"][i][0]), json.loads(state["trial_data"][i][1])
        trial["status"] = status
        meta["last_result"] = {**meta["last_result"], "epoch": epoch}
        state["trial_data"][i] = [json.dumps(trial), json.dumps(meta)]
        ids.append(trial["trial_id"])
    Path(newest).write_text(json.dumps(state))

    assert main(["status", str(smoke_copy), "--all"]) == 0
    every = capsys.readouterr().out.strip().splitlines()
    to_look_at = [ln for ln in every[1:-1] if ln.split()[0] in ids or "latents unused" in ln]
    monkeypatch.setattr(sweep.cli, "MANY", 3)
    assert main(["status", str(smoke_copy)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    counts = [ln for ln in out[1:] if ln.startswith("fashion_mnist")][: 4]
    by_state = collections.Counter()
    for n, st in re.findall(r"(\d+) (RUNNING|ERROR|PENDING|TERMINATED)", " ".join(counts)):
        by_state[st] += int(n)  # which variants the four trials fall in depends on Tune's order
    assert (by_state["RUNNING"], by_state["ERROR"], by_state["PENDING"]) == (2, 1, 1)
    assert sum(by_state.values()) == len(state["trial_data"])
    header = next(i for i, ln in enumerate(out) if "trials running, waiting, failed or flagged" in ln)
    assert out[header].startswith(f"{len(to_look_at)} trials")
    shown = [ln.split()[0] for ln in out[header + 2:-1]]
    assert shown == [ln.split()[0] for ln in to_look_at[:3]]  # the first MANY, in the --all order
    assert len(to_look_at) > 3 and set(ids) <= {ln.split()[0] for ln in to_look_at}


def test_export_is_tidy_with_configs(smoke_experiment, tmp_path, capsys):
    _, exp = smoke_experiment
    assert main(["export", str(exp), "-o", str(tmp_path / "r.parquet")]) == 0
    t = pd.read_parquet(tmp_path / "r.parquet")
    assert len(t) == 8 * 4
    assert t.groupby("trial_id")["epoch"].apply(list).map(lambda e: e == [1, 2, 3, 4]).all()
    cells = {
        (f, None if pd.isna(w) else int(w), int(s))
        for f, w, s in t[["family", "width", "seed"]].itertuples(index=False, name=None)
    }
    pairs = [("amortized", 2), ("amortized", 8), ("factorized", None), ("constant", None)]
    want = {(f, w, s) for f, w in pairs for s in (0, 1)}
    assert cells == want
    assert (t["dataset"] == "fashion_mnist").all() and (t["n_train"] == 200).all()
    assert (t["sigma_x"] == 0.3).all() and (t["lr"] == 0.003).all()
    assert t.loc[t.family == "factorized", "test_mse"].isna().all()
    assert t.loc[t.family != "factorized", "test_mse"].notna().all()
    final = t[t.epoch == 4]
    assert final["infer_seconds"].notna().all()
    assert (final.loc[final.family == "factorized", "infer_steps"] > 0).all()
    assert t.loc[t.epoch < 4, "infer_seconds"].isna().all()
    assert (t["torch_threads"] == 1).all()  # one CPU per trial in smoke.yaml: no oversubscription


def test_checkpoints_every_k_epochs_and_at_end(smoke_experiment):
    _, exp = smoke_experiment
    dirs = trial_dirs(exp)
    assert len(dirs) == 8
    for d in dirs.values():
        assert sorted(p.name for p in d.glob("checkpoint_*")) == ["checkpoint_000000", "checkpoint_000001"]
        assert (d / "checkpoint_000001" / "trial.pt").stat().st_size > 0


def test_same_name_again_is_refused(smoke_experiment, capsys):
    _, exp = smoke_experiment
    before = sorted(p.name for p in exp.iterdir())
    assert main(["run", str(SMOKE), "--storage", str(exp.parent)]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "resume" in err and err.count("\n") == 1
    assert sorted(p.name for p in exp.iterdir()) == before


def _corrupt_mnist_root(root):
    from test_data import write_mnist_like

    write_mnist_like(root, "MNIST")
    f = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:-10])


def test_errored_trial_shown_by_status_while_others_finish(ray_address, fashion_available, tmp_path, capsys):
    _corrupt_mnist_root(tmp_path / "data")
    raw = yaml.safe_load(SMOKE.read_text())
    spec = write_spec(
        tmp_path / "s.yaml",
        name="err",
        datasets=["fashion_mnist", "mnist"],
        families=["constant"],
        widths=None,
        seeds=[0],
        train={
            **raw["train"],
            "data_root": str(tmp_path / "data"),
            "n_train": 5,
            "n_test": 3,
            "batch_size": 5,
        },
    )
    assert main(["run", str(spec), "--storage", str(tmp_path / "res")]) == 1
    capsys.readouterr()
    assert main(["status", str(tmp_path / "res" / "err")]) == 0
    rows = capsys.readouterr().out.strip().splitlines()[1:]
    fashion = [r for r in rows if "fashion_mnist" in r]
    mnist = [r for r in rows if " mnist" in r and "fashion" not in r]
    assert len(fashion) == 1 and "TERMINATED" in fashion[0]
    assert len(mnist) == 1 and "ERROR" in mnist[0]
    assert "train-images-idx3-ubyte is truncated or corrupt" in mnist[0]


@pytest.mark.slow  # an Optuna stage of real trials per cell: most of a minute (`make test-all`, CI)
def test_optuna_stage_picks_a_learning_rate_per_cell(ray_address, fashion_available, tmp_path):
    spec = write_spec(
        tmp_path / "s.yaml",
        name="opt",
        families=["amortized", "constant"],
        widths=[4],
        seeds=[0],
        optuna={"lr": [1e-4, 1e-1], "samples": 3, "epochs": 3, "grace_period": 1},
        test_inference=False,
    )
    assert main(["run", str(spec), "--storage", str(tmp_path / "res")]) == 0
    exp = tmp_path / "res" / "opt"
    best = json.loads((exp / "lr_search" / "best_lr.json").read_text())
    assert set(best) == {"fashion_mnist-amortized-k4", "fashion_mnist-constant"}
    assert all(1e-4 <= v <= 1e-1 for v in best.values())
    assert len(list((exp / "lr_search" / "fashion_mnist-constant").glob("*/params.json"))) == 3
    main(["export", str(exp), "-o", str(tmp_path / "r.parquet")])
    t = pd.read_parquet(tmp_path / "r.parquet")
    for (fam, width), lr in t.groupby(["family", "width"], dropna=False)["lr"].first().items():
        key = f"fashion_mnist-{fam}" + (f"-k{width}" if not pd.isna(width) else "")
        assert lr == best[key]
    np.testing.assert_allclose(
        t.loc[t.epoch == 1, "epoch_lr"].to_numpy(), t.loc[t.epoch == 1, "lr"].to_numpy()
    )


def test_spec_files_shipped_validate():
    shipped = sorted(p.stem for p in (ROOT / "sweep" / "specs").glob("*.yaml"))
    assert {"smoke", "quick", "paper", "mb2024", "gap_vs_n", "gap_vs_sigma", "families"} <= set(shipped)
    for name in shipped:
        spec = load_spec(ROOT / "sweep" / "specs" / f"{name}.yaml")
        assert spec.num_trials > 0
    sigma = load_spec(ROOT / "sweep" / "specs" / "gap_vs_sigma.yaml")  # at the paper's scale, 3 x 6 x 2
    assert sigma.num_trials == 36 and sigma.grid == {"sigma_x": [0.1, 0.3, 0.7071]}
    assert (sigma.train["n_train"], sigma.train["batch_size"], sigma.train["epochs"]) == (10_000, 1000, 500)
    gpu = load_spec(ROOT / "sweep" / "specs" / "gap_vs_sigma.yaml",  # its GPU version, as its comment says
                    settings=["train.epochs=5000", "seeds=[0,1,2,3,4]", "resources.gpu=0.25"])
    assert gpu.num_trials == 90 and gpu.resources.gpu == 0.25
    paper = load_spec(ROOT / "sweep" / "specs" / "paper.yaml")
    assert paper.datasets == ("mnist", "fashion_mnist", "cifar10")
    assert paper.widths == (1, 4, 16, 32, 64, 128, 256) and len(paper.seeds) == 5
    assert paper.num_trials == 3 * 9 * 5
    assert (
        paper.train["epochs"],
        paper.train.get("n_train", 10_000),
        paper.train.get("batch_size", 1000),
    ) == (5000, 10_000, 1000)


def test_vectorized_seeds_sweep_matches_separate_trials(ray_address, smoke_experiment, tmp_path):
    """vectorize_seeds: one Tune trial per cell trains both seeds; export gives each seed its
    own rows, with the numbers of the separate trials of the smoke run."""
    _, plain = smoke_experiment
    spec = write_spec(tmp_path / "s.yaml", name="vec", vectorize_seeds=True)
    assert main(["run", str(spec), "--storage", str(tmp_path / "res")]) == 0
    exp = tmp_path / "res" / "vec"
    assert len(trial_dirs(exp)) == 4  # one per cell
    main(["export", str(exp), "-o", str(tmp_path / "v.parquet")])
    main(["export", str(plain), "-o", str(tmp_path / "p.parquet")])
    vec, sep = pd.read_parquet(tmp_path / "v.parquet"), pd.read_parquet(tmp_path / "p.parquet")
    assert vec.trial_id.nunique() == 8 and len(vec) == len(sep) == 32
    key = ["family", "width", "seed", "epoch"]
    both = vec.merge(sep, on=key, suffixes=("_v", "_s"))
    assert len(both) == 32
    np.testing.assert_allclose(both.neg_elbo_v, both.neg_elbo_s, rtol=1e-5)
    np.testing.assert_allclose(both.train_mse_v, both.train_mse_s, rtol=1e-4)
    final = vec[vec.epoch == 4]
    assert final.infer_seconds.notna().all()


def test_forgets_checkpoints_the_storage_lost(smoke_experiment, tmp_path):
    """A state naming a checkpoint that is gone (num_to_keep deleted it after the last snapshot):
    resume drops the name, so Tune no longer fails the trial for good. On a copy: checkpoints are
    found where they are now, relative to the experiment, as Tune's own restore does."""
    import shutil

    from ray.tune import ExperimentAnalysis

    from sweep.runner import forget_missing_checkpoints

    _, exp = smoke_experiment
    copy = tmp_path / "smoke"
    shutil.copytree(exp, copy)
    victim_id, victim = next(iter(trial_dirs(copy).items()))
    shutil.rmtree(victim / "checkpoint_000001")
    assert forget_missing_checkpoints(str(copy)) == 2  # the latest and its entry in the kept list
    trial = next(t for t in ExperimentAnalysis(str(copy)).trials if t.trial_id == victim_id)
    assert trial.checkpoint.path.endswith("checkpoint_000000")
    assert forget_missing_checkpoints(str(copy)) == 0  # nothing left to forget


@pytest.mark.slow
@pytest.mark.cluster
def test_run_never_joins_a_cluster_it_was_not_given(fashion_available, tmp_path):
    """A cluster `ray start` left on this machine (another user's, or a killed run's): `sweep run`
    with no address starts its own Ray, and shuts it down when it ends."""
    import tempfile

    import psutil

    raytmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's unix socket paths
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAY_TMPDIR=raytmp, PYTHONPATH=str(ROOT))
    ray_cli = str(Path(sys.executable).parent / "ray")
    subprocess.run([ray_cli, "start", "--head", "--num-cpus=1", "--include-dashboard=false",
                    "--disable-usage-stats", "--port=0"], env=env, check=True, capture_output=True)
    try:
        spec = write_spec(tmp_path / "s.yaml", name="alone", families=["constant"], widths=None,
                          seeds=[0], train={"n_train": 100, "n_test": 50, "epochs": 2, "batch_size": 50},
                          test_inference=False)
        out = subprocess.run([sys.executable, "-m", "sweep", "run", str(spec), "--storage",
                              str(tmp_path / "res")], env=env, capture_output=True, text=True, timeout=300)
        log = out.stdout + out.stderr
        assert out.returncode == 0, log[-2000:]
        assert "Connecting to existing Ray cluster" not in log and "Started a local Ray instance" in log
    finally:
        procs = psutil.process_iter(["cmdline"])
        stale = [p for p in procs if any(raytmp in arg for arg in p.info["cmdline"] or [])]
        for proc in stale + [c for p in stale for c in p.children(recursive=True)]:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass


def test_a_launch_makes_its_experiment_whole(tmp_path):
    """The directory appears with its spec inside (made aside, renamed): a launch killed at any
    point leaves nothing (launch again) or an experiment `resume` can read."""
    from sweep.experiment import SPEC_FILE, SweepError
    from sweep.runner import _claim

    exp = tmp_path / "res" / "x"
    _claim(str(exp), {"name": "x"})
    assert json.loads((exp / SPEC_FILE).read_text()) == {"name": "x"}
    assert [p.name for p in exp.parent.iterdir()] == ["x"]  # nothing left aside
    with pytest.raises(SweepError, match="already exists"):
        _claim(str(exp), {"name": "y"})
    assert json.loads((exp / SPEC_FILE).read_text()) == {"name": "x"}


def test_a_spec_file_tune_left_empty_is_read_from_its_copy(tmp_path):
    """Tune, restoring an experiment, copies its top-level files back over themselves at every
    save: a resume killed then leaves sweep-spec.json empty. The spec is read from its copy."""
    from sweep.experiment import SPEC_FILE, read_spec
    from sweep.runner import _claim

    raw = yaml.safe_load(SMOKE.read_text())
    exp = tmp_path / "res" / "smoke"
    _claim(str(exp), {**raw, "storage": str(tmp_path / "res")})
    (exp / SPEC_FILE).write_bytes(b"")
    assert read_spec(str(exp)).name == "smoke"
    assert sorted(p.name for p in exp.iterdir()) == [".sweep", SPEC_FILE]


def test_resume_after_a_kill_between_tuners_pickle_and_its_first_state(ray_address, fashion_available,
                                                                         tmp_path, monkeypatch):
    """A driver killed after Tune wrote tuner.pkl but before its first experiment state: restored
    from the pickle, Tune would rebuild the grid without the sweep's param space; `resume` runs the
    grid from the start instead, and every trial finishes."""
    from ray import tune

    from sweep.runner import resume_sweep, run_sweep

    spec = load_spec(write_spec(tmp_path / "s.yaml", name="early", widths=[2], seeds=[0],
                                families=["amortized", "constant"], test_inference=False),
                     storage=str(tmp_path / "res"))
    exp = tmp_path / "res" / "early"

    def killed(self):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(tune.Tuner, "fit", killed)
        with pytest.raises(KeyboardInterrupt):
            run_sweep(spec)
    assert (exp / "tuner.pkl").exists() and not list(exp.glob("experiment_state-*.json"))
    _, states = resume_sweep(str(exp))
    assert states == ["TERMINATED", "TERMINATED"]
