"""The closing width on synthetic tables whose answer is known: a gap that halves with each doubling
of the width, one that never closes on the grid, seeds that disagree, a gap that dips and rises."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from analysis.closing import closing_table, first_closed, parse_epsilons, sentences, width_text
from analysis.markdown import closing_markdown

WIDTHS = (1, 2, 4, 8, 16)


def synthetic(gaps: dict[tuple[float, int], list[float]], se: float = 0.0, kl: float = 10.0,
              epochs: int = 100, at: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A results table and sweep evaluate's rows for amortized trials: gaps[(sigma_x, seed)] is the
    training-image gap at each of WIDTHS (the test images' gap is twice it), each with SE ``se``."""
    table, measured = [], []
    for (sigma, seed), per_width in gaps.items():
        for width, gap in zip(WIDTHS, per_width, strict=True):
            tid = f"t{sigma}-{width}-{seed}"
            common = {"trial_id": tid, "seed": seed, "dataset": "fashion_mnist", "family": "amortized",
                      "width": width, "variant": f"k={width}", "variant_order": width, "has_width": True,
                      "sigma_x": sigma, "n_train": 1000}
            table += [{**common, "epoch": e, "epochs": epochs, "kl_z_per_datapoint": kl}
                      for e in (50, 90, epochs)]
            for split, factor in (("train", 1), ("test", 2)):
                measured.append({**common, "epoch": at or epochs, "split": split,
                                 "amortization_gap": factor * gap, "amortization_gap_se": se})
    return pd.DataFrame(table), pd.DataFrame(measured)


def row(closing: pd.DataFrame, sigma: float, split: str = "train", epsilon: str = "1 nat") -> pd.Series:
    at = closing.sigma_x == sigma if "sigma_x" in closing else True  # an axis only where it varies
    sel = closing[at & (closing.split == split) & (closing.epsilon == epsilon)]
    assert len(sel) == 1
    return sel.iloc[0]


def test_halving_gaps_close_where_they_fall_below_epsilon_and_decay_as_one_over_k():
    table, measured = synthetic({(0.7, s): [8, 4, 2, 0.5, 0.25] for s in (0, 1)} |
                                {(0.1, s): [40, 20, 10, 5, 2.5] for s in (0, 1)})
    closing = closing_table(table, measured)
    r = row(closing, 0.7)
    assert (r.closing, r.low, r.high, r.per_seed) == (8, 8, 8, "8, 8")
    assert width_text(r) == "8"
    # test images' gap is twice: 1.0 at k = 8 is not below 1 nat, so it closes at 16
    assert row(closing, 0.7, "test").closing == 16
    # never on the grid; the line 40 / k meets 1 nat at k = 40
    r = row(closing, 0.1)
    assert math.isnan(r.closing) and math.isnan(r.high) and r.per_seed == "none, none"
    assert width_text(r) == "none up to 16"
    assert r.slope == pytest.approx(-1.0) and r.fit_width == pytest.approx(40.0)
    # 10 % of KL(q(z)) = 10 nats x 0.1 = 1 nat here: the same answer as epsilon = 1 nat
    assert row(closing, 0.7, epsilon="10% of KL(q(z))").closing == 8
    assert closing.seeds.eq(2).all() and closing.widest.eq(16).all()


def test_seeds_that_disagree_widen_the_interval_to_each_seeds_own_width():
    table, measured = synthetic({(0.7, 0): [8, 4, 0.6, 0.3, 0.2], (0.7, 1): [8, 4, 1.6, 0.5, 0.2]})
    r = row(closing_table(table, measured), 0.7)
    assert r.per_seed == "4, 8"
    assert r.closing == 8  # the mean at k = 4, 1.1 nats, is above 1
    assert r.low == 4 and r.high == 8
    assert width_text(r) == "8 (4 to 8)"


