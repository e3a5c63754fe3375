"""`python -m build` gives an sdist and a wheel that work on their own: the engine's data
inside, complete metadata, and the `alignez` command from the installed files."""

import email
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ("presets.json", "seed_queries.txt", "judge_anchors.json", "dev_prompts.txt")


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """sdist + wheel built from a copy of what the package is made of (the wheel from the sdist,
    as `build` does); no network: the build backend is the one requirements.txt installs."""
    source = tmp_path_factory.mktemp("source")
    for name in ("alignez_core", "assets"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("dist")
    built = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    return out


def test_the_wheel_carries_the_engines_data_and_complete_metadata(dist):
    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        meta = email.message_from_bytes(
            archive.read(next(n for n in names if n.endswith(".dist-info/METADATA")))
        )
        entry_points = archive.read(next(n for n in names if n.endswith("entry_points.txt")))
    assert {f"alignez_core/assets/{name}" for name in DATA} <= names
    assert "alignez_core/assets/packs/cheerful.safetensors" in names
    assert "alignez_core/py.typed" in names and not any(n.endswith(".png") for n in names)
    assert not any(n.startswith(("ui/", "tests/", "bench/")) for n in names)
    assert meta["License-Expression"] == "Apache-2.0" and any("LICENSE" in n for n in names)
    assert meta["Requires-Python"] == ">=3.11" and "Topic :: Scientific" in str(meta)
    assert meta.get_all("Project-URL") and meta["Description-Content-Type"] == "text/markdown"
    requires = meta.get_all("Requires-Dist")
    assert any(r.startswith("torch") for r in requires)
    assert any(r.startswith("gradio") and 'extra == "studio"' in r for r in requires)
    assert b"alignez = alignez_core.cli:main" in entry_points
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        members = archive.getnames()
    assert any(m.endswith("assets/presets.json") for m in members)


def test_the_installed_wheel_runs_without_the_repository(dist, tmp_path):
    """Installed elsewhere and run from elsewhere: presets, seed queries, judge anchors and the
    pre-fitted packs come from the wheel, and the console script answers."""
    (wheel,) = dist.glob("*.whl")
    target = tmp_path / "site"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
         "--target", str(target), str(wheel)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    env = {**os.environ, "PYTHONPATH": str(target)}
    code = (
        "from alignez_core.axes.axis import ASSETS, preset, seed_queries\n"
        "from alignez_core.measure.judges import anchors\n"
        "from alignez_core.axes.prefit import prefitted_pack\n"
        "print(ASSETS)\n"
        "assert preset('cheerful').positive and len(seed_queries()) >= 24\n"
        "assert all(anchors(preset('cheerful')))\n"
        "assert prefitted_pack('cheerful').axis == preset('cheerful')\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert Path(run.stdout.strip()) == target / "alignez_core" / "assets"
    cli = subprocess.run([str(target / "bin" / "alignez"), "--help"], cwd=tmp_path, env=env,
                         capture_output=True, text=True)  # fmt: skip
    assert cli.returncode == 0 and "fit" in cli.stdout and "import" in cli.stdout
