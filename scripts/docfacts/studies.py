"""The studies' numbers (docs/studies.md, docs/science.md), each read from what the study's own
command wrote:

    docs/demo/gap_table.csv, refine_table.md            make readme-figures
    docs/gap_vs_n/, docs/gap_vs_sigma/, docs/families/    make study STUDY=...  (gap_table.md,
                                                          gap_by_sigma_x_table.md, refine_table.md)
    docs/paper/paper_check.md                             python benchmarks/paper_check.py --table
                                                              --brief --figures docs/paper

and a few counts from the code (the decoder's weights, the flow's free parameters per image).
Every ratio, range and word that depends on a number ("matches", "at every N") is computed here.

Gap tables written before the tables gave standard errors (headers "-ELBO/pt" and "gap vs F-VI
(nats/pt)") hold mean ± SD over seeds; the pages show SE = SD / sqrt(seeds), from the row's seeds.
"""

from __future__ import annotations

import math
import re
from decimal import ROUND_HALF_UP, Decimal
from functools import cache

import pandas as pd
import yaml

from .artifacts import ROOT, and_list, csv_table, from_width, md_table, num, pm, width
from .artifacts import span as _span

# "at the mean-image level": train MSE within 3 % of the mean image's (analysis's latents_unused)
BAND = 0.03
Rows = dict[int, tuple[float, float]]


# ---------------------------------------------------------------------------------------- formatting


def r(x: float, digits: int = 0) -> str:
    """x rounded half up (as a person rounds a table's cell) to ``digits``, thousands with commas."""
    q = Decimal(repr(float(x))).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)
    return f"{q:,.{digits}f}"


def r2(x: float) -> str:
    """Two significant figures, no decimals from 100 on: 2.90 -> 2.9, 30.7 -> 31, 522.5 -> 523."""
    return "0" if x == 0 else r(x, max(0, 1 - math.floor(math.log10(abs(x)))))


def f4(x: float) -> str:
    return f"{x:.4f}"


def short_pm(text: str) -> str:
    """A cell's 'mean ± SE' without its sign, whole numbers from 100 on: '-1199.4 ± 2.6' -> '1,199 ± 3'."""
    mean, se = pm(text)
    return f"{r(abs(mean))} ± {r(se)}" if abs(mean) >= 100 else text.strip().lstrip("-")


def mean_of(text: str) -> str:
    """A cell's mean as the cell writes it: '27.8 ± 0.3' -> '27.8'."""
    return text.split("±")[0].strip()


def span(values, digits: int = 0, fmt=None) -> str:
    """'lo-hi' over values, rounded half up to ``digits`` (or written by ``fmt``)."""
    return _span(values, fmt or (lambda v: r(v, digits)))


def falls(xs: list[float]) -> bool:
    return all(a > b for a, b in zip(xs, xs[1:], strict=False))


# ---------------------------------------------------------------------------------------- artifacts


@cache
def spec(name: str) -> dict:
    return yaml.safe_load((ROOT / "sweep" / "specs" / f"{name}.yaml").read_text())


def cell(x) -> float:
    return math.nan if x in ("-", "", None) else num(x)


def gap_md(rel: str, axis: str | None = None) -> pd.DataFrame:
    """A gap_table.md indexed by (axis value, variant) or by variant, with its -ELBO and gap vs F-VI
    as (mean, SE) in columns "elbo" and "vs_fvi", whichever ± the file gives."""
    t = md_table(rel).copy()
    seeds = t["seeds"].astype(int)
    for new, cols in (("elbo", ("-ELBO/pt ± SE", "-ELBO/pt")),
                      ("vs_fvi", ("gap vs F-VI ± SE", "gap vs F-VI (nats/pt)"))):
        col = next(c for c in cols if c in t)
        root = 1.0 if "± SE" in col else None  # the older tables give mean ± SD over seeds
        t[new] = [(m, e / (root or math.sqrt(n))) for (m, e), n in zip(t[col].map(pm), seeds, strict=True)]
    if axis:
        t[axis] = t[axis].astype(float)
        return t.set_index([axis, "variant"])
    return t.set_index("variant")


