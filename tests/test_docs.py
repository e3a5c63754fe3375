"""Every link and `docs/…` reference in the repository resolves inside it (README, docs/,
docstrings and comments), and nothing points outside the repository."""

import ast
import io
import re
import subprocess
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TEXT_SUFFIXES = {".md", ".py", ".toml", ".txt", ".cfg", ".yml", ".yaml"}
FENCE = re.compile(r"^```.*?^```", re.M | re.S)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)")
DOCS_REF = re.compile(r"(?<![\w./-])docs/[\w./-]*\w")
OUTSIDE = re.compile(r"\.\./shared|METHOD\.md|METHOD §")


def tracked() -> list[Path]:
    names = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    paths = [ROOT / name for name in names]
    return [p for p in paths if p.is_file() and (p.suffix in TEXT_SUFFIXES or p.name == "Makefile")]


FILES = tracked()


def python_prose(source: str) -> str:
    """A Python file's docstrings and comments: what a reader follows, not string literals."""
    tree = ast.parse(source)
    nodes = list(ast.walk(tree))
    docs = [
        ast.get_docstring(n) or ""
        for n in nodes
        if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
    ]
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    comments = [t.string for t in tokens if t.type == tokenize.COMMENT]
    return "\n".join(docs + comments)


def broken_references(path: Path, text: str) -> list[str]:
    """Link targets and `docs/…` references in `text` that do not resolve inside the repo."""
    if path.suffix == ".py":
        text = CODE_SPAN.sub("", python_prose(text))
    prose = CODE_SPAN.sub("", FENCE.sub("", text)) if path.suffix == ".md" else text
    problems = []
    for target in LINK.findall(FENCE.sub("", text)) if path.suffix == ".md" else ():
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue  # a URL or an anchor on the same page
        resolved = (path.parent / target.split("#")[0]).resolve()
        if not resolved.is_relative_to(ROOT) or not resolved.exists():
            problems.append(f"{path.relative_to(ROOT)}: link {target}")
    for reference in DOCS_REF.findall(prose):
        candidate = reference.split("#")[0].rstrip(".")
        if not (ROOT / candidate).exists() and not list(ROOT.glob(candidate)):
            problems.append(f"{path.relative_to(ROOT)}: {reference}")
    return problems


def test_the_checker_sees_a_broken_link_and_reference(tmp_path):
    page = ROOT / "docs" / "page.md"  # never written: the text is checked as if it lived there
    text = "See [gone](missing.md), [up](../../x.md), docs/nothing.md and `docs/ignored.md`."
    assert len(broken_references(page, text)) == 3
    assert broken_references(page, "[ok](method.md) docs/method.md §6 [web](https://a.b)") == []
    module = ROOT / "alignez_core" / "module.py"
    source = '"""See docs/gone.md."""\nPATH = "docs/literal.md"  # and docs/missing.md\n'
    assert len(broken_references(module, source)) == 2


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_and_docs_reference_resolves(path):
    assert broken_references(path, path.read_text(errors="replace")) == []


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_points_outside_the_repository(path):
    if path == Path(__file__).resolve():
        return  # the pattern itself
    assert OUTSIDE.findall(path.read_text(errors="replace")) == []
