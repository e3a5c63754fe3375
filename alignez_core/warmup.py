"""Pay a cold compile in another process, so it never holds the serving process's GIL.

A cold `torch.compile` of the decoding step is minutes of Python on a 2-core CPU (dynamo traces,
inductor lowers and writes C++); run in a thread of the serving process it holds the GIL, and a
lowered CPU priority does not help requests that wait for the GIL (a load test's generations
timed out behind it). Here a child process at the lowest priority loads the same model and
compiles the same buckets into inductor's disk cache (`TORCHINDUCTOR_CACHE_DIR`, shared with the
parent); the parent then compiles from that cache (about 25 s for SmolLM2's two buckets on 2
cores, against minutes cold).

    python -m alignez_core.warmup --model SPEC --dtype float32 --batches 2,4 --settings JSON
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import json
import os
import signal
import subprocess
import sys
from dataclasses import asdict, dataclass

import torch

from .compiled import CompileSettings

WARMUP_TIMEOUT_S = 1800.0  # a cold 2-core compile of SmolLM2 is 1–2 minutes a bucket


@dataclass(frozen=True)
class LoadSpec:
    """How a model was loaded, so another process can load the same one (`load_model`)."""

    spec: str | None
    dtype: str  # torch dtype name: "float32", "bfloat16"


def warm_command(load: LoadSpec, settings: CompileSettings, batches: tuple[int, ...]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "alignez_core.warmup",
        "--model",
        load.spec or "",
        "--dtype",
        load.dtype,
        "--batches",
        ",".join(str(b) for b in batches),
        "--settings",
        json.dumps(asdict(settings)),
    ]


def warm_in_child(
    load: LoadSpec,
    settings: CompileSettings,
    batches: tuple[int, ...],
    timeout: float = WARMUP_TIMEOUT_S,
) -> str | None:
    """Run the warm-up in a child process (it inherits the caller's CPU priority); None when it
    compiled every bucket, else why not, in words."""
    try:
        done = subprocess.run(
            warm_command(load, settings, batches),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=timeout,
            env=os.environ | {"TRANSFORMERS_VERBOSITY": "error"},
        )
    except subprocess.TimeoutExpired:
        return f"the warm-up process ran past {timeout:.0f} s"
    except OSError as exc:
        return f"the warm-up process did not start ({exc})"
    if done.returncode == 0:
        return None
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    return f"the warm-up process failed ({lines[-1] if lines else f'exit {done.returncode}'})"


def _end_with_parent() -> None:
    """Linux: end this process when the thread that started it ends (the serving process was
    stopped or killed), rather than compiling on for nobody."""
    with contextlib.suppress(OSError, AttributeError, TypeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def main(argv: list[str] | None = None) -> int:
    from .model import load_model  # the parent's modules load lazily: this is the child's side

    _end_with_parent()

    parser = argparse.ArgumentParser(prog="python -m alignez_core.warmup", description=__doc__)
    parser.add_argument("--model", default="")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--batches", default="2")
    parser.add_argument("--settings", default="{}")
    args = parser.parse_args(argv)
    lm = load_model(args.model or None, dtype=getattr(torch, args.dtype))
    lm.enable_compile(CompileSettings(**json.loads(args.settings)), warm_batches=())
    lm.warm_compile(tuple(int(b) for b in args.batches.split(",")))
    if lm.compiled is None:
        print(lm.compile_note, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
