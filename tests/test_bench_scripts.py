"""Every bench script still imports against today's engine, and each command-line one answers
--help: docs/ cite these scripts as the way to reproduce a measurement, and neither ruff nor
mypy (which checks only alignez_core) sees a name the engine has since moved or dropped."""

import contextlib
import importlib
import io
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
SCRIPTS = sorted(BENCH.glob("*.py"))
OPTIONAL = {"llama_cpp_check": "llama_cpp"}  # built by `make llamacpp`, not by `make test`


@pytest.fixture(autouse=True)
def _bench_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))


def _load(script: Path):
    if script.stem in OPTIONAL:
        pytest.importorskip(OPTIONAL[script.stem])
    return importlib.import_module(script.stem)


def test_the_scripts_are_found():
    assert {"results", "base_goals", "base_directions", "tune_studies"} <= {s.stem for s in SCRIPTS}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_a_bench_script_imports_and_answers_help(script, monkeypatch):
    module = _load(script)
    if "argparse" not in script.read_text() or not hasattr(module, "main"):
        return  # a helper module, or a script whose arguments are paths another script passes
    monkeypatch.setattr(sys, "argv", [str(script), "--help"])
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), pytest.raises(SystemExit) as stopped:
        module.main()
    assert stopped.value.code == 0
    assert "usage:" in printed.getvalue()
