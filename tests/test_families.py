import pytest
import torch

from trainables.config import TrialConfig
from trainables.families import FAMILIES, Factorized, build
from trainables.fit import optimizers

N, D, d = 30, 12, 4


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_q_shapes_and_finite(name):
    cfg = TrialConfig(family=name, width=8 if FAMILIES[name].has_width else None, latent_dim=d)
    fam = build(cfg, N, D)
    x, idx = torch.rand(5, D), torch.tensor([0, 3, 9, 29, 4])
    q = fam.q(x, idx)
    assert q.point().shape == (5, d) and isinstance(q, fam.q_type)
    assert all(torch.isfinite(v).all() for v in q.local().values())
    z = q.sample(torch.randn(3, 5, d))
    assert z.shape == (3, 5, d) and q.kl(z).shape == (5,) and torch.isfinite(q.kl(z)).all()
    if q.closed_form_kl:  # a Monte Carlo KL of three draws may come out below zero
        assert (q.kl(z) >= 0).all()


def test_amortized_has_two_hidden_layers_of_width_k():
    fam = build(TrialConfig(family="amortized", width=16, latent_dim=d), N, D)
    linears = [m for m in fam.body if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(D, 16), (16, 16)]
    assert (fam.mean_head.in_features, fam.mean_head.out_features) == (16, d)


def test_constant_is_shared_and_factorized_is_per_row():
    const = build(TrialConfig(family="constant", latent_dim=d), N, D)
    m, _ = const(torch.rand(3, D), torch.tensor([0, 1, 2]))
    assert torch.equal(m[0], m[2])
    fac = Factorized(N, d)
    with torch.no_grad():
        fac.mean.copy_(torch.arange(N * d, dtype=torch.float32).view(N, d))
    m, _ = fac(None, torch.tensor([5, 2]))
    assert torch.equal(m, fac.mean[[5, 2]])


def test_factorized_step_leaves_other_rows_untouched():
    """Sparse rows + SparseAdam: rows outside the minibatch do not move, even with momentum."""
    fac = Factorized(N, d)
    (opt,) = [o for o in optimizers([fac], lr=0.1) if isinstance(o, torch.optim.SparseAdam)]

    def step(idx):
        opt.zero_grad()
        m, lv = fac(None, idx)
        ((m - 1.0).square().sum() + lv.square().sum()).backward()
        assert fac.table.weight.grad.is_sparse
        opt.step()

    first, second = torch.tensor([0, 1, 2]), torch.tensor([10, 11])
    step(first)
    before = fac.mean.detach().clone()
    step(second)
    after = fac.mean.detach()
    moved = (after != before).any(dim=1).nonzero().flatten().tolist()
    assert moved == [10, 11]  # dense Adam would also move rows 0-2 by their momentum
    assert torch.equal(after[:3], before[:3])


def test_dense_adam_gets_no_sparse_table():
    fac = Factorized(N, d)
    opts = optimizers([fac, torch.nn.Linear(2, 2)], lr=0.1)
    assert [type(o).__name__ for o in opts] == ["Adam", "SparseAdam"]
    dense_ids = {id(p) for g in opts[0].param_groups for p in g["params"]}
    assert id(fac.table.weight) not in dense_ids


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_what_a_family_declares_is_read_without_torch_and_is_its_implementations(name):
    """The spec checks, status and the analysis read a family's declarations (families.declared),
    which import no torch; the trial's implementation inherits the same ones."""
    from dataclasses import fields

    from trainables import families

    decl, impl = families.declared(name), families.get(name)
    assert issubclass(impl, decl) and impl.__module__.startswith("trainables.families.")
    for attr in ("name", "label", "order", "has_width", "has_test_time_q", "per_datapoint", "refinable",
                 "Options"):
        assert getattr(impl, attr) == getattr(decl, attr), attr
    assert impl.variant(16) == decl.variant(16) and decl.name == name
    assert [f.name for f in fields(decl.Options)] == [f.name for f in fields(impl.Options)]


def test_reading_declarations_and_configs_imports_no_torch():
    """In a fresh interpreter: every family's declarations, a valid trial config and a bad one's
    message, and sweep.results' family columns, with torch never imported."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from trainables import families\n"
        "from trainables.config import ConfigError, TrialConfig\n"
        "from sweep.results import family_columns\n"
        "assert [families.declared(n).name for n in families.names()][:3] == "
        "['amortized', 'factorized', 'constant']\n"
        "assert family_columns('amortized', 64)['variant'] == 'k=64'\n"
        "assert family_columns('factorized', None)['per_datapoint']\n"
        "TrialConfig(family='factorized', family_options={'optimizer': 'dense'})\n"
        "try:\n"
        "    TrialConfig(family='amortized')\n"
        "except ConfigError as e:\n"
        "    assert 'width=None must be a positive integer' in str(e), e\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stdout + out.stderr