def by_axis(rel: str) -> tuple[dict[str, pd.DataFrame], int]:
    """gap_by_AXIS_table.md: each section (its bold title) as a table of cells indexed by variant,
    and the seeds its headers name ("mean ± SE over 2 seeds")."""
    text = (ROOT / rel).read_text()
    out, seeds = {}, set()
    for m in re.finditer(r"\*\*(.+?)\*\*:.*?over (\d+) seeds\n\n((?:\|.*\n?)+)", text):
        rows = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in m.group(3).splitlines()]
        out[m.group(1)] = pd.DataFrame(rows[2:], columns=rows[0]).set_index("variant")
        seeds.add(int(m.group(2)))
    if len(seeds) != 1:
        raise ValueError(f"{rel}: expected one seed count, found {seeds}")
    return out, seeds.pop()


@cache
def paper_check() -> tuple[dict[str, Rows], dict[str, Rows], float, str]:
    """docs/paper/paper_check.md: per run, {epoch: (train MSE, KL)}; per family ('k=64',
    'factorized'), their band {epoch: (lo, hi)}; the mean-image MSE; the file's text."""
    rel = "docs/paper/paper_check.md"
    text = (ROOT / rel).read_text().rstrip("\n")
    t = md_table(rel)
    epochs = [int(c) for c in t.columns[1:]]
    runs, theirs = {}, {}
    for _, row in t.iterrows():
        cells = dict(zip(epochs, row.iloc[1:], strict=True))
        if m := re.match(r"\*\*theirs, (.+?)\*\*", row["run"]):
            theirs[m.group(1)] = {e: tuple(float(v) for v in c.split("-")) for e, c in cells.items()}
        else:  # "COMBO/FAMILY" (--brief) or "COMBO/FAMILY: what it is"
            runs[row["run"].split(":")[0].strip()] = {
                e: (float(c.split()[0]), float(c.split("(")[1].rstrip(")"))) for e, c in cells.items() if c}
    floor = float(re.search(r"mean-image MSE \(latents unused\): ([\d.]+)", text).group(1))
    return runs, theirs, floor, text


# ---------------------------------------------------------------------------------- the paper check


