"""Spec validation: every problem at once, one line, exit 2, nothing launched or written."""

from pathlib import Path

import pytest
import yaml

from sweep.cli import main
from sweep.spec import SpecError, parse_spec
from sweep.specfile import load_spec
from sweep.tuneconfig import Cell, split_config
from trainables.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]
GOOD = yaml.safe_load((ROOT / "sweep" / "specs" / "smoke.yaml").read_text())


def test_fan_out_is_datasets_seeds_widths():
    spec = parse_spec(
        {**GOOD, "datasets": ["mnist", "fashion_mnist"], "widths": [1, 4, 16], "seeds": [0, 1, 2]}
    )
    assert spec.num_trials == 2 * 3 * (3 + 1 + 1)
    cells = spec.cells()
    assert Cell(dataset="mnist", family="amortized", width=16, axes={}, settings={},
                family_options={}) in cells
    assert sum(c.family == "factorized" for c in cells) == 2  # once per dataset
    cfg = spec.trial_config(cells[0], 2)
    assert (cfg.seed, cfg.n_train, cfg.eval_every) == (2, 200, GOOD["report_every"])


BAD = [
    ({"colour": "red"}, "unknown key(s) ['colour']"),
    ({"datasets": ["svhn"]}, "datasets=['svhn'] has ['svhn'], not from: mnist"),
    ({"datasets": []}, "datasets=[] must be a non-empty list"),
    ({"families": ["planar"]},
     "families=['planar'] has ['planar'], not from: amortized, factorized, constant"),
    ({"widths": [0, 4]}, "widths=[0, 4] has [0], not integers >= 1"),
    ({"widths": [-8]}, "widths=[-8] has [-8], not integers >= 1"),
    ({"widths": []}, "widths=[] must be a non-empty list"),
    ({"seeds": [0, 1.5]}, "seeds=[0, 1.5] has [1.5], not integers >= 0"),
    ({"seeds": ["a"]}, "seeds=['a'] has ['a'], not integers >= 0"),
    ({"seeds": [1, 1]}, "seeds=[1, 1] lists an entry twice"),
    ({"train": {**GOOD["train"], "n_train": 0}}, "n_train=0 must be a positive integer"),
    ({"train": {**GOOD["train"], "epochs": 2.5}}, "epochs=2.5 must be a positive integer"),
    ({"train": {**GOOD["train"], "learning_rate": 1}}, "train: unknown setting(s) ['learning_rate']"),
    ({"train": {**GOOD["train"], "seed": 3}}, "train: ['seed'] are set by the fan-out"),
    ({"report_every": 0}, "report_every=0 must be a positive integer"),
    ({"checkpoint_every": 3, "report_every": 2}, "checkpoint_every=3 must be a multiple of report_every=2"),
    ({"resources": {"cpu": 0}}, "resources.cpu=0 must be a positive finite number"),
    ({"resources": {"gpu": -1}}, "resources.gpu=-1"),
    ({"resources": {"tpu": 1}}, "resources: unknown resources key(s) ['tpu']; accepted: cpu, gpu"),
    ({"storage": "ftp://host/x"}, "scheme 'ftp' is not one of"),
    ({"storage": "/proc/no/such"}, "storage='/proc/no/such': /proc is not writable"),
    ({"max_failures": "x"}, "max_failures='x'"),
    ({"optuna": {"lr": [1e-2, 1e-4]}}, "optuna.lr=[0.01, 0.0001] must be [low, high]"),
    ({"optuna": {"samples": 0}}, "optuna.samples=0 must be a positive integer"),
    ({"name": "a/b"}, "name='a/b' must be a non-empty string"),
    ({"families": ["constant"]}, "widths given but no family in families has an encoder width"),
    ({"grid": {"seed": [1, 2]}}, "grid.seed: not a setting that can be an axis (already an axis"),
    ({"grid": {"n_train": []}}, "grid.n_train=[] must be a non-empty list of distinct values"),
    ({"grid": {"colour": [1]}}, "grid.colour: not a setting that can be an axis (accepted: n_train"),
    ({"grid": {"lr": [0.1]}, "family_train": {"factorized": {"lr": 0.2}}},
     "grid.lr and family_train.factorized.lr both set lr"),
    ({"grid": {"batch_size": [100, 400]}}, "batch_size=400 exceeds n_train=200"),
    ({"grid": {"sigma_x": ["big"]}}, "sigma_x='big' must be a positive finite number"),
    ({"family_options": {"factorized": {"init": "zeros"}}},
     "family_options.init='zeros' is not one of prior"),
    ({"family_options": {"factorized": {"colour": 1}}}, "unknown factorized option(s) ['colour']"),
    ({"family_modules": ["no_such_module_here"]}, "family module 'no_such_module_here' cannot be imported"),
    ({"train": {**GOOD["train"], "batch_size": 500}}, "batch_size=500 exceeds n_train=200"),
]