def test_the_evaluation_error_widens_the_interval_and_a_seed_that_never_closes_leaves_it_open():
    # one seed, gaps of 0.8 at k = 8 with an SE of 0.2: mean closes at 8, the upper end (1.19) at 16
    table, measured = synthetic({(0.7, 0): [8, 4, 2, 0.8, 0.3]}, se=0.2)
    r = row(closing_table(table, measured), 0.7)
    assert (r.closing, r.low, r.high) == (8, 8, 16)  # at k = 4 even the lower end, 1.61, is above 1
    assert width_text(r) == "8 (8 to 16)"
    assert r.decisive_se == pytest.approx(0.2)
    table, measured = synthetic({(0.7, 0): [8, 4, 2, 0.5, 0.3], (0.7, 1): [8, 4, 2, 2, 2]})
    r = row(closing_table(table, measured), 0.7)
    assert math.isnan(r.closing) and math.isnan(r.high) and r.per_seed == "8, none"
    assert width_text(r) == "none up to 16 (possibly from 8)"  # the mean stays at 1.15 or more


def test_a_gap_that_dips_below_and_rises_again_is_not_closed_until_it_stays_below():
    assert first_closed([1, 2, 4, 8], [False, True, False, True]) == 8
    assert first_closed([1, 2, 4, 8], [True, True, True, True]) == 1
    assert math.isnan(first_closed([1, 2, 4, 8], [True, True, True, False]))


def test_the_sentence_and_the_markdown_say_the_answer():
    table, measured = synthetic({(0.7, s): [8, 4, 2, 0.5, 0.25] for s in (0, 1)})
    closing = closing_table(table, measured)
    (text,) = sentences(closing, table)
    assert text.startswith("fashion_mnist (amortized): the amortization gap falls below 1 nat per image "
                           "from k = 8 on training images and from k = 16 on test images (at 100 of 100 "
                           "epochs, 2 seeds); it falls as k^-1.30 ± 0.06.")  # 8, 4, 2, 0.5, 0.25
    md = closing_markdown(closing)
    assert "| 1 nat" in md and "10% of KL(q(z))" in md


def test_a_gap_still_shrinking_at_an_open_width_marks_the_answer_at_this_budget():
    last = {(0.7, s): [8, 4, 2, 1.5, 0.5] for s in (0, 1)}
    table, measured = synthetic(last)
    # at 90 % of the epochs k = 8 stood at 3 nats: still falling, and it is still open (1.5 >= 1)
    _, falling = synthetic({(0.7, s): [8, 4, 2, 3, 0.5] for s in (0, 1)}, at=90)
    r = row(closing_table(table, measured, earlier=falling), 0.7)
    assert (r.closing, r.closing_before, r.epoch_before, r.shrinking, r.at_budget) == (16, 16, 90, "8", True)
    assert width_text(r) == "16, at this budget"
    (text, *_) = sentences(closing_table(table, measured, earlier=falling), table)
    assert "at this budget: between epochs 90 and 100 the gap was still shrinking at k = 8" in text
    # the same gaps at 90 %: settled
    _, same = synthetic(last, at=90)
    r = row(closing_table(table, measured, earlier=same), 0.7)
    assert (r.closing_before, r.shrinking, r.at_budget) == (16, "", False) and width_text(r) == "16"
    # the closed width k = 16 still fell (0.9 -> 0.5) but the answer did not move: not at budget
    _, closed_falling = synthetic({(0.7, s): [8, 4, 2, 1.5, 0.9] for s in (0, 1)}, at=90)
    r = row(closing_table(table, measured, earlier=closed_falling), 0.7)
    assert (r.shrinking, r.at_budget) == ("16", False)


def test_without_measured_gaps_there_is_no_closing_table():
    table, _ = synthetic({(0.7, 0): [8, 4, 2, 0.5, 0.25]})
    assert closing_table(table, None).empty


@pytest.mark.parametrize("text", ["0", "-1", "abc", "5%", ",", "nan"])
def test_a_bad_epsilon_is_refused_in_one_line_naming_it(text):
    with pytest.raises(ValueError) as e:
        parse_epsilons(text)
    assert "\n" not in str(e.value) and ("epsilon" in str(e.value))


def test_epsilons_parse_nats_and_shares_of_kl():
    assert parse_epsilons("1, 0.5,10%kl") == (("nats", 1.0), ("nats", 0.5), ("kl", 0.1))