def _paper() -> dict[str, str]:
    from trainables.model import PAPER_LOG_SD, BayesianDecoder

    runs, theirs, floor, text = paper_check()

    def at_level(mse: float) -> bool:
        return abs(mse / floor - 1) <= BAND

    def inside(mse: float, band: tuple[float, float]) -> bool:
        return band[0] <= mse <= band[1]

    out = {"studies.paper-check": text, "studies.paper.mean-image": f4(floor)}

    # their code's settings: the epochs at which A-VI k = 64 and F-VI are both inside their band
    mine = {"k=64": runs["mb2024/amortized"], "factorized": runs["mb2024/factorized"]}
    common = sorted(set(mine["k=64"]) & set(mine["factorized"]))
    both = [e for e in common if all(inside(mine[f][e][0], theirs[f][e]) for f in mine)]
    run_on = bool(both) and both == [e for e in common if e >= both[0]] and len(both) > 2
    out["studies.paper.inside-epochs"] = (f"every epoch of the table from {r(both[0])} to {r(both[-1])}"
                                          if run_on else "epochs " + and_list([r(e) for e in both]))
    shown = [1000, 1500, 2000]
    detail = []
    for f, name in (("k=64", "k = 64"), ("factorized", "F-VI")):
        ours = " / ".join(f4(mine[f][e][0]) for e in shown)
        band = " / ".join(f"{f4(theirs[f][e][0])}-{f4(theirs[f][e][1])}" for e in shown)
        detail.append(f"{name}: {ours} against {band}")
    out["studies.paper.inside-detail"] = f"at {and_list([r(e) for e in shown])}, " + "; ".join(detail)

    # F-VI from their q(theta) start (every factorized run but paper.yaml's): the last epoch at the
    # mean-image level, and the first below it after that
    start = {k: v for k, v in runs.items() if k.endswith("/factorized") and not k.startswith("paper")}
    last_at, left = {}, {}
    for run, rows in start.items():
        at = [e for e in sorted(rows) if at_level(rows[e][0])]
        if at:
            last_at[run] = at[-1]
            after = [e for e in sorted(rows) if e > at[-1] and rows[e][0] < floor * (1 - BAND)]
            if after:
                left[run] = after[0]
    went_on = sorted(left)
    until = span([last_at[k] for k in went_on])
    out["studies.paper.fvi-until"] = until
    out["studies.paper.mb-fvi-until"] = r(last_at["mb2024/factorized"])
    at750 = span([rows[750][0] for rows in start.values() if 750 in rows], fmt=f4)
    out["studies.paper.fvi-level"] = (
        f"(train MSE within {BAND * 100:.0f} % of the mean image's {f4(floor)}) until epoch {until} "
        f"({at750} at epoch 750 in every run that went that far), and those that ran on leave it by "
        f"epoch {span([left[k] for k in went_on])} "
        f"({span([start[k][left[k]][0] for k in went_on], fmt=f4)})")

    # paper.yaml's settings (q(theta) started like nn.Linear)
    p_f, p_a = runs["paper/factorized"], runs["paper/amortized"]
    out["studies.paper.paper-fvi-500"] = r(p_f[500][0], 3)
    out["studies.paper.paper-fvi-2000"] = r(p_f[2000][0], 3)
    out["studies.paper.paper-avi-2000"] = r(p_a[2000][0], 3)
    out["studies.paper.torch-learns"] = (f"by epoch 500 (train MSE {r(p_f[500][0], 3)} for F-VI, "
                                         f"{r(p_a[500][0], 3)} for A-VI k = 64)")
    decoder = BayesianDecoder(latent_dim=64, hidden_dim=256, data_dim=784)  # the paper's sizes
    out["studies.paper.theta-noise"] = r(math.exp(PAPER_LOG_SD), 3)
    out["studies.paper.theta-count"] = f"{decoder.num_params / 1000:.0f}k"

    # F-VI's optimizer
    out["studies.paper.shipped-kl"] = r(runs["shipped/factorized"][500][1], 1)
    rnd = and_list([f4(runs[k][500][0]) for k in ("fvi-random/factorized", "fvi-random-dense/factorized")])
    still = all(at_level(runs[k][500][0]) for k in ("fvi-random/factorized", "fvi-random-dense/factorized"))
    out["studies.paper.random-500"] = (f"still at that level at epoch 500 ({rnd})" if still
                                       else f"at {rnd} at epoch 500")
    da = "fvi-random-dense-all/factorized"
    out["studies.paper.dense-all-leaves"] = f"between epochs {r(last_at[da])} and {r(left[da])}"

    # the two quirks: at epoch 1,500, and when the runs without one reach mb2024's MSE there
    e, base = 1500, runs["mb2024/factorized"]
    target = base[e][0]

    def reaches(rows: Rows) -> float:
        pts = sorted(rows)
        for a, b in zip(pts, pts[1:], strict=False):
            if a >= e and rows[a][0] >= target >= rows[b][0]:
                return a + (b - a) * (rows[a][0] - target) / (rows[a][0] - rows[b][0])
        raise ValueError(f"docs/paper/paper_check.md: a run never reaches {target} after epoch {e}")

    logvar, elbo = runs["mb2024-logvar/factorized"], runs["mb2024-elbo/factorized"]
    late = [round((reaches(x) - e) / 10) * 10 for x in (logvar, elbo)]
    out["studies.paper.quirks"] = (
        f"at epoch {r(e)} F-VI is at {f4(target)} with both, {f4(logvar[e][0])} without the log-sd "
        f"spread and {f4(elbo[e][0])} without their log q, and those two reach {f4(target)} about "
        f"{late[0]} and {late[1]} epochs later (linearly between the table's epochs)")
    band = theirs["factorized"][e]
    ok = [name for name, x in (("both", base), ("the log-variance", logvar), ("the true ELBO", elbo))
          if inside(x[e][0], band)]
    where = f"at epoch {r(e)} ({f4(band[0])}-{f4(band[1])})"
    out["studies.paper.quirks-inside"] = (f"Only with both is our F-VI inside their range {where}"
                                          if ok == ["both"] else
                                          f"Inside their range {where}: {and_list(ok) if ok else 'none'}")
    return out


