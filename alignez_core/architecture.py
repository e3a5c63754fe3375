"""Find the decoder layers and their MLP modules of a causal LM by structure.

Edits are read and written at each decoder layer's MLP output (METHOD §3, §6), so the engine
needs, for any supported model, the ordered list of decoder blocks and the MLP inside each.
We find them by looking at the module tree instead of hard-coding one attribute path.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .errors import UnsupportedModelError

# Attribute names an MLP goes by inside a decoder block, most common first.
_MLP_NAMES = ("mlp", "feed_forward", "ffn", "block_sparse_moe")


@dataclass(frozen=True)
class DecoderLayout:
    """Where the decoder blocks live (dotted path) and each block's MLP module."""

    layers_path: str
    mlps: tuple[nn.Module, ...]

    @property
    def num_layers(self) -> int:
        return len(self.mlps)


def _expected_layer_count(model: nn.Module) -> int | None:
    config = getattr(model, "config", None)
    if config is None:
        return None
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    for name in ("num_hidden_layers", "n_layer", "num_layers"):
        value = getattr(text_config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _find_mlp(block: nn.Module) -> nn.Module | None:
    for name in _MLP_NAMES:
        child = getattr(block, name, None)
        if isinstance(child, nn.Module):
            return child
    return None


def find_decoder_layout(model: nn.Module) -> DecoderLayout:
    """Return the decoder blocks' MLPs in order.

    The decoder stack is the `nn.ModuleList` whose length equals the config's layer count and
    whose blocks each hold an MLP (Llama, Qwen2, Gemma 1-3, Mistral, Phi-3: `model.layers`;
    GPT-2: `transformer.h`; GPT-NeoX: `gpt_neox.layers`).
    """
    expected = _expected_layer_count(model)
    candidates: list[tuple[str, nn.ModuleList]] = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.ModuleList) and len(module) > 0
    ]
    for name, layers in candidates:
        if expected is not None and len(layers) != expected:
            continue
        mlps = [_find_mlp(block) for block in layers]
        if all(mlp is not None for mlp in mlps):
            return DecoderLayout(layers_path=name, mlps=tuple(mlps))  # type: ignore[arg-type]
    raise UnsupportedModelError(
        f"Cannot find the decoder layers and MLPs of model class {type(model).__name__}: "
        f"looked for a ModuleList of {expected} blocks each with one of {', '.join(_MLP_NAMES)}."
    )
