"""report.html (analysis/html.py) of the smoke sweep: one self-contained file holding every trial,
and in a real browser (headless Chromium): every plot drawn, no console error, no request beyond
the file, hovering a point naming its trial, a legend click hiding a variant."""

from __future__ import annotations

import io
import re

import numpy as np
import pandas as pd
import pytest
from plotly.offline import get_plotlyjs

from analysis.html import write_html
from analysis.load import load
from analysis.tables import gap_table
from testbed.browser import PLOTLY_READY

PLOTS = ("gap-width", "gap-split", "curves", "trials")  # the smoke sweep's, per dataset
# Per plot: its SVG marks (lines, markers, bars) and parallel-coordinates axes.
MARKS = """[...document.querySelectorAll('.plotly-graph-div')].map(gd => ({
    id: gd.id, types: [...new Set(gd.data.map(t => t.type))],
    marks: gd.querySelectorAll('.scatterlayer path.js-line, .scatterlayer .point, .barlayer .point path')
        .length,
    axes: gd.querySelectorAll('.parcoords .y-axis').length,
    dimensions: gd.data[0].dimensions ? gd.data[0].dimensions.length : 0}))"""


@pytest.fixture(scope="module")
def smoke_tables(smoke_experiment):
    rc, exp = smoke_experiment
    assert rc == 0
    results = load(exp)  # read once, as `analysis figures` reads it
    return results.table, results.measured


@pytest.fixture(scope="module")
def smoke_html(smoke_tables, tmp_path_factory):
    table, measured = smoke_tables
    out = tmp_path_factory.mktemp("html") / "report.html"
    return write_html(table, gap_table(table, measured), measured, out)


def test_self_contained_with_every_trial(smoke_html, smoke_tables):
    page = smoke_html.read_text()
    library = get_plotlyjs()
    assert page.count(library) == 1  # Plotly's script inlined, once
    ours = page.replace(library, "")
    assert not re.search(r"<script[^>]*\bsrc\s*=", ours, re.IGNORECASE)
    assert not re.search(r"https?://", ours), "a URL the page could fetch"
    for trial in smoke_tables[0].trial_id.unique():
        assert trial in ours
    ds = smoke_tables[0].dataset.iloc[0]
    assert [f'id="{ds}-{p}"' in ours for p in PLOTS] == [True] * len(PLOTS)


def test_axes_and_no_measured_gaps(smoke_tables, tmp_path):
    """A sweep with an axis (the smoke table twice, n_train 200 and 400) gets the gap against it;
    without `sweep evaluate`, no gap split."""
    table, _ = smoke_tables
    table = pd.concat([table, table.assign(n_train=400, trial_id=table.trial_id + "-n400")],
                      ignore_index=True)
    page = write_html(table, gap_table(table), None, tmp_path / "report.html").read_text()
    ds = table.dataset.iloc[0]
    assert f'id="{ds}-gap-n_train"' in page and f'id="{ds}-gap-width"' in page
    assert f'id="{ds}-gap-split"' not in page
    assert all(trial in page for trial in table.trial_id.unique())


def test_in_chromium(smoke_html, smoke_tables, browser, tmp_path):
    visit = browser.visit(smoke_html, tmp_path / "report.png", ready=PLOTLY_READY, probe=MARKS, timeout=120)
    assert visit.console_errors == []
    assert visit.requests == [visit.url]  # nothing beyond the file itself
    plots = {p["id"].split("-", 1)[1]: p for p in visit.probe}
    assert set(plots) == set(PLOTS)
    for plot in plots.values():
        if plot["types"] == ["parcoords"]:
            assert plot["axes"] == plot["dimensions"] >= 7, plot
        else:
            assert plot["marks"] > 0, plot
    # the parallel coordinates' lines are drawn with WebGL, not SVG: count their coloured pixels
    ds = smoke_tables[0].dataset.iloc[0]
    assert _coloured_pixels(browser.driver.find_element("id", f"{ds}-trials").screenshot_as_png) > 500
    assert visit.screenshot.stat().st_size > 50_000
    # the plotted gaps are the gap table's: a legend entry's trace per variant in the first panel
    drawn = browser.driver.execute_script(f"""return document.getElementById('{ds}-gap-width')._fullData
        .filter(t => t.showlegend && t.xaxis === 'x').map(t => [t.name, Array.from(t.y)]);""")
    gaps = gap_table(*smoke_tables).set_index("variant").gap_nats_mean
    assert sorted(name for name, _ in drawn) == sorted(gaps.index)
    for name, y in drawn:
        assert np.allclose(sorted({v for v in y if v is not None}), [gaps[name]]), (name, y)


def test_hover_and_legend_in_chromium(smoke_html, smoke_tables, browser, tmp_path):
    browser.visit(smoke_html, tmp_path / "report.png", ready=PLOTLY_READY)
    ds = smoke_tables[0].dataset.iloc[0]
    trials = set(smoke_tables[0].trial_id)
    for plot in ("curves", "gap-width"):  # hover the first point of the first trace naming trials
        trial, label = browser.driver.execute_script(f"""
            const gd = document.getElementById('{ds}-{plot}');
            const named = t => t.customdata || (t.hovertext || []).some(h => /^trial /.test(h));
            const t = gd.data[gd.data.findIndex(named)];
            Plotly.Fx.hover(gd, [{{curveNumber: gd.data.indexOf(t), pointNumber: 0}}]);
            const trial = t.customdata ? t.customdata[0][0] : t.hovertext[0].split('<br>')[0].slice(6);
            return [trial, gd.querySelector('.hoverlayer').textContent];""")
        assert trial in trials and f"trial {trial}" in label, label
    browser.driver.find_element("css selector", f"#{ds}-curves .legend .traces .legendtoggle").click()
    hidden = f"""const gd = document.getElementById('{ds}-curves');
        return gd.data.map(t => [t.legendgroup, t.visible === 'legendonly']);"""
    browser.wait(f"document.getElementById('{ds}-curves').data[0].visible === 'legendonly'", 10)
    states = browser.driver.execute_script(hidden)
    first = states[0][0]
    assert all(off == (group == first) for group, off in states), states  # that variant, in every panel


def _coloured_pixels(png: bytes) -> int:
    """Pixels with a colour (not white, grey or black) in a PNG."""
    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=int)
    return int(((rgb.max(axis=2) - rgb.min(axis=2)) > 60).sum())