# ------------------------------------------------------------------------------------------ the demo


def _demo() -> dict[str, str]:
    t = csv_table("docs/demo/gap_table.csv").set_index("variant")
    enc = [v for v in t.index if width(v) is not None]
    ref = md_table("docs/demo/refine_table.md")
    ref = ref[ref["variant"].isin(enc)]
    most = ref[ref["K"].astype(int) == ref["K"].astype(int).max()]
    ratio = [t.amort_gap_test[v] / t.amort_gap_train[v] for v in enc]
    first = min(enc, key=width)
    a = t.amort_gap_train
    return {
        "studies.demo.gaps": (
            f"falls from {r(a[first])} nats per image (k = {width(first)}) to {r(a['k=64'])} (k = 64) and "
            f"{r(a['k=256'])} (k = 256), while the approximation gap stays at "
            f"{span(t.approx_gap_train[enc])}; on test images every encoder leaves {span(ratio, 1)} times "
            f"as much ({r(t.amort_gap_test['k=64'])} nats at k = 64, {r(t.amort_gap_test['k=256'])} at "
            f"k = 256)"),
        "studies.demo.fvi": (f"{r(a['factorized'])} nats on its training images after "
                             f"{int(t.epoch['factorized'])} epochs"),
        "studies.demo.refine": (f"{span([num(c) for c in most['amort. gap closed']])} % of an encoder's test "
                                f"amortization gap in {span([num(s) for s in most['seconds']], 1)} s"),
    }


# ------------------------------------------------------------------------------------------- N study


