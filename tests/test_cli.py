"""`python -m trainables run`: a real run on real Fashion-MNIST, and bad input with exit 2."""

import json
import os
import subprocess
import sys

import pytest

from trainables.cli import main


def test_one_trial_command_prints_json_per_epoch(fashion_available, tmp_path):
    cmd = [sys.executable, "-m", "trainables", "run", "--dataset", "fashion_mnist",
           "--family", "amortized", "--width", "16", "--epochs", "3", "--n-train", "300",
           "--n-test", "100", "--batch-size", "100", "--device", "cpu", "--json", "--threads", "1"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=os.environ.copy())
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["epoch"] for r in rows if r["event"] == "epoch"] == [1, 2, 3]
    assert [r["event"] for r in rows[-2:]] == ["test_inference", "done"]
    assert rows[-2]["steps"] == 0 and rows[-1]["epochs"] == 3 and rows[-1]["wall_seconds"] > 0


@pytest.mark.parametrize("family", ["factorized", "constant"])
def test_other_families_and_resume(fashion_available, tmp_path, capsys, family):
    base = ["run", "--family", family, "--n-train", "200", "--n-test", "50", "--batch-size", "100",
            "--json", "--device", "cpu", "--save", str(tmp_path / "s.pt")]
    assert main([*base, "--epochs", "4"]) == 0
    full = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert main([*base, "--epochs", "4", "--resume", str(tmp_path / "s.pt"), "--skip-inference"]) == 0
    again = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r["event"] for r in again] == ["done"]  # all 4 epochs already done: nothing re-run
    assert full[-2]["event"] == "test_inference"
    assert (full[-2]["steps"] > 0) == (family == "factorized")


@pytest.mark.parametrize(
    "args, words",
    [
        (["--family", "planar"], ["family='planar' is not one of", "amortized"]),
        (["--family", "factorized", "--family-option", "init=zeros"],
         ["family_options.init='zeros'", "random"]),
        (["--family", "factorized", "--family-option", "colour"], ["'colour' is not KEY=VALUE"]),
        (["--family", "constant", "--shuffle", "maybe"], ["'maybe' is not true or false"]),
        (["--family", "constant", "--family-module", "no_such_mod"], ["'no_such_mod' cannot be imported"]),
        (["--dataset", "svhn"], ["invalid choice: 'svhn'"]),
        (["--n-train", "0"], ["n_train=0", "positive integer"]),
        (["--n-test", "-5"], ["n_test=-5"]),
        (["--epochs", "two"], ["--epochs", "invalid int value: 'two'"]),
        (["--family", "amortized"], ["width=None", "amortized"]),
        (["--family", "amortized", "--width", "0"], ["width=0"]),
        (["--family", "constant", "--width", "8"], ["width=8", "applies only"]),
        (["--family", "constant", "--n-train", "10", "--batch-size", "20"], ["batch_size=20 exceeds"]),
        (["--family", "constant", "--device", "tpu"], ["--device 'tpu'"]),
        (["--family", "constant", "--threads", "0"], ["--threads 0"]),
        (["--family", "constant", "--dataset", "mnist", "--data-root", "/nonexistent/x"],
         ["dataset 'mnist' not found", "/nonexistent/x"]),
        (["--family", "constant", "--lr", "-1"], ["lr=-1.0"]),
        (["--bogus"], ["unrecognized arguments: --bogus"]),
    ],
)
def test_bad_input_exits_2_with_one_line(capsys, args, words):
    assert main(["run", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("python -m trainables: error:")
    for w in words:
        assert w in err


def test_resume_with_other_settings_is_refused(fashion_available, tmp_path, capsys):
    base = ["run", "--family", "constant", "--n-train", "200", "--n-test", "50", "--batch-size", "100",
            "--epochs", "1", "--skip-inference"]
    assert main([*base, "--save", str(tmp_path / "s.pt")]) == 0
    before = (tmp_path / "s.pt").read_bytes()
    assert main([*base, "--lr", "0.01", "--resume", str(tmp_path / "s.pt")]) == 2
    assert "saved run differs in lr" in capsys.readouterr().err
    assert (tmp_path / "s.pt").read_bytes() == before  # nothing written over


def test_data_command(fashion_available, capsys):
    assert main(["data", "--dataset", "fashion_mnist"]) == 0
    assert "fashion_mnist: available from Debian files" in capsys.readouterr().out
    assert main(["data", "--dataset", "mnist", "--data-root", "/nonexistent"]) == 2
    err = capsys.readouterr().err
    assert "dataset 'mnist' not found" in err and err.count("\n") == 1


def test_seeds_run_as_one_vectorized_batch(fashion_available, capsys):
    base = ["run", "--family", "constant", "--n-train", "200", "--n-test", "50", "--batch-size", "100",
            "--epochs", "2", "--json", "--skip-inference"]
    assert main([*base, "--seeds", "3", "5"]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    epochs = [(r["seed"], r["epoch"]) for r in rows if r["event"] == "epoch"]
    assert epochs == [(3, 1), (5, 1), (3, 2), (5, 2)]
    assert main([*base, "--seed", "5"]) == 0
    alone = [json.loads(x) for x in capsys.readouterr().out.splitlines() if '"epoch"' in x]
    assert alone[-1]["neg_elbo"] == pytest.approx(rows[3]["neg_elbo"], rel=1e-5)
    assert main([*base, "--seeds", "1", "1"]) == 2
    assert "--seeds [1, 1] must be distinct" in capsys.readouterr().err