@pytest.mark.parametrize("change, words", BAD, ids=[w[:30] for _, w in BAD])
def test_bad_spec_is_refused_with_its_message(tmp_path, capsys, change, words):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**GOOD, "storage": str(tmp_path / "res"), **change}))
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert words in err, err
    assert err.count("\n") == 1 and err.startswith("python -m sweep: error:")
    assert not (tmp_path / "res").exists()  # nothing launched, nothing written


def test_every_problem_at_once():
    with pytest.raises(SpecError) as e:
        parse_spec({**GOOD, "datasets": ["svhn"], "seeds": [-1], "report_every": 0, "bogus": 1})
    msg = str(e.value)
    assert "1 problem(s)" in msg and "['bogus']" in msg  # unknown keys first: the rest is not read
    with pytest.raises(SpecError) as e:
        parse_spec({**GOOD, "datasets": ["svhn"], "seeds": [-1], "report_every": 0, "widths": [0]})
    msg = str(e.value)
    assert "4 problem(s)" in msg
    for w in ("svhn", "seeds=[-1]", "report_every=0", "widths=[0]"):
        assert w in msg


@pytest.mark.parametrize(
    "text, words",
    [
        ("name: [unclosed", "not readable YAML"),
        ("- just\n- a list", "expected a mapping of keys, got list"),
        ("name: x\n", "missing key 'datasets'"),
    ],
)
def test_unreadable_specs(tmp_path, capsys, text, words):
    (tmp_path / "s.yaml").write_text(text)
    assert main(["run", str(tmp_path / "s.yaml")]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


def test_missing_spec_file(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.yaml")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_storage_that_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    raw = {**GOOD, "storage": str(tmp_path / "f" / "sub")}
    assert parse_spec(raw).storage == str(tmp_path / "f" / "sub")  # reading a spec checks no disk
    with pytest.raises(SpecError, match="is a file, not a directory"):
        parse_spec(raw, launch=True)


def test_relative_data_root_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = parse_spec({**GOOD, "train": {**GOOD["train"], "data_root": "data"}})
    assert spec.train["data_root"] == str(tmp_path / "data")


def test_tune_config_with_unknown_key_is_refused():
    spec = load_spec(ROOT / "sweep" / "specs" / "smoke.yaml")
    config = {**spec.tune_base(), "cell": spec.cells()[0].tune(), "seed": 0}
    assert split_config(config)[0].family == "amortized"
    with pytest.raises(ConfigError, match="unknown config key"):
        split_config({**config, "learning_rate": 0.1})


@pytest.mark.parametrize("cmd", ["status", "export", "resume"])
def test_commands_on_a_non_experiment(tmp_path, capsys, cmd):
    (tmp_path / "notes.txt").write_text("keep me")
    args = [cmd, str(tmp_path)] + (["-o", str(tmp_path / "o.parquet")] if cmd == "export" else [])
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "is not a sweep experiment" in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_cluster_yaml_validates_with_rays_own_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    validate_config(prepare_config(config))
    assert config["provider"]["type"] == "aws"
    assert any("pip install" in c and "amortization-gap" in c for c in config["setup_commands"])
    broken = {**config, "available_node_types": {"head": {"node_config": {}}}}
    with pytest.raises(Exception):  # noqa: B017 - Ray raises jsonschema's ValidationError
        validate_config(prepare_config(broken))


def test_family_train_overrides_reach_the_trial_config():
    spec = parse_spec({**GOOD, "family_train": {"factorized": {"lr": 0.01, "epochs": 8}}})
    by_family = {c.family: spec.trial_config(c, 0) for c in spec.cells()}
    assert (by_family["factorized"].lr, by_family["factorized"].epochs) == (0.01, 8)
    assert by_family["constant"].lr == GOOD["train"]["lr"]


@pytest.mark.parametrize(
    "family_train, words",
    [
        ({"planar": {"lr": 1}}, "family_train: 'planar' is not in families"),
        ({"factorized": {"family_options": {}}}, "family_options by the top-level key"),
        (
            {"factorized": {"learning_rate": 1}},
            "family_train.factorized: unknown setting(s) ['learning_rate']",
        ),
        ({"factorized": {"lr": -1}}, "lr=-1 must be a positive finite number"),
        ([1], "family_train=[1] must be a mapping"),
    ],
)
def test_bad_family_train(family_train, words):
    with pytest.raises(SpecError) as e:
        parse_spec({**GOOD, "family_train": family_train})
    assert words in str(e.value)


def test_vectorized_seeds_take_a_family_by_what_its_options_make_it():
    """SA-VAE refines q by autograd, which vmap cannot batch; with steps 0 it is the amortized
    family exactly and vectorizes (what a family does is read off an instance with its options)."""
    base = {**GOOD, "families": ["sa_vae", "amortized"], "vectorize_seeds": True}
    assert parse_spec({**base, "family_options": {"sa_vae": {"steps": 0}}}).num_trials == len(parse_spec(
        {**base, "family_options": {"sa_vae": {"steps": 0}}}).cells())
    with pytest.raises(SpecError, match="vectorize_seeds with sa_vae: its refinement cannot be batched"):
        parse_spec({**base, "family_options": {"sa_vae": {"steps": 3}}})


def test_settings_from_the_command_line_override_the_file(tmp_path):
    """`sweep run SPEC --set KEY=VALUE`: dotted keys reach nested settings, values are YAML, a key
    the file lacks is added (evaluate.points makes evaluate a mapping), later ones win, the
    result is validated like a file, and the file is left as it was."""
    path = tmp_path / "spec.yaml"
    path.write_text((ROOT / "sweep" / "specs" / "smoke.yaml").read_text())
    before = path.read_text()
    spec = load_spec(path, settings=["train.epochs=7", "seeds=[3, 4, 5]", "resources.gpu=0.25",
                                     "evaluate.points=9", "train.epochs=8"])
    assert spec.train["epochs"] == 8 and spec.seeds == (3, 4, 5) and spec.resources.gpu == 0.25
    assert spec.evaluate["points"] == 9
    assert spec.num_trials == len(spec.cells()) * 3
    assert path.read_text() == before
    with pytest.raises(SpecError, match=r"--set seeds=\[0.5\].*seeds=\[0.5\]"):
        load_spec(path, settings=["seeds=[0.5]"])


def test_an_evaluate_setting_may_be_its_own_default():
    """evaluate.seed defaults to 0, so 0 is accepted (and a negative seed refused in one line);
    the counts stay positive."""
    assert parse_spec({**GOOD, "evaluate": {"seed": 0}}).evaluate == {"seed": 0}
    with pytest.raises(SpecError, match=r"evaluate.seed=-1 must be a non-negative integer"):
        parse_spec({**GOOD, "evaluate": {"seed": -1}})
    with pytest.raises(SpecError, match=r"evaluate.points=0 must be a positive integer"):
        parse_spec({**GOOD, "evaluate": {"points": 0}})