def _gap_vs_n() -> dict[str, str]:
    t = gap_md("docs/gap_vs_n/gap_table.md", "n_train")
    ns = sorted({n for n, _ in t.index})
    enc = sorted({v for _, v in t.index if width(v)}, key=width)

    def g(n: float, v: str, col: str) -> float:
        return cell(t.loc[(n, v), col])

    def series(v: str, col: str) -> list[float]:
        return [g(n, v, col) for n in ns]

    def k64(col: str) -> str:
        return ", ".join(r(x) for x in series("k=64", col))

    rows = []
    for n in ns:
        for v in ("k=4", "k=64", "k=256", "factorized"):
            m, se = t.loc[(n, v), "vs_fvi"]
            test = g(n, v, "amort. gap test")
            rows.append(" | ".join([
                f"| {r(n)}", v, "0" if v == "factorized" else f"{r(m)} ± {r(se)}",
                r(g(n, v, "approx. gap train"), 1), r(g(n, v, "amort. gap train")),
                "-" if math.isnan(test) else r(test), r(g(n, v, "active dims"))]) + " |")
    head = ("| N | variant | gap vs F-VI ± SE | approx. gap train | amort. gap train | amort. gap test "
            "| active dims |\n|---:|:---|---:|---:|---:|---:|---:|\n")

    def where(col: str) -> str:
        w = from_width(enc, lambda v: falls(series(v, col)))
        return ("at every width" if w == width(enc[0]) else f"at width {w} or more" if w
                else "at no width")

    # from which N on every encoder of width 16 or more beats F-VI's ELBO, at that N and every larger
    wide = [v for v in enc if width(v) >= 16]
    beat = [n for n in ns if all(t.loc[(n, v), "vs_fvi"][0] < 0 for v in wide)]
    from_n = next((n for n in ns if all(m in beat for m in ns if m >= n)), None)
    fvi_far = all(g(n, "factorized", "amort. gap train") > g(n, "k=64", "amort. gap train") for n in ns)
    big = max(ns)
    smaller = {g(n, v, "active dims") for n in ns if n < big for v in enc}
    approx = from_width(enc, lambda v: falls(series(v, "approx. gap train")))
    return {
        "studies.n.trials": f"{int(t['seeds'].astype(int).sum())}",
        "studies.n.seeds": and_list(sorted({str(s) for s in t["seeds"]})),
        "studies.n.table": head + "\n".join(rows),
        "studies.n.shrinks": (
            f"on test images {where('amort. gap test')} (k = 64: {k64('amort. gap test')}) and on training "
            f"images {where('amort. gap train')} (k = 64: {k64('amort. gap train')}), and so does the "
            f"approximation gap{'' if approx == width(enc[0]) else ' of some widths'} "
            f"(k = 64: {k64('approx. gap train')})"),
        "studies.n.fvi": (f"{'at every N' if fvi_far else 'not at every N'} "
                          f"({', '.join(r(x) for x in series('factorized', 'amort. gap train'))} against "
                          f"{k64('amort. gap train')})"),
        "studies.n.beats": f"from N = {r(from_n)} on" if from_n is not None else "at no N",
        "studies.n.k4": (f"{span(series('k=4', 'amort. gap train'))} nats at "
                         f"N = {and_list([r(n) for n in ns])}"),
        "studies.n.dims": (f"{span([g(big, v, 'active dims') for v in enc])} of 64 against "
                           + ("all 64" if smaller == {64.0} else span(smaller)) + " at smaller N"),
    }


# ------------------------------------------------------------------------------------- sigma_x study


