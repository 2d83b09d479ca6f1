"""The front page and the docs pages hold together: every relative link and image resolves, every
`#anchor` names a heading of its page (GitHub's slugs), every docs page and section is one click
from README.md, and README.md stays a front page."""

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]


def prose(text: str) -> str:
    """The text without fenced code blocks and inline code spans: links there are not links."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation but hyphens dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip())  # a link's text only
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading's anchor; a repeated slug gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", re.sub(r"^```.*?^```", "", text, flags=re.S | re.M),
                              re.M):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(text: str) -> list[str]:
    """Targets of the page's links and images, outside code."""
    return re.findall(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", prose(text))


def dead_links(page: Path) -> list[str]:
    """The page's relative links and images whose file, or whose `#anchor` in a .md page, is not there."""
    dead = []
    for target in links(page.read_text()):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = unquote(target).partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            dead.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text()):
            dead.append(target)
    return dead


def test_slugs_as_github_makes_them():
    assert slug("Expected cost, and speed") == "expected-cost-and-speed"
    assert slug("The demo's figures") == "the-demos-figures"
    assert slug("Richer and semi-amortized q") == "richer-and-semi-amortized-q"
    assert slug("`train` keys: [the table](x.md)") == "train-keys-the-table"
    page = "# Data\n## Data\n```bash\n# not a heading\n```\n### Data\n"
    assert anchors(page) == {"data", "data-1", "data-2"}


def test_the_checker_finds_dead_links(tmp_path):
    (tmp_path / "b.md").write_text("# Title\n\n## Choices, and where they come from\n")
    (tmp_path / "fig.png").write_bytes(b"")
    page = tmp_path / "a.md"
    page.write_text(
        "# A\n\n[ok](b.md) [ok](b.md#title) [ok](b.md#choices-and-where-they-come-from) [ok](#a)\n"
        "![ok](fig.png) [web](https://example.org/x#y) `[code](gone.md)`\n"
        "```bash\n[fenced](gone.md)\n```\n"
        "[missing](missing.md) [bad anchor](b.md#choices) [no heading](#nowhere) ![no image](none.png)\n"
    )
    assert dead_links(page) == ["missing.md", "b.md#choices", "#nowhere", "none.png"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_and_images_resolve(page):
    assert dead_links(page) == []


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in links(README.read_text())}
    assert DOCS and [p for p in DOCS if p.resolve() not in linked] == []


def test_every_docs_section_is_one_click_from_the_readme():
    """Each `## ` section of a docs page (what moved off the front page) has a link from README.md."""
    linked = set(links(README.read_text()))
    missing = [f"docs/{page.name}#{slug(h)}" for page in DOCS
               for h in re.findall(r"^## +(.+)$", prose(page.read_text()), re.M)
               if f"docs/{page.name}#{slug(h)}" not in linked]
    assert missing == []


def test_readme_is_a_front_page():
    assert len(README.read_text().splitlines()) < 200


def _table_rows(text: str) -> dict[str, list[str]]:
    """Each markdown table row whose first cell is code, by that key: its other cells."""
    rows = {}
    for line in text.splitlines():
        if m := re.match(r"\| `([^`]+)` \|(.*)\|$", line):
            rows[m.group(1)] = [c.strip() for c in m.group(2).split(" | ")]
    return rows


def _as_shown(value) -> str:
    """A default as the reference writes it (YAML's list for a tuple, - for none)."""
    return "-" if value is None else f"`{list(value) if isinstance(value, tuple) else value}`"


USER_FAMILY_WITH_OPTIONS = '''
from dataclasses import dataclass

from trainables.families import Family, register
from trainables.settings import positive_int, setting


@dataclass(frozen=True)
class LateOptions:
    depth: int = setting(3, "hidden layers", check=positive_int)


@register
class Late(Family):
    """q(z_n) from a family registered after the reference was first generated."""

    name, label, order = "late_family", "late", 60
    Options = LateOptions
'''


