"""A Tune trial's work without Ray: the newest readable checkpoint, the replay, the report rows."""

import json

import pyarrow.fs as pafs
import pytest
import torch

from sweep import trialrun
from sweep.trialrun import REPORT_FILE, STATE_FILE, TrialRun, checkpoint_dirs, newest_state
from trainables import TrialConfig, load

CFG = dict(n_train=200, n_test=50, batch_size=100, sigma_x=0.3, theta_init="torch", epochs=6,
           latent_dim=8, hidden_dim=16)


def opts(**kw):
    return {"seeds": None, "report_every": 2, "checkpoint_every": 4, "test_inference": {"max_steps": 5}, **kw}


@pytest.fixture(scope="module")
def fashion(fashion_available):
    return load("fashion_mnist", 200, 50)


def _checkpoint(trial_dir, run, epoch):
    d = trial_dir / f"checkpoint_{epoch:06d}"
    d.mkdir(parents=True)
    run.save(d, {"epoch": epoch, "said": "at checkpoint"})
    return d


def test_newest_readable_checkpoint_wins_and_a_damaged_one_is_skipped(fashion, tmp_path, capsys):
    run = TrialRun(TrialConfig(family="constant", **CFG, eval_every=2), opts(), fashion, torch.device("cpu"))
    for epoch in (1, 2, 3):
        list(run.run.train(epoch))
        _checkpoint(tmp_path, run, epoch)
    found = checkpoint_dirs(pafs.LocalFileSystem(), str(tmp_path))
    assert [p.rsplit("/", 1)[1] for _, p in found] == ["checkpoint_000003", "checkpoint_000002",
                                                       "checkpoint_000001"]
    state, row = newest_state(found, torch.device("cpu"))
    assert state["seeds"][0]["epoch"] == 3 and row == {"epoch": 3, "said": "at checkpoint"}
    newest = tmp_path / "checkpoint_000003" / STATE_FILE
    newest.write_bytes(newest.read_bytes()[:100])  # cut short mid-write
    (tmp_path / "checkpoint_000002" / REPORT_FILE).unlink()  # its row never written
    state, row = newest_state(found, torch.device("cpu"))
    assert state["seeds"][0]["epoch"] == 1 and row["epoch"] == 1
    said = capsys.readouterr().out
    assert "checkpoint_000003 unreadable, trying an older one" in said
    assert "checkpoint_000002 unreadable" in said
    nothing = checkpoint_dirs(pafs.LocalFileSystem(), str(tmp_path / "none"))
    assert newest_state(nothing, "cpu") == (None, None)


def test_checkpointed_trials_give_each_seed_at_its_newest_checkpoint(fashion, tmp_path):
    config = {**CFG, "cell": {"dataset": "fashion_mnist", "family": "constant", "width": None, "axes": {},
                              "settings": {}, "family_options": {}},
              "seeds": [3, 5], "report_every": 2, "checkpoint_every": 4, "test_inference": {"max_steps": 5}}
    fs = pafs.LocalFileSystem()
    with pytest.raises(FileNotFoundError, match="no readable checkpoint"):
        trialrun.checkpointed_trials(fs, str(tmp_path), config, torch.device("cpu"))
    run = TrialRun(TrialConfig(family="constant", **CFG, eval_every=2), opts(seeds=[3, 5]), fashion,
                   torch.device("cpu"))
    for epoch in (1, 2):
        list(run.run.train(epoch))
        _checkpoint(tmp_path, run, epoch)
    trials = trialrun.checkpointed_trials(fs, str(tmp_path), config, torch.device("cpu"))
    assert [(t.cfg.seed, t.epoch) for t in trials] == [(3, 2), (5, 2)]
    for got, want in zip(trials, run.runs, strict=True):
        assert torch.equal(got.decoder.mean, want.decoder.mean)


def test_rows_replay_and_checkpoints(fashion, tmp_path):
    cfg = TrialConfig(family="amortized", width=4, **CFG, eval_every=2)
    fresh = TrialRun(cfg, opts(), fashion, torch.device("cpu"))
    assert fresh.replay(None) == []
    rows = []
    for row, due in fresh.rows():
        rows.append((row["epoch"], due, row["infer_steps"]))
        if row["epoch"] == 4:
            _checkpoint(tmp_path, fresh, 4)
    # reports every 2 epochs and at the end; checkpoints every 4 and at the end; inference at the end
    assert rows == [(2, False, None), (4, True, None), (6, True, 0)]
    state, last = newest_state(checkpoint_dirs(pafs.LocalFileSystem(), str(tmp_path)), "cpu")
    resumed = TrialRun(cfg, opts(), fashion, torch.device("cpu"), state)
    replayed = resumed.replay(last)
    assert [r["epoch"] for r in replayed] == [2, 4] and replayed[-1] is last
    assert replayed[0]["train_mse"] == pytest.approx(fresh.runs[0].history[1]["train_mse"])
    rest = [row for row, _ in resumed.rows()]
    assert [r["epoch"] for r in rest] == [6]
    assert rest[0]["neg_elbo"] == pytest.approx(fresh.runs[0].history[-1]["neg_elbo"], rel=1e-6)


def test_vectorized_rows_carry_each_seed(fashion):
    cfg = TrialConfig(family="constant", **CFG, eval_every=2)
    run = TrialRun(cfg, opts(seeds=[3, 5]), fashion, torch.device("cpu"))
    row, _ = next(run.rows())
    assert {"seed3/neg_elbo", "seed5/neg_elbo", "seed3/infer_seconds", "torch_threads"} <= set(row)
    assert row["neg_elbo_per_datapoint"] == pytest.approx(
        (row["seed3/neg_elbo_per_datapoint"] + row["seed5/neg_elbo_per_datapoint"]) / 2)
    json.dumps(row)  # what goes into report.json