def _gap_vs_sigma() -> dict[str, str]:
    sec, seeds = by_axis("docs/gap_vs_sigma/gap_by_sigma_x_table.md")
    full = gap_md("docs/gap_vs_sigma/gap_table.md", "sigma_x")
    neg_elbo, vs = sec["-ELBO per image (nats)"], sec["ELBO(F-VI) - ELBO, nats per image, paired by seed"]
    am_tr = sec["amortization gap, training images (nats)"]
    am_te = sec["amortization gap, test images (nats)"]
    ap_tr = sec["approximation gap, training images (nats)"]
    hi, mid, lo = 0.7071, 0.3, 0.1
    sigmas = [hi, mid, lo]
    k64, k256, fvi = "k=64", "k=256", "factorized"
    enc = sorted([v for v in am_tr.index if width(v)], key=width)

    def c(tab: pd.DataFrame, v: str, s: float) -> str:
        return tab.loc[v, f"sigma_x={s:g}"]

    def m(tab: pd.DataFrame, v: str, s: float) -> float:
        return pm(c(tab, v, s))[0]

    def kl(s: float, v: str = k64) -> float:
        return cell(full.loc[(s, v), "KL(q(z))/pt"])

    rows = []
    for s in sigmas:
        for v in (k64, k256, fvi):
            rows.append(" | ".join([
                f"| {s:g}", "F-VI" if v == fvi else v, c(am_tr, v, s),
                c(am_te, v, s) if v in am_te.index else "-", c(ap_tr, v, s),
                "0" if v == fvi else c(vs, v, s), r(kl(s, v), 1)]) + " |")
    head = ("| sigma_x | variant | amort. gap train ± SE | amort. gap test ± SE | approx. gap train ± SE | "
            "ELBO(F-VI) - ELBO ± SE | KL(q(z)) |\n|---:|:---|---:|---:|---:|---:|---:|\n")

    share = [m(am_tr, v, hi) / m(neg_elbo, v, hi) * 100 for v in (k64, k256)]
    no_better = all(m(tab, k256, hi) >= m(tab, k64, hi) for tab in (am_tr, am_te))

    def grow(tab: pd.DataFrame, v: str) -> str:
        return r(m(tab, v, lo) / m(tab, v, hi))

    def of_kl(s: float) -> str:
        return r(m(am_tr, k64, s) / kl(s) * 100)

    def of_amort(v: str) -> str:
        return f"{r(m(ap_tr, v, lo) / m(am_tr, v, lo) * 100)} % ({v.replace('=', ' = ')}: " \
               f"{mean_of(c(ap_tr, v, lo))} of {mean_of(c(am_tr, v, lo))})"

    w_beat = from_width(enc, lambda v: all(m(vs, v, s) < 0 for s in sigmas))
    k1 = []
    for s in sigmas:
        mean, se = pm(c(vs, "k=1", s))
        if abs(mean) <= 2 * se:
            k1.append(("matches it", f"{s:g} ({short_pm(c(vs, 'k=1', s))} nats "
                                     f"{'behind' if mean > 0 else 'ahead'})"))
        else:
            k1.append(("trails it" if mean > 0 else "beats it", f"{s:g} ({short_pm(c(vs, 'k=1', s))})"))
    k1_text = " and ".join(f"{word} at " + and_list([txt for w, txt in k1 if w == word])
                           for word in dict.fromkeys(w for w, _ in k1))
    f_rows = full.xs(fvi, level="variant")
    level = float(re.search(r"mean-image level ([\d.]+)", " ".join(full["note"])).group(1))
    unused = [s for s, n in f_rows["note"].items() if "mean-image level" in n]
    not_left = [s for s in sorted(f_rows.index) if cell(f_rows.loc[s, "train MSE"]) >= level * (1 - BAND)]
    sig_list = lambda xs: and_list([f"{s:g}" for s in xs])  # noqa: E731
    return {
        "studies.sigma.trials": f"{int(full['seeds'].astype(int).sum())}",
        "studies.sigma.seeds": f"{seeds}",
        "studies.sigma.table": head + "\n".join(rows),
        "studies.sigma.kl-hi": r(kl(hi), 1),
        "studies.sigma.kl-all": (f"{r(kl(hi), 1)} nats per image into its latents at sigma_x {hi:g}, "
                                 f"{r(kl(mid), 1)} at {mid:g} and {r(kl(lo), 1)} at {lo:g}"),
        "studies.sigma.k64-elbo-lo": mean_of(c(neg_elbo, k64, lo)),
        "studies.sigma.at-hi": (
            f"{c(am_tr, k64, hi)} nats per training image and {c(am_te, k64, hi)} per test image to each "
            f"image's own optimal q, k = 256 {c(am_tr, k256, hi)} and {c(am_te, k256, hi)}: "
            f"{span(share, 1)} % of the -ELBO ({r(m(neg_elbo, k64, hi))})"
            + (", and no better at 256 than at 64" if no_better else "")),
        "studies.sigma.at-lo": (
            f"{c(am_tr, k64, lo)} (k = 64) and {c(am_tr, k256, lo)} (k = 256) nats per training image, "
            f"{c(am_te, k64, lo)} and {c(am_te, k256, lo)} per test image"),
        "studies.sigma.grows": (
            f"{grow(am_tr, k64)}x (k = 64, train; {grow(am_te, k64)}x on test images) and "
            f"{grow(am_tr, k256)}x (k = 256; {grow(am_te, k256)}x on test images), about as the "
            f"likelihood's precision 1/sigma_x^2 ({r(hi ** 2 / lo ** 2)}x)"),
        "studies.sigma.of-kl": (
            f"{of_kl(hi)} % of KL(q(z)) at {hi:g} ({mean_of(c(am_tr, k64, hi))} of {r(kl(hi), 1)} nats), "
            f"{of_kl(mid)} % at {mid:g} and {of_kl(lo)} % at {lo:g} ({mean_of(c(am_tr, k64, lo))} of "
            f"{r(kl(lo), 1)})"),
        "studies.sigma.width-buys": (
            f"{r(m(am_tr, k64, lo) - m(am_tr, k256, lo), 1)} nats on training images and "
            f"{r(m(am_te, k64, lo) - m(am_te, k256, lo), 1)} on test images at {lo:g}"),
        "studies.sigma.approx": (
            f"of width 16 to {width(enc[-1])} stays at "
            f"{span([m(ap_tr, v, lo) for v in enc if width(v) >= 16], 1)} nats at sigma_x {lo:g}, "
            f"{of_amort(k64)} to {of_amort(k256)} of their amortization gap there; at {hi:g} the two are "
            f"{span([m(ap_tr, v, hi) for v in (k64, k256)], 2)} and "
            f"{span([m(am_tr, v, hi) for v in (k64, k256)], 2)}"),
        "studies.sigma.beat-width": f"of width {w_beat} or more" if w_beat else "of no width",
        "studies.sigma.beat": (f"k = 64: by {short_pm(c(vs, k64, hi))} nats at {hi:g}, "
                               f"{short_pm(c(vs, k64, mid))} at {mid:g}, "
                               f"{short_pm(c(vs, k64, lo))} at {lo:g}"),
        "studies.sigma.k1": "k = 1 " + k1_text,
        "studies.sigma.fvi-far": and_list([r2(m(am_tr, fvi, s)) for s in sigmas]),
        "studies.sigma.fvi-unused": (
            f"at sigma_x {sig_list(unused)} its train MSE is still at the mean-image level ({level:g})"
            if unused else "its train MSE has left the mean-image level at every sigma_x"),
        "studies.sigma.would-gain": (f"{span([m(am_tr, v, hi) for v in (k64, k256)], 2)} nats at {hi:g} and "
                                     f"{span([m(am_tr, v, lo) for v in (k64, k256)])} at {lo:g}"),
        "studies.sigma.not-left": (
            f"F-VI at sigma_x {sig_list(not_left)} has not left the mean-image level yet (train MSE "
            f"{and_list([r(cell(f_rows.loc[s, 'train MSE']), 3) for s in not_left])})"
            if not_left else "F-VI has left the mean-image level at every sigma_x"),
    }


