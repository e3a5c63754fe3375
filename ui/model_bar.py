"""The model bar: which model is loaded, and loading another one."""

from __future__ import annotations

from collections.abc import Callable

import gradio as gr

from alignez_core import AlignEZError
from alignez_core.engine.catalog import NAMED_MODELS
from ui.session import StudioSession

from .render import status
from .shared import ModelHolder


def named_models_text() -> str:
    """One line per model this project ships: what it is, whether it is here, its terms."""
    lines = []
    for m in NAMED_MODELS.values():
        here = "installed" if m.installed() else f"not installed here (`{m.install}`)"
        lines.append(f"`{m.name}`: {m.about}; {here}. Terms: {m.terms}.")
    return "<small>" + "<br>".join(lines) + "</small>"


class ModelBar:
    def __init__(self, holder: ModelHolder, kind_updates: Callable[[], tuple[dict, dict]]) -> None:
        self.holder = holder
        self.kind_updates = kind_updates  # the axes panel's samples and readout, for the model

    def build(self) -> None:
        with gr.Row(equal_height=True):
            self.info = gr.Markdown(self.model_text(), elem_id="model-info")
            self.spec = gr.Dropdown(
                choices=[(m.name, m.name) for m in NAMED_MODELS.values()],
                value=None,
                allow_custom_value=True,
                label="Load another model",
                info="a name below, or a Hub id, local folder or .gguf path",
                scale=2,
            )
            self.load = gr.Button("Load model", scale=0)
        gr.Markdown(named_models_text(), elem_id="named-models")

    def model_text(self) -> str:
        lm = self.holder.lm
        dtype = str(lm.dtype).removeprefix("torch.")
        if lm.compiled is None:
            decoding = "eager decoding"
        elif lm.compiled.warming:
            decoding = "eager decoding while the compiled step warms up"
        else:
            eager = sorted(b for b, t in lm.compiled.timings.items() if t.eager_faster)
            rows = ", ".join(str(b) for b in eager)
            faster = f" (eager for {rows}-row batches: measured faster here)" if eager else ""
            decoding = "compiled decoding" + faster
        kind = "instruction-tuned (chat)" if lm.is_chat else "pretrained (base)"
        return (
            f"**Model:** `{lm.model_id}` · {lm.num_layers} layers · hidden size "
            f"{lm.hidden_size} · {kind} model · {dtype}, {decoding}"
        )

    def on_load_model(self, spec: str | None, session: StudioSession, progress=gr.Progress()):
        """Returns the model line, the plots' layer-slider update (the depth may change) and the
        samples slider's and readout radio's (their defaults follow the model's kind)."""
        spec = (spec or "").strip()
        progress(0, desc=f"Loading {spec or 'the embedded model'}…")
        previous = self.holder.lm.model_id
        try:
            lm = self.holder.load(spec or "")
        except AlignEZError as exc:
            return (
                self.model_text() + f"\n\n{status(f'{exc} Still using {previous}.', 'error')}",
                gr.update(),
                gr.update(),
                gr.update(),
            )
        stale = [n for n, p in session.axes.items() if p.hidden_size != lm.hidden_size]
        note = f" Axes fitted on another model: {', '.join(stale)} (re-fit them)." if stale else ""
        loaded = status(f"Loaded in {lm.load_seconds:.1f}s.{note}", "ok")
        return (
            self.model_text() + f"\n\n{loaded}",
            gr.update(value=0, maximum=lm.num_layers - 1),
            *self.kind_updates(),
        )
