"""Compiled decoding, switched on, warmed up and kept only where it is faster: `enable_compile(lm)`.

Once a bucket is warm, it is timed compiled against eager on this machine (`choose_paths`): which
wins depends on the CPU, the GPU and the batch, so it is measured rather than assumed.

The cold compile is paid in another process, so it never holds the serving process's GIL.

A cold `torch.compile` of the decoding step is minutes of Python on a 2-core CPU (dynamo traces,
inductor lowers and writes C++); run in a thread of the serving process it holds the GIL, and a
lowered CPU priority does not help requests that wait for the GIL (a load test's generations
timed out behind it). Here a child process at the lowest priority loads the same model and
compiles the same buckets into inductor's disk cache (`TORCHINDUCTOR_CACHE_DIR`, shared with the
parent); the parent then compiles from that cache (about 25 s for SmolLM2's two buckets on 2
cores, against minutes cold).

    python -m alignez_core.engine.warmup --model SPEC --dtype float32 --batches 2,4 --settings JSON
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict

import torch
from transformers import GenerationConfig

from .catalog import MODEL_KINDS
from .compiled import BucketTiming, CompiledDecoder, CompileSettings, CompileUnavailable
from .edit import Edit, LayerEdit, compile_plan
from .model import LoadedModel, LoadSpec, load_model

log = logging.getLogger(__name__)

WARMUP_TIMEOUT_S = 1800.0  # a cold 2-core compile of SmolLM2 is 1–2 minutes a bucket
WARMUP_THREAD = "alignez-compile-warmup"
# Compiling here (from the cache) is seconds of Python holding the GIL; a request thread that
# dropped it for a tensor op waits up to the switch interval to get it back, op after op.
GIL_SWITCH_WHILE_WARMING = 0.0002  # seconds; Python's default is 0.005
# The switch interval is process-wide: two warm-ups (a model loaded while another warms) that
# overlapped here would leave the short one set for good.
_COMPILING_HERE = threading.Lock()


def warm_command(load: LoadSpec, settings: CompileSettings, batches: tuple[int, ...]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "alignez_core.engine.warmup",
        "--model",
        load.spec or "",
        "--dtype",
        load.dtype,
        *(["--kind", load.kind] if load.kind else []),
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


def enable_compile(
    lm: LoadedModel,
    settings: CompileSettings = CompileSettings(),
    warm_batches: tuple[int, ...] = (2,),
    warm_process: bool | None = None,
    choose: bool = True,
) -> threading.Thread | None:
    """Decode small batches through a compiled step (`compiled.py`). The first compile of
    each batch bucket is paid by a background warm-up (returned, already started); calls
    that come before their bucket is warm decode eagerly, so none waits for it (batch sizes
    it does not warm always do). With no `warm_batches`, a bucket compiles on first use.
    `warm_process` (None: wherever another process can load this model, `lm.load_spec`) pays
    the cold compile in a child process first (`warmup.py`): compiled in a thread here, it
    holds the GIL for minutes, and inductor's lowering patches `nn.Module.__call__` for the
    whole process while it traces (a concurrent eager request failed with FX's "module is
    not installed as a submodule"), so without a child, warm up before serving. Where
    compiling cannot run, this says why once (`compile_note`, a warning) and everything
    stays eager. `choose`: once warm, each bucket is timed compiled against eager
    (`choose_paths`), and keeps whichever is faster here."""
    try:
        lm.compiled = CompiledDecoder(lm.model, settings)
    except CompileUnavailable as exc:
        lm.disable_compile(str(exc))
        return None
    if not warm_batches:
        return None
    lm.compiled.warm_only = True  # no request pays a compile: unwarmed buckets stay eager
    child = lm.load_spec is not None if warm_process is None else warm_process
    if child and lm.load_spec is None:
        raise ValueError("warm_process needs a model loaded by load_model (load_spec).")
    worker = threading.Thread(
        target=_warm_in_background,
        args=(lm, warm_batches, settings, child, choose),
        daemon=True,
        name=WARMUP_THREAD,
    )
    worker.start()
    return worker


def _warm_in_background(
    lm: LoadedModel,
    batches: tuple[int, ...],
    settings: CompileSettings,
    child: bool,
    choose: bool,
) -> None:
    """The warm-up at the lowest CPU priority (this thread, and the processes it starts,
    which inherit it): on a 2-core Space a cold warm-up takes minutes and must not starve
    requests."""
    with contextlib.suppress(AttributeError, OSError):  # not Linux: normal priority
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    if child and lm.load_spec is not None:  # `enable_compile` checked that it is set
        started = time.perf_counter()
        failed = warm_in_child(lm.load_spec, settings, batches)
        lm.warmup_seconds["process"] = time.perf_counter() - started
        if failed is not None:
            lm.disable_compile(failed)
            return
    started = time.perf_counter()
    with _COMPILING_HERE:  # one at a time, so each restores the interval it found
        previous = sys.getswitchinterval()
        sys.setswitchinterval(GIL_SWITCH_WHILE_WARMING)
        try:
            warm_compile(lm, batches)
        finally:
            sys.setswitchinterval(previous)
    lm.warmup_seconds["here"] = time.perf_counter() - started
    if choose:  # at the default switch interval: it slows eager decoding's Python
        started = time.perf_counter()
        choose_paths(lm, batches)
        lm.warmup_seconds["timing"] = time.perf_counter() - started


def warm_compile(lm: LoadedModel, batches: tuple[int, ...]) -> None:
    """Compile the decoding step for these batch sizes now (a two-token generation each)."""
    decoder = lm.compiled
    if decoder is None:
        return
    pad = lm.tokenizer.pad_token_id
    config = GenerationConfig(max_new_tokens=2, do_sample=False, pad_token_id=pad)
    for batch in batches:
        inputs = _greeting_batch(lm, batch)
        try:
            with torch.inference_mode():
                _compiled_seconds(decoder, inputs, [None] * batch, None, config)
        except Exception as exc:  # a compiler missing or failing: eager it is
            lm.disable_compile(f"warming it up failed ({type(exc).__name__}: {exc})")
            return
        decoder.mark_warm(batch)


def choose_paths(lm: LoadedModel, batches: tuple[int, ...]) -> None:
    """Time each bucket compiled against eager (`time_bucket`); the buckets where eager wins on
    this machine decode eagerly from now on (which wins differs by CPU, GPU and batch)."""
    for batch in batches:
        decoder = lm.compiled
        bucket = None if decoder is None else decoder.bucket(batch)
        if decoder is None or bucket is None:
            return
        try:
            timing = time_bucket(lm, batch)
        except Exception as exc:  # as in `warm_compile`: eager it is
            lm.disable_compile(f"timing it failed ({type(exc).__name__}: {exc})")
            return
        decoder.timings[bucket] = timing
        path = "eager" if timing.eager_faster else "compiled"
        log.info("%d-row batches decode %s (%s)", bucket, path, timing.describe())


def _greeting_batch(lm: LoadedModel, batch: int) -> dict[str, torch.Tensor]:
    encoded = lm.encode([lm.format_prompt("Hello there.")] * batch, return_tensors="pt")
    return dict(encoded.to(lm.device))


def _compiled_seconds(decoder: CompiledDecoder, inputs, edits, plan, config) -> float:
    """One compiled generation's seconds; a request holding the decoder is waited for first."""
    while True:
        started = time.perf_counter()
        if decoder.generate(inputs, edits, plan, config) is not None:
            return time.perf_counter() - started
        time.sleep(0.05)


def time_bucket(lm: LoadedModel, batch: int, tokens: int = 16, rounds: int = 3) -> BucketTiming:
    """Seconds per token of a `batch`-row generation compiled and eager, alternating, medians
    over `rounds` (after one untimed round each). One row carries an edit on the middle half
    of the layers, as a base + edited compare does (eager pays its hooks per edited layer)."""
    decoder = lm.compiled
    if decoder is None:
        raise CompileUnavailable(lm.compile_note or "compiled decoding is off.")
    inputs = _greeting_batch(lm, batch)
    config = GenerationConfig(
        max_new_tokens=tokens,
        min_new_tokens=tokens,
        do_sample=False,
        pad_token_id=lm.tokenizer.pad_token_id,
    )
    direction = torch.ones(1, lm.hidden_size) / lm.hidden_size**0.5
    layers = range(lm.num_layers // 4, max(lm.num_layers * 3 // 4, lm.num_layers // 4 + 1))
    probe = Edit(tuple(LayerEdit(i, direction, 1e-3, "scaled_add", "residual") for i in layers))
    edits = [*([None] * (batch - 1)), probe]
    plan = compile_plan(edits, lm.num_layers, lm.hidden_size, lm.layer_device)

    def eager_seconds() -> float:
        started = time.perf_counter()
        with lm.hooks.applying(plan):
            lm.model.generate(**inputs, generation_config=config)  # type: ignore[operator]
        return time.perf_counter() - started

    timed = {
        "compiled": lambda: _compiled_seconds(decoder, inputs, edits, plan, config),
        "eager": eager_seconds,
    }
    per_token: dict[str, list[float]] = {path: [] for path in timed}
    with torch.inference_mode():
        for run in range(rounds + 1):  # run 0 is untimed
            order = ("eager", "compiled") if run % 2 else ("compiled", "eager")
            for path in order:  # the order flips: a second run is often faster
                seconds = timed[path]()
                if run:
                    per_token[path].append(seconds / tokens)
    return BucketTiming(*(statistics.median(per_token[p]) for p in ("compiled", "eager")))


def _end_with_parent() -> None:
    """Linux: end this process when the thread that started it ends (the serving process was
    stopped or killed), rather than compiling on for nobody."""
    with contextlib.suppress(OSError, AttributeError, TypeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def main(argv: list[str] | None = None) -> int:
    _end_with_parent()

    parser = argparse.ArgumentParser(
        prog="python -m alignez_core.engine.warmup", description=__doc__
    )
    parser.add_argument("--model", default="")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--kind", choices=MODEL_KINDS, default=None)
    parser.add_argument("--batches", default="2")
    parser.add_argument("--settings", default="{}")
    args = parser.parse_args(argv)
    lm = load_model(args.model or None, dtype=getattr(torch, args.dtype), kind=args.kind)
    enable_compile(lm, CompileSettings(**json.loads(args.settings)), warm_batches=())
    warm_compile(lm, tuple(int(b) for b in args.batches.split(",")))
    if lm.compiled is None:
        print(lm.compile_note, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
