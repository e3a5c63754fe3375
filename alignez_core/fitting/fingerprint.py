"""A fit's fingerprint: one hash of everything that decides what a fit writes — the model's
identity, the axis, the queries, every setting (pairs, readout, subspace, calibration grid, rule,
band, positions), the prompt templates and the decoding defaults — so a saved pack can be
checked against today's code without refitting it (the shipped packs' staleness test)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from alignez_core.axes.axis import Axis
from alignez_core.engine.generation import SamplingConfig
from alignez_core.steering import SteerSettings

from .pairs import answer_prompt, insight_prompt, persona_prompt

# SteerSettings fields that act only where several axes share a layer
BETWEEN_AXES = ("separate", "shared_scale")
# The prompt templates are fingerprinted by what they write for this query.
PROBE_QUERY = "What is a good way to spend a quiet afternoon?"


class RecordedConfig(Protocol):
    """A fit's settings as the plain data its pack stores (`FitConfig.record`)."""

    def record(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class ModelIdentity:
    """Which model a fit ran on, as its pack records it."""

    model_id: str
    hidden_size: int
    num_layers: int


def fit_inputs(
    model: ModelIdentity,
    axis: Axis,
    queries: Sequence[str],
    config: RecordedConfig,
    settings: SteerSettings,
) -> dict:
    """Every input of a fit as plain data."""
    templates = {
        sign: {
            "insight": insight_prompt(axis, PROBE_QUERY, positive),
            "answer": answer_prompt(axis, PROBE_QUERY, positive, "<insight>"),
            "persona": persona_prompt(axis, PROBE_QUERY, positive),
        }
        for sign, positive in (("+", True), ("-", False))
    }
    return {
        "model": asdict(model),
        "axis": axis.to_dict(),
        "queries": list(queries),
        "config": config.record(),
        # these act only between several axes, never in a fit of one
        "settings": {k: v for k, v in asdict(settings).items() if k not in BETWEEN_AXES},
        "templates": templates,
        "decoding": asdict(SamplingConfig()),
    }


def fit_fingerprint(
    model: ModelIdentity,
    axis: Axis,
    queries: Sequence[str],
    config: RecordedConfig,
    settings: SteerSettings,
) -> str:
    """The sha256 of `fit_inputs`: equal fingerprints, equal fits (same machine and threads)."""
    inputs = fit_inputs(model, axis, queries, config, settings)
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=list).encode()).hexdigest()
