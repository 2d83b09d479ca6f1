"""The README and the docs pages tell the truth: their commands exist, their generated blocks match
the code, their images are there."""

import importlib
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TEXT = {page: page.read_text() for page in PAGES}
README = TEXT[ROOT / "README.md"]
REFERENCE = (ROOT / "docs" / "reference.md").read_text()


def _commands(text):
    """Shell lines of a page's bash blocks, continuation lines joined."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith("#"):
                out.append(line)
    return out


COMMANDS = [c for text in TEXT.values() for c in _commands(text)]
MAKE_TARGETS = sorted({c.split()[1] for c in COMMANDS if c.startswith("make ")})
MODULES = sorted({(m, sub) for c in COMMANDS for m, sub in re.findall(r"python -m (\w+) (\w+)", c)})
SCRIPTS = sorted({s for c in COMMANDS for s in re.findall(r"python (\S+\.py)", c)})


def test_readme_has_the_two_commands():
    first = _commands(re.search(r"```bash\n.*?```", README, re.S).group(0))  # the front page's first block
    assert first[:2] == ["make demo", "make test"], first
    assert {"demo", "test", "cluster-demo"} <= set(MAKE_TARGETS)
    assert ("sweep", "run") in MODULES and ("analysis", "figures") in MODULES


@pytest.mark.parametrize("target", MAKE_TARGETS)
def test_make_targets_exist(target):
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(rf"^{target}:", makefile, re.M)
    dry = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr


def test_a_cli_answers_help_as_a_process():
    out = subprocess.run([sys.executable, "-m", "sweep", "run", "--help"], cwd=ROOT, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    assert "usage: python -m sweep run" in out.stdout


# The rest in this process: the same parsers (`python -m M` is M/__main__.py calling M.cli.main),
# without a new interpreter's seconds of imports each.
@pytest.mark.parametrize("module, sub", MODULES)
def test_cli_commands_answer_help(module, sub, capsys):
    cli = importlib.import_module(f"{module}.cli")
    with pytest.raises(SystemExit) as done:
        cli.main([sub, "--help"])
    assert done.value.code == 0
    assert "usage:" in capsys.readouterr().out


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_answer_help(script, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [script, "--help"])
    monkeypatch.setattr(sys, "path", list(sys.path))  # a script's own sys.path.insert stays with it
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(ROOT / script), run_name="__main__")
    assert done.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_generated_blocks_are_in_step_with_the_code():
    """The reference lists every key (that its block equals the code's:
    test_every_page_quotes_its_numbers_from_their_source)."""
    import dataclasses

    from sweep.rules import TRAIN_KEYS
    from sweep.spec import SweepSpec

    for key in (f.name for f in dataclasses.fields(SweepSpec)):
        assert f"| `{key}` |" in REFERENCE
    for key in TRAIN_KEYS:
        assert f"| `train.{key}` |" in REFERENCE
    assert "| `family_options.factorized.optimizer` |" in REFERENCE  # a family's own settings too
    assert "<!-- demo.table:start -->" in README  # the demo's table stays on the front page


def test_images_exist():
    """Each page's images, relative to that page."""
    found = 0
    for page, text in TEXT.items():
        for img in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
            assert (page.parent / img).is_file(), f"{page.relative_to(ROOT)}: {img}"
            found += 1
    assert found >= 6


def _shown_cli_commands() -> list[tuple[str, str]]:
    """(page, command) for every `python -m sweep|analysis|trainables ...` a page shows, in a bash
    block or inline code, from `python -m` on, its shell comment and redirections dropped."""
    found = []
    for page, text in TEXT.items():
        inline = re.findall(r"`([^`\n]*python -m (?:sweep|analysis|trainables)[^`\n]*)`", text)
        for line in [*_commands(text), *inline]:
            for cmd in re.findall(r"python -m (?:sweep|analysis|trainables)\b[^|;&#]*", line):
                cmd = cmd.split(" > ")[0].strip()
                if len(cmd.split()) > 3 and "[" not in cmd:  # not a bare name or a usage line
                    found.append((page.name, cmd))
    return sorted(set(found))


SHOWN = _shown_cli_commands()


@pytest.mark.parametrize("page, command", SHOWN, ids=[c for _, c in SHOWN])
def test_every_shown_command_parses_with_the_cli_it_names(page, command):
    """A flag a page shows must exist (`sweep run --data-root` once did not); placeholders such as
    EXPERIMENT_DIR stand where a path goes, so the parser accepts them as it accepts a path."""
    import shlex

    words = shlex.split(command.replace("...", "X"))
    module, args = words[2], words[3:]
    parser = importlib.import_module(f"{module}.cli").build_parser()
    try:
        parser.parse_args(args)
    except (SystemExit, Exception) as e:  # OneLineParser raises UsageError; argparse exits
        pytest.fail(f"{page}: `{command}` does not parse: {e}")


def test_pages_show_commands_of_every_cli():
    assert {c.split()[2] for _, c in SHOWN} == {"sweep", "analysis", "trainables"}
    assert len(SHOWN) >= 30