# ---------------------------------------------------------------------------------------- families


def _families() -> dict[str, str]:
    import torch

    from trainables.families.flow import Flow

    t = gap_md("docs/families/gap_table.md")
    order = list(t.index)
    gap_cols = ("approx. gap train", "amort. gap train", "approx. gap test", "amort. gap test")
    rows = []
    for v in order:
        mean, se = t.loc[v, "elbo"]
        gaps = " | ".join("-" if math.isnan(cell(t.loc[v, col])) else r(cell(t.loc[v, col]), 1)
                          for col in gap_cols)
        rows.append(f"| {v} | {r(mean, 1)} ± {r(se, 1)} | {gaps} | {r(cell(t.loc[v, 'active dims']))} |")
    head = ("| variant | -ELBO/pt ± SE | approx. gap train | amort. gap train | approx. gap test | "
            "amort. gap test | active dims |\n|:---|---:|---:|---:|---:|---:|---:|\n")

    def g(v: str, col: str) -> str:
        return r(cell(t.loc[v, col]), 1)

    def e(v: str) -> float:
        return t.loc[v, "elbo"][0]

    def family(v: str) -> str:
        return v.rsplit(" ", 1)[0] if " " in v else "diagonal" if width(v) else v

    sa = [v for v in order if family(v) == "SA-VAE"]
    widths = sorted({width(v) for v in order if width(v)})
    sa_wins = all(e(f"SA-VAE k={w}") == min(e(v) for v in order if width(v) == w) for w in widths)
    amort = {split: {v: cell(t.loc[v, f"amort. gap {split}"]) for v in order if width(v)}
             for split in ("train", "test")}
    smallest = all(family(min(a, key=a.get)) == "SA-VAE" for a in amort.values())
    grows = cell(t.loc["k=64", "amort. gap train"]) < min(
        cell(t.loc[v, "amort. gap train"]) for v in ("flow k=64", "full-cov k=64"))
    ref = md_table("docs/families/refine_table.md")
    k20 = ref[ref["K"].astype(int) == 20]

    def secs(f: str, digits: int) -> str:
        return span([num(s) for v, s in zip(k20["variant"], k20["seconds"], strict=True) if family(v) == f],
                    digits)

    points = spec("families")["evaluate"]["points"]
    flow = Flow(784, 64, 64).q(torch.zeros(1, 784), None).local()  # q*'s free parameters, per image
    return {
        "studies.families.trials": f"{int(t['seeds'].astype(int).sum())}",
        "studies.families.flow-params": r(round(sum(p[0].numel() for p in flow.values()), -3)),
        "studies.families.finite": ("ended with a finite -ELBO" if all(math.isfinite(e(v)) for v in order)
                                    else "did not all end with a finite -ELBO"),
        "studies.families.table": head + "\n".join(rows),
        "studies.families.seeds": and_list(sorted({str(s) for s in t["seeds"]})),
        "studies.families.sa-se": span([t.loc[v, "elbo"][1] for v in sa], 1),
        "studies.families.k64": (
            f"{g('k=64', 'approx. gap train')} nats for the diagonal encoder, "
            f"{g('flow k=64', 'approx. gap train')} for the flow and "
            f"{g('full-cov k=64', 'approx. gap train')} "
            f"for the full covariance, while the amortization gap {'grows' if grows else 'goes'} from "
            f"{g('k=64', 'amort. gap train')} to {g('flow k=64', 'amort. gap train')} and "
            f"{g('full-cov k=64', 'amort. gap train')} (test images: {g('k=64', 'amort. gap test')}, "
            f"{g('flow k=64', 'amort. gap test')}, {g('full-cov k=64', 'amort. gap test')})"),
        "studies.families.elbo": (
            f"({r(e('flow k=64'), 1)} against {r(e('k=64'), 1)}) where the full covariance loses "
            f"{r(e('full-cov k=64') - e('k=64'))} nats ({r(e('full-cov k=64'), 1)})"),
        "studies.families.sa-wins": "at every width" if sa_wins else "not at every width",
        "studies.families.sa": (
            f"take k = 4 from {r(e('k=4'))} to {r(e('SA-VAE k=4'))} nats, "
            f"{'better than' if e('SA-VAE k=4') < e('k=64') else 'not as good as'} the plain k = 64 "
            f"({r(e('k=64'))}), and k = 64 to {r(e('SA-VAE k=64'))}; its amortization gap is "
            f"{'the smallest of any family' if smallest else 'not the smallest of every family'} "
            f"({g('SA-VAE k=64', 'amort. gap train')} on training and {g('SA-VAE k=64', 'amort. gap test')} "
            f"on test images at k = 64, against {g('k=64', 'amort. gap train')} and "
            f"{g('k=64', 'amort. gap test')}), with {span([cell(t.loc[v, 'active dims']) for v in sa])} of "
            f"64 latent dimensions active"),
        "studies.families.refine-cost": (
            f"20 refinement steps on its {points} test images take the flow {secs('flow', 1)} s, the full "
            f"covariance {secs('full-cov', 1)} s and the diagonal encoder {secs('diagonal', 2)} s"),
    }


def facts() -> dict[str, str]:
    out: dict[str, str] = {}
    for part in (_paper, _demo, _gap_vs_n, _gap_vs_sigma, _families):
        out.update(part())
    return out
