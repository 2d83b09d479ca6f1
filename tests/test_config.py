import pytest

from trainables.config import ConfigError, TrialConfig, field_names

GOOD = dict(family="amortized", width=8)


def test_defaults_are_the_papers():
    c = TrialConfig(**GOOD)
    assert (c.n_train, c.n_test, c.batch_size, c.epochs, c.lr) == (10_000, 10_000, 1_000, 5_000, 1e-3)
    assert (c.latent_dim, c.hidden_dim, c.slope, c.sigma_theta) == (64, 256, 0.2, 1.0)
    assert c.theta_init == "paper"


@pytest.mark.parametrize(
    "bad, words",
    [
        (dict(dataset="svhn"), ["dataset='svhn'", "fashion_mnist"]),
        (dict(family="planar"), ["family='planar'", "factorized"]),
        (dict(n_train=0), ["n_train=0", "positive integer"]),
        (dict(n_test=-3), ["n_test=-3"]),
        (dict(epochs=2.5), ["epochs=2.5"]),
        (dict(batch_size=True), ["batch_size=True"]),
        (dict(width=0), ["width=0", "amortized"]),
        (dict(family="amortized", width=None), ["width=None"]),
        (dict(family="factorized", width=8), ["width=8", "applies only"]),
        (dict(sigma_x=0.0), ["sigma_x=0.0"]),
        (dict(lr=float("nan")), ["lr=nan"]),
        (dict(slope=1.5), ["slope=1.5"]),
        (dict(seed=-1), ["seed=-1"]),
        (dict(theta_init="xavier"), ["theta_init='xavier'"]),
        (dict(lr_schedule="cosine"), ["lr_schedule='cosine'"]),
        (dict(n_train=100, batch_size=200), ["batch_size=200 exceeds n_train=100"]),
    ],
)
def test_bad_values_name_the_value(bad, words):
    with pytest.raises(ConfigError) as e:
        TrialConfig(**{**GOOD, **bad})
    msg = str(e.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg


def test_every_problem_reported_at_once():
    with pytest.raises(ConfigError) as e:
        TrialConfig(dataset="svhn", n_train=0, lr=-1.0, family="amortized", width=3)
    assert all(w in str(e.value) for w in ("dataset='svhn'", "n_train=0", "lr=-1.0"))


def test_unknown_keys_refused_by_name():
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) \['learning_rate'\]"):
        TrialConfig.from_dict({**GOOD, "learning_rate": 0.1})


def test_round_trip():
    c = TrialConfig(**GOOD, seed=3)
    assert TrialConfig.from_dict(c.to_dict()) == c
    assert set(c.to_dict()) == set(field_names())