def _sync_docs():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        return importlib.import_module("sync_docs")
    finally:
        sys.path.remove(str(ROOT / "scripts"))


def test_a_number_that_differs_from_its_artifact_is_found():
    """The check compares each quoted number with its source: a page whose number was edited by hand
    (or whose artifact was rerun) is listed with the key, the page's text and the source's."""
    sync = _sync_docs()
    facts = {"demo.best-elbo": "331", "demo.table": "| a |\n|---|\n| 1 |"}
    page = ("k = 64 gives <!-- =demo.best-elbo -->331<!-- / --> nats.\n"
            "<!-- demo.table:start -->\n| a |\n|---|\n| 1 |\n<!-- demo.table:end -->\n")
    assert sync.synced(page, facts)[1] == []
    edited = page.replace(">331<", ">330<")
    new, diffs, used = sync.synced(edited, facts)
    assert diffs == [("demo.best-elbo", "330", "331")] and new == page and used == set(facts)
    rerun = {**facts, "demo.table": "| a |\n|---|\n| 2 |"}
    assert [d[0] for d in sync.synced(page, rerun)[1]] == ["demo.table"]
    with pytest.raises(KeyError):
        sync.synced("<!-- =demo.no-such -->1<!-- / -->", facts)


def test_every_page_quotes_its_numbers_from_their_source():
    """Each fact a page holds equals what scripts/docfacts computes from the committed artifacts and
    the code (tests collected, bad inputs, families), fact by fact (in a fresh process: the suite
    registers families of its own), and the pages hold the counts and the demo's table."""
    out = subprocess.run([sys.executable, "scripts/sync_docs.py", "--check"], cwd=ROOT, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    sync = _sync_docs()
    used = {m for text in TEXT.values() for m in sync.INLINE.findall(text) + sync.BLOCK.findall(text)}
    keys = {m if isinstance(m, str) else m[0] for m in used}
    for must in ("code.tests-fast", "code.tests-all", "code.bad-inputs", "demo.table", "demo.wall"):
        assert must in keys


def test_the_layout_lists_every_module_of_the_tree():
    """docs/extending.md's Layout is drawn from the tree: every module of the packages, the
    benchmarks and the scripts is named under its folder with what its docstring says."""
    sync = _sync_docs()
    layout = sync.collect({"layout"})["layout.tree"]
    assert layout in (ROOT / "docs" / "extending.md").read_text()
    for pkg in ("trainables", "sweep", "analysis", "testbed", "benchmarks", "scripts"):
        for path in (ROOT / pkg).rglob("*.py"):
            if path.name in ("__init__.py", "__main__.py") or "__pycache__" in path.parts:
                continue
            folder = path.parent.relative_to(ROOT)
            section = layout.split(f"- **`{folder}/`**", 1)[1].split("\n- **", 1)[0]
            assert f"  - `{path.name}`: " in section, path


def _tables(text: str):
    """Each markdown table of a page: (its lines, the paragraph lines before it)."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and re.match(r"^\|[\s:|-]+\|$", lines[i + 1]):
            j = i
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            k = i - 1
            while k >= 0 and (lines[k].strip() == "" or lines[k].startswith("<!--")):
                k -= 1
            before = []
            while k >= 0 and lines[k].strip() and not lines[k].startswith("|"):
                before.insert(0, lines[k])
                k -= 1
            yield lines[i:j], before
            i = j
        else:
            i += 1


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_plus_minus_says_what_it_is(page):
    """A table with a ± says, in its header or in the paragraph that introduces it, whether it is an
    SE or an SD."""
    for table, before in _tables(TEXT[page]):
        if any("±" in row for row in table[2:]):
            said = " ".join([table[0], *before])
            assert re.search(r"\bSE\b|standard error|\bSD\b|standard deviation", said), (
                f"{page.name}: a table with ± that does not say SE or SD: {table[0][:80]}")


def test_the_front_table_is_narrow():
    table, _ = next(_tables(README))
    assert table[0].count("|") - 1 <= 8, table[0]


def test_nothing_points_outside_the_repository():
    """A clone has no ../shared: no page, spec or module names it (or its SPEC.md)."""
    hits = []
    for folder in ("docs", "sweep", "analysis", "trainables", "scripts", "benchmarks", "cluster"):
        for f in (ROOT / folder).rglob("*"):
            if f.is_file() and f.suffix in (".md", ".py", ".yaml", ".ipynb", ".sbatch"):
                text = f.read_text(errors="replace")
                found = re.findall(r".{0,20}(?:shared/|SPEC\.md).{0,20}", text)
                hits += [f"{f.relative_to(ROOT)}: {m}" for m in found]
    assert "shared/" not in README and "SPEC.md" not in README
    assert hits == []


def test_one_version_everywhere():
    """pyproject's version is the newest release in CHANGELOG.md and the one CITATION.cff cites."""
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    releases = re.findall(r"^## (\d+\.\d+\.\d+)", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert releases and releases[0] == version
    assert re.search(rf"^version: {re.escape(version)}$", (ROOT / "CITATION.cff").read_text(), re.M)
