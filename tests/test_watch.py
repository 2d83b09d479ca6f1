"""Watching a sweep: a readable display in plain lines, quiet logs, status --watch, MLflow, and
errors inside `evaluate` as one line."""

import re
from pathlib import Path

from sweep.cli import main
from sweep.progress import summary

SMOKE = Path(__file__).resolve().parents[1] / "sweep" / "specs" / "smoke.yaml"


def test_run_prints_every_trial_in_full_and_no_checkpoint_lines(smoke_run):
    """`sweep run` with its output a pipe (CI, `ray job submit`): plain lines, every trial's family
    and width whole, no per-checkpoint noise from the workers, and the last line counts the trials."""
    rc, _, out = smoke_run
    assert rc == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert "Checkpoint successfully created" not in out.stdout + out.stderr
    assert "snapshotting has been triggered" not in out.stdout + out.stderr  # Tune's note to itself
    rows = [ln.split() for ln in lines if ln.startswith("fashion_mnist ")]
    finals = {(r[1], r[2], r[3]) for r in rows if r[4] == "TERMINATED" and r[5] == "4/4"}
    assert finals == {(f, w, s) for f, w in (("amortized", "2"), ("amortized", "8"), ("factorized", "-"),
                                              ("constant", "-")) for s in ("0", "1")}
    assert lines[-1] == "8 trials: 8 TERMINATED"
    display = [ln for ln in lines if ln.startswith(("fashion_mnist ", "dataset ")) or " trials: " in ln]
    assert max(len(ln) for ln in display) <= 120  # the display fits a 120-column terminal


def test_the_display_counts_a_trial_finished_when_tune_says_so(ray_address, tmp_path):
    """A real Tune run of two trials with the sweep's display: as each trial completes, its line
    is TERMINATED at its last epoch (Tune's on_trial_complete comes before it sets the status, so a
    display reading the status there kept it RUNNING to the end), and the summary counts it."""
    from ray import tune

    from sweep.display import SweepDisplay
    from sweep.specfile import load_spec

    spec = load_spec(SMOKE)
    display = SweepDisplay(list(spec.grid))

    seen = {}

    class Seen(tune.Callback):  # after the display: what it holds when a trial completes
        def on_trial_complete(self, iteration, trials, trial, **info):
            seen[trial.trial_id] = (display.progress.lines[trial.trial_id].state,
                                    display.progress.lines[trial.trial_id].epoch)

    def two_epochs(config):
        for epoch in (1, 2):
            tune.report({"epoch": epoch, "neg_elbo_per_datapoint": 10.0 / epoch})

    cells = [c.tune() for c in spec.cells()[:2]]
    tune.Tuner(two_epochs, param_space={**spec.tune_base(), "cell": tune.grid_search(cells), "seed": 0},
               run_config=tune.RunConfig(storage_path=str(tmp_path), callbacks=[display, Seen()],
                                         verbose=0)).fit()
    assert list(seen.values()) == [("TERMINATED", 2)] * 2
    assert summary(list(display.progress.lines.values())).startswith("2 trials: 2 TERMINATED")


def test_status_watch_on_an_ended_sweep_and_its_summary(smoke_experiment, capsys):
    _, exp = smoke_experiment
    assert main(["status", str(exp), "--watch", "--every", "0.1"]) == 0  # every trial ended: once
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == "8 trials: 8 TERMINATED; epochs 32/32"
    assert main(["status", str(exp), "--every", "0"]) == 2
    assert "--every 0.0 must be a positive number" in capsys.readouterr().err


def test_mlflow_gets_every_trial_with_its_config_and_metrics(smoke_experiment):
    """The smoke experiment is tracked (`tracking: {mlflow: {}}`, tests/conftest.py)."""
    from mlflow.tracking import MlflowClient

    _, exp = smoke_experiment
    client = MlflowClient(f"sqlite:///{exp / 'mlflow.db'}")  # the default: beside the results
    runs = client.search_runs([client.get_experiment_by_name("smoke").experiment_id])
    assert len(runs) == 8
    for run in runs:
        assert run.data.params["cell/dataset"] == "fashion_mnist" and run.data.params["seed"] in ("0", "1")
        history = client.get_metric_history(run.info.run_id, "neg_elbo_per_datapoint")
        assert [m.step for m in history] == [1, 2, 3, 4] and all(m.value > 0 for m in history)
    assert {r.data.params["cell/family"] for r in runs} == {"amortized", "factorized", "constant"}


def test_an_error_inside_evaluate_is_one_line_naming_the_trial(smoke_copy, capsys):
    """Two trials to evaluate again, one of them with no readable checkpoint: one line naming it,
    and the other's gap.json written."""
    victim = sorted(d for d in smoke_copy.iterdir() if d.is_dir() and "constant" in d.name)[0]
    other = sorted(d for d in smoke_copy.iterdir() if d.is_dir() and "amortized" in d.name)[0]
    for d in (victim, other):
        (d / "gap.json").unlink()
    for ck in victim.glob("checkpoint_*"):
        (ck / "trial.pt").write_bytes(b"not a checkpoint")
    assert main(["evaluate", str(smoke_copy)]) == 2  # the spec's settings: only the two without gap.json
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    said = rf"evaluate failed for 1 of 2 trial\(s\): {victim.name}: \w+Error: .*no readable checkpoint"
    assert re.search(said, err)
    assert (other / "gap.json").exists() and not (victim / "gap.json").exists()  # the other finished
