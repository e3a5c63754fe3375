"""GPU variant: a randomly initialised model with the shapes of an 8B Llama, bf16 on CUDA.

No weights are downloaded: the architecture is built from a config and initialised on the GPU.
The tokenizer is a byte-level one built in code. The axis is fitted by the real pipeline on the
random model (its texts are noise, so the cosine filter is opened to keep every pair); the
generation ratios use that fitted axis. Prints a table, then one JSON line.

`--host-bound-proxy` runs the same benchmark without a GPU: the 8B model's 32 layers at width
64 on one CPU thread, where every op costs about its dispatch overhead — the regime of
batch-1 decoding on a GPU, where the host launching kernels is the bottleneck.

    python bench/gpu.py [--runs 5] [--tokens 64] [--layers 32] [--host-bound-proxy] [--compile]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402
from common import (  # noqa: E402
    compiled_ratios,
    edit_step_share,
    generation_ratios,
    ops_per_forward,
    print_results,
)
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

from alignez_core import LoadedModel  # noqa: E402
from alignez_core.axes.axis import preset  # noqa: E402
from alignez_core.axes.subspace import SubspaceConfig  # noqa: E402
from alignez_core.fitting.fit import FitConfig, fit_axis  # noqa: E402
from alignez_core.fitting.pairs import PairConfig  # noqa: E402
from tests.toy import byte_tokenizer  # noqa: E402


def llama_8b_shapes(layers: int) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=128256,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=layers,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=8192,
        rope_theta=500000.0,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
    )


def proxy_shapes(layers: int, vocab_size: int) -> LlamaConfig:
    """The 8B layout (layers, GQA 4:1, SwiGLU) at width 64: per-op cost is all overhead."""
    config = llama_8b_shapes(layers)
    config.update({"vocab_size": vocab_size, "hidden_size": 64, "intermediate_size": 224,
                   "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 8})  # fmt: skip
    return config


def random_model_bench(
    config: LlamaConfig, device: str, dtype: torch.dtype, runs: int, tokens: int, compiled: bool
) -> dict:
    """Build the random model, fit the preset on it, and measure the generation ratios."""
    started = time.perf_counter()
    torch.manual_seed(0)
    torch.set_default_dtype(dtype)
    with torch.device(device):
        model = LlamaForCausalLM(config)
    torch.set_default_dtype(torch.float32)
    tokenizer = byte_tokenizer()
    with torch.no_grad():  # random logits: let the tokens the byte tokenizer can decode win
        model.lm_head.weight[len(tokenizer) :].zero_()
        model.lm_head.weight[tokenizer.eos_token_id].zero_()
    name = f"random-init Llama, {config.num_hidden_layers} layers × {config.hidden_size} ({dtype})"
    lm = LoadedModel.wrap(model, tokenizer, name)
    results: dict = {
        "model": lm.model_id,
        "params_b": round(sum(p.numel() for p in model.parameters()) / 1e9, 3),
        "build_seconds": round(time.perf_counter() - started, 1),
    }
    fit_config = FitConfig(
        n_queries=8,
        pooling="mean",
        pairs=PairConfig(insight_tokens=40, answer_tokens=64),
        subspace=SubspaceConfig(max_pair_cosine=1.01),  # random-model texts: keep every pair
    )
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    fit_started = time.perf_counter()
    pack = fit_axis(lm, preset("cheerful"), config=fit_config)
    sync()
    results["fit_seconds"] = round(time.perf_counter() - fit_started, 2)
    results["fit_breakdown"] = {k: round(v, 2) for k, v in pack.timings.items()}
    results["ops_per_forward"] = ops_per_forward(lm, pack)
    results.update(generation_ratios(lm, pack, tokens, runs))
    results.update(edit_step_share(lm, pack, results["plain_tokens_per_s"]))
    if compiled:  # last: the eager figures above never see a compiled model
        results.update(compiled_ratios(lm, pack, tokens, runs, sync=device == "cuda"))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--host-bound-proxy", action="store_true", help="CPU, width 64")
    parser.add_argument("--compile", action="store_true", help="also the compiled decoding path")
    args = parser.parse_args()
    if args.host_bound_proxy:
        torch.set_num_threads(1)
        config = proxy_shapes(args.layers, len(byte_tokenizer()))
        results = {"device": "CPU, 1 thread (host-bound proxy)", "torch": torch.__version__}
        results.update(
            random_model_bench(config, "cpu", torch.float32, args.runs, args.tokens, args.compile)
        )
        print_results(results)
        return
    if not torch.cuda.is_available():
        sys.exit("bench/gpu.py needs a CUDA device (or --host-bound-proxy).")
    results = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    config = llama_8b_shapes(args.layers)
    results.update(
        random_model_bench(config, "cuda", torch.bfloat16, args.runs, args.tokens, args.compile)
    )
    results["peak_gpu_memory_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
    print_results(results)


if __name__ == "__main__":
    main()
