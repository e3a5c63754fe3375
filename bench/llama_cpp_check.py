"""llama.cpp itself loads our exported control vector and it steers there too.

Not part of `make test`: llama-cpp-python ships only an sdist on PyPI, so installing it compiles
llama.cpp (C++/CMake) — ~25 min on this 2-core machine while other work ran, far past CI time.
`make llamacpp` builds it into `.bench-llamacpp` once (pip caches the wheel) and runs this.

Fits cheerful on the embedded SmolLM2 (8 queries), exports the control vector at slider −1 and
+1 with `export_control_vector`, then on dev prompts: llama.cpp's own greedy chat completion
on the same GGUF weights, without and with the file applied through `llama_set_adapter_cvec`
(the call behind `--control-vector`, which loads `direction.N` into layer N), against our engine
with the same file imported (`mean_diff`, every layer, every position — how llama.cpp applies it).

    python bench/llama_cpp_check.py [--prompts 6] [--tokens 48] [--strength 1]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / ".bench-llamacpp"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gguf  # noqa: E402
import llama_cpp  # noqa: E402

from alignez_core import load_model  # noqa: E402
from alignez_core.axes.axis import ASSETS, preset  # noqa: E402
from alignez_core.axes.queries import read_queries  # noqa: E402
from alignez_core.engine.edit import ALL_LAYERS  # noqa: E402
from alignez_core.engine.generation import SamplingConfig  # noqa: E402
from alignez_core.engine.model import _default_gguf  # noqa: E402
from alignez_core.fitting.fit import FitConfig, fit_axis  # noqa: E402
from alignez_core.interop import export_control_vector, import_control_vector  # noqa: E402
from alignez_core.measure.judges import tone  # noqa: E402
from alignez_core.steering import SteerSettings, generate  # noqa: E402


def cvec_buffer(path: Path, n_embd: int, n_layer: int):
    """The file as llama.cpp's loader lays it out: n_embd floats per layer from layer 1."""
    data = (ctypes.c_float * (n_embd * n_layer))()
    for tensor in gguf.GGUFReader(str(path)).tensors:
        layer = int(tensor.name.split(".")[1])
        for i, value in enumerate(tensor.data.flatten().tolist()):
            data[(layer - 1) * n_embd + i] = value
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prompts", type=int, default=6)
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--strength", type=float, default=1.0)
    args = parser.parse_args()
    lm = load_model()
    prompts = read_queries(ASSETS / "dev_prompts.txt").queries[: args.prompts]
    pack = fit_axis(lm, preset("cheerful"), config=FitConfig(n_queries=8))
    llm = llama_cpp.Llama(str(_default_gguf()), n_ctx=1024, seed=0, verbose=False)
    n_embd, n_layer = llm.n_embd(), llama_cpp.llama_model_n_layer(llm.model)

    def llama_answers() -> list[str]:
        out = []
        for prompt in prompts:
            llm.reset()  # the prompt is evaluated again, under the current control vector
            reply = llm.create_chat_completion(
                [{"role": "user", "content": prompt}], temperature=0.0, max_tokens=args.tokens
            )
            out.append(reply["choices"][0]["message"]["content"])
        return out

    base = llama_answers()
    result = {"base_tone": statistics.mean(tone(base)), "signs": {}}
    with tempfile.TemporaryDirectory() as folder:
        for sign in (1.0, -1.0):
            path = export_control_vector(pack, Path(folder) / "axis.gguf", sign * args.strength)
            data = cvec_buffer(path, n_embd, n_layer)
            status = llama_cpp.llama_set_adapter_cvec(
                llm._ctx.ctx, data, len(data), n_embd, 1, n_layer
            )
            assert status == 0, f"llama.cpp refused the control vector ({status})"
            edited = llama_answers()
            llama_cpp.llama_set_adapter_cvec(llm._ctx.ctx, None, 0, n_embd, 1, n_layer)
            ours = generate(lm, prompts, {import_control_vector(path, lm): 1.0},
                            SteerSettings(rule="mean_diff", band=ALL_LAYERS, positions="all"),
                            SamplingConfig(args.tokens))  # fmt: skip
            result["signs"][f"{sign:+g}"] = {
                "llama_cpp_tone_shift": statistics.mean(tone(edited)) - result["base_tone"],
                "llama_cpp_changed": sum(e != b for e, b in zip(edited, base, strict=True)),
                "ours_tone_shift": statistics.mean(tone([a.edited for a in ours]))
                - statistics.mean(tone([a.base for a in ours])),
                "example": edited[0][:160],
            }
    result["prompts"], result["layers"] = len(prompts), n_layer
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