def test_the_reference_covers_every_family_and_every_keyword_setting(tmp_path, monkeypatch):
    """The generated reference (docs/reference.md, `python -m sweep keys`) names every registered
    family with its options and their defaults, a family a user's module registers included, and
    every `test_inference`, `evaluate` and `tracking` key the spec accepts with its default, all
    read here from the code."""
    import dataclasses
    import inspect

    from ray.air.integrations.mlflow import MLflowLoggerCallback

    from sweep.docs import reference_markdown
    from sweep.rules import EVALUATE_OWN, EVALUATE_SKIP, INFER_SKIP, TRACKER_HELP, TRACKERS
    from sweep.runner import default_tracking_uri
    from sweep.spec import SpecError, parse_spec
    from trainables import families
    from trainables.gap import evaluate_trial
    from trainables.inference import infer, optimize_local_q
    from trainables.settings import default_of

    def check_families(rows):
        assert families.FAMILIES
        for name, cls in families.FAMILIES.items():
            summary, width, options = rows[name]
            assert summary not in ("", "-") and width == ("yes" if cls.has_width else "no")
            fields = dataclasses.fields(cls.Options)
            assert options == (", ".join(f"`{f.name}` ({_as_shown(default_of(f))})" for f in fields)
                               or "no options")
            for f in fields:
                assert rows[f"family_options.{name}.{f.name}"][0] == _as_shown(default_of(f))

    rows = _table_rows(reference_markdown())
    check_families(rows)

    base = {"name": "x", "datasets": ["fashion_mnist"], "families": ["factorized"], "seeds": [0]}
    for key, func, skip in (("test_inference", infer, INFER_SKIP),
                            ("evaluate", evaluate_trial, EVALUATE_SKIP)):
        params = list(inspect.signature(func).parameters.values())
        assert all(p.default is inspect.Parameter.empty for p in params[:skip])
        settings = {p.name: p.default for p in params[skip:]}
        assert settings and inspect.Parameter.empty not in settings.values()
        settings |= EVALUATE_OWN if key == "evaluate" else {}  # the runner's own evaluate keys
        for name, default in settings.items():
            cells = rows[f"{key}.{name}"]
            assert cells[0] == _as_shown(default) and cells[1], (key, name)
        # the keys the spec accepts, as its refusal of another names them, are these
        with pytest.raises(SpecError, match=key) as refused:
            parse_spec({**base, key: {"no_such_key": 1}})
        accepted = re.search(rf"{key}=.* must be true, false, or a mapping of ([\w, ]+)", str(refused.value))
        assert accepted and accepted.group(1).split(", ") == list(settings)
    qstar = inspect.signature(optimize_local_q).parameters
    documented = [k.removeprefix("evaluate.qstar.") for k in rows if k.startswith("evaluate.qstar.")]
    assert documented
    assert all(rows[f"evaluate.qstar.{k}"][0] == _as_shown(qstar[k].default) for k in documented)

    assert {k.split(".")[1] for k in rows if k.startswith("tracking.")} == set(TRACKERS)
    mlflow = {k.removeprefix("tracking.mlflow."): v for k, v in rows.items()
              if k.startswith("tracking.mlflow.")}
    assert set(mlflow) == set(TRACKERS["mlflow"]) == set(TRACKER_HELP["mlflow"])
    assert mlflow["tracking_uri"][0] == f"`{default_tracking_uri('STORAGE/NAME')}`"  # the runner's default
    ray_defaults = inspect.signature(MLflowLoggerCallback).parameters
    for key in ("tags", "save_artifact"):  # left to Ray's callback
        assert mlflow[key][0] == _as_shown(ray_defaults[key].default)
    assert all(cells[1] for k, cells in rows.items() if k.startswith("tracking."))

    # read at call time: a family a user's module registers appears
    monkeypatch.setattr(families, "_REGISTERED", dict(families._REGISTERED))  # registered here alone
    module = tmp_path / "late_family.py"
    module.write_text(USER_FAMILY_WITH_OPTIONS)
    families.import_modules([str(module)])
    assert "late_family" in families.FAMILIES
    rows = _table_rows(reference_markdown())
    check_families(rows)
    assert rows["late_family"][1:] == ["no", "`depth` (`3`)"]
