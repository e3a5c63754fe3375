"""Find the decoder layers and their MLP modules of a causal LM by structure.

Axes are read and edited at one of two sites per decoder layer (docs/method.md §3, §6): the
`residual` stream (the decoder block's output) or the paper's `mlp` output. The engine needs,
for any supported model, the ordered decoder blocks and the MLP inside each. We find them by
looking at the module tree instead of hard-coding one attribute path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from torch import nn

from alignez_core.errors import UnsupportedModelError

# Attribute names an MLP goes by inside a decoder block, most common first.
_MLP_NAMES = ("mlp", "feed_forward", "ffn", "block_sparse_moe")

Site = Literal["residual", "mlp"]
SITES: tuple[str, ...] = ("residual", "mlp")


@dataclass(frozen=True)
class DecoderLayout:
    """Where the decoder blocks live (dotted path), the blocks, and each block's MLP module."""

    layers_path: str
    mlps: tuple[nn.Module, ...]
    blocks: tuple[nn.Module, ...] = ()

    @property
    def num_layers(self) -> int:
        return len(self.mlps)

    def modules_at(self, site: Site) -> tuple[nn.Module, ...]:
        """The module whose output is the site, per layer: the block (residual) or its MLP."""
        if site == "residual":
            return self.blocks
        if site == "mlp":
            return self.mlps
        raise ValueError(f"site must be one of {SITES}, got {site!r}.")


def text_config(model: nn.Module) -> Any:
    """The decoder's config (a multimodal model's text part), or None for a model without one."""
    config: Any = getattr(model, "config", None)
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def hidden_size_of(model: nn.Module) -> int:
    """The width of the decoder's hidden states."""
    return int(text_config(model).hidden_size)


def _expected_layer_count(model: nn.Module) -> int | None:
    text = text_config(model)
    if text is None:
        return None
    for name in ("num_hidden_layers", "n_layer", "num_layers"):
        value = getattr(text, name, None)
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
            return DecoderLayout(name, tuple(mlps), tuple(layers))  # type: ignore[arg-type]
    raise UnsupportedModelError(
        f"Cannot find the decoder layers and MLPs of model class {type(model).__name__}: "
        f"looked for a ModuleList of {expected} blocks each with one of {', '.join(_MLP_NAMES)}."
    )
