"""README.md's "Where amortization costs nats": the gap_vs_sigma study's committed tables
(docs/gap_vs_sigma/gap_by_sigma_x_table.md: mean ± SE over seeds; gap_table.md for KL(q(z))); the
table itself is docs/studies.md's (studies.sigma.table)."""

from __future__ import annotations

from .artifacts import fmt, from_width, md_sections, md_table, num, pm, share, sig, spec

BY = "docs/gap_vs_sigma/gap_by_sigma_x_table.md"
TRAIN, TEST = "amortization gap, training images (nats)", "amortization gap, test images (nats)"
VS_FVI = "ELBO(F-VI) - ELBO, nats per image, paired by seed"


def _sigmas(table) -> list[str]:
    """The table's sigma_x columns, largest (the paper's) first, as the README's table reads."""
    return sorted(table.columns, key=lambda c: -float(c.split("=")[1]))


def facts() -> dict[str, str]:
    s = md_sections(BY)
    train, test, vs = s[TRAIN], s[TEST], s[VS_FVI]
    cols = _sigmas(train)
    gaps = md_table("docs/gap_vs_sigma/gap_table.md")
    kl = {c: num(gaps[(gaps.variant == "k=64") & (gaps.sigma_x == c.split("=")[1])]["KL(q(z))/pt"].iloc[0])
          for c in cols}
    wide, narrow = cols[0], cols[-1]
    g64 = {c: pm(train.loc["k=64", c])[0] for c in cols}
    cut_train = 1 - pm(train.loc["k=256", narrow])[0] / g64[narrow]
    cut_test = 1 - pm(test.loc["k=256", narrow])[0] / pm(test.loc["k=64", narrow])[0]
    # the narrowest width from which every wider encoder beats F-VI's ELBO at every sigma_x
    passing = from_width(vs.index, lambda v: all(pm(vs.loc[v, c])[0] < 0 for c in cols))
    sp = spec("gap_vs_sigma")
    return {
        "front.sigma-trials": f"{sp.num_trials}",
        "front.sigma-epochs": fmt(sp.train["epochs"]),
        "front.sigma-seeds": f"{len(sp.seeds)}",
        "front.sigma-wide": wide.split("=")[1],
        "front.sigma-narrow": narrow.split("=")[1],
        "front.sigma-kl-wide": f"{kl[wide]:.0f}",
        "front.sigma-growth": f"{sig(g64[narrow] / g64[wide], 2)}x",
        "front.sigma-share-of-kl": share(g64[narrow] / kl[narrow]),
        "front.sigma-cut-train": share(cut_train),
        "front.sigma-cut-test": share(cut_test),
        "front.sigma-passing-width": f"{passing}" if passing else "none",
        "front.paper-trials": f"{spec('paper').num_trials}",
    }
