"""The load test's fixtures (real axis packs, one foreign) and its bad-input round at the API."""

from __future__ import annotations

import json
import math
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

from studio_client import ROOT, App, answers, generate_args, raw_call, status_of, upload


def make_packs(workdir: Path) -> list[Path]:
    """Two real packs fitted by the CLI (cheerful, simple; 3 queries each) on the load test's
    model (ALIGNEZ_MODEL, else the default)."""
    paths = []
    for name in ("cheerful", "simple"):
        out = workdir / f"{name}.safetensors"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "alignez_core",
                "fit",
                "--preset",
                name,
                "--n-queries",
                "3",
                "--out",
                str(out),
                *(
                    ["--model", os.environ["ALIGNEZ_MODEL"]]
                    if os.environ.get("ALIGNEZ_MODEL")
                    else []
                ),
            ],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        paths.append(out)
    return paths


def _foreign_pack(workdir: Path) -> Path:
    """A pack fitted on a tiny random model of another width (hidden size 96)."""
    sys.path.insert(0, str(ROOT))
    from alignez_core.axes.axis import preset
    from alignez_core.fitting.fit import FitConfig, fit_axis
    from tests.tiny import make_model

    pack = fit_axis(
        make_model(hidden=96),
        preset("humor"),
        ["a?", "b?", "c?"],
        FitConfig(n_queries=3, pooling="last"),
    )
    return pack.save(workdir / "foreign.safetensors")


def _traversal_zip(workdir: Path, pack: Path) -> Path:
    path = workdir / "traversal.zip"
    manifest = {
        "format": "alignez-session",
        "format_version": 1,
        "axes": [{"name": "x", "file": "../../x"}],
    }
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("session.json", json.dumps(manifest))
        archive.writestr("../../x", pack.read_bytes())
    return path


def bad_inputs(app: App, workdir: Path, pack: Path) -> dict:
    """Each bad input must get a clear message while another session keeps its exact answers."""
    bystander = app.client()
    upload(bystander, pack)
    reference = generate_args("Describe your morning commute.", [1.0], 16)
    expected = answers(bystander.predict(*reference, api_name="/generate"))
    pickled = workdir / "axis.safetensors"
    pickled.write_bytes(pickle.dumps({"direction": [1.0, 2.0]}))
    truncated = workdir / "truncated.safetensors"
    truncated.write_bytes(pack.read_bytes()[:200])
    cases = {  # name: (endpoint, args, a phrase of the message the user must see)
        "nan strength": ("raw", generate_args("hi", [math.nan], 8), "use a number from"),
        "inf strength": ("raw", generate_args("hi", [math.inf], 8), "greater than maximum"),
        "huge strength": ("/generate", generate_args("hi", [1e9], 8), "greater than maximum"),
        "1 MB prompt": ("/generate", generate_args("x" * 1_000_000, [1.0], 8), "the cap is"),
        "pickle as a pack": ("/upload_pack", [pickled], "pickle"),
        "truncated safetensors": ("/upload_pack", [truncated], "not a valid safetensors"),
        "pack for another model": ("/upload_pack", [_foreign_pack(workdir)], "hidden size"),
        "session zip with ../../x": ("/import_session", [_traversal_zip(workdir, pack)], "outside"),
    }
    from gradio_client import handle_file

    rejected, failures = 0, {}
    for name, (endpoint, args, phrase) in cases.items():
        client = app.client()
        upload(client, pack)
        args = [handle_file(str(a)) if isinstance(a, Path) else a for a in args]
        try:
            if endpoint == "raw":  # NaN / inf: a JSON library refuses to send them, so by hand
                result = [None, None, None, raw_call(client, app.url, "generate", args)]
                endpoint = "/generate"
            else:
                result = client.predict(*args, api_name=endpoint)
            text = status_of(result) if endpoint == "/generate" else " ".join(map(str, result[:3]))
        except Exception as exc:  # a refusal by Gradio itself still reaches the client as an error
            text = str(exc)
        same = answers(bystander.predict(*reference, api_name="/generate")) == expected
        if phrase in text and same and app.alive():
            rejected += 1
        else:
            failures[name] = text[:200]
    outside = [p for p in (workdir.parent / "x", workdir / "x", ROOT / "x") if p.exists()]
    return {
        "bad_inputs_tried": len(cases),
        "bad_inputs_rejected": rejected,
        "bad_input_failures": failures,
        "written_outside_temp": [str(p) for p in outside],
    }


__all__ = ["bad_inputs", "make_packs"]
