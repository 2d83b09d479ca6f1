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
