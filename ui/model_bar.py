"""The model bar: which model is loaded, and loading another one."""

from __future__ import annotations

import gradio as gr

from alignez_core import AlignEZError
from ui.session import StudioSession

from .render import status
from .shared import ModelHolder


class ModelBar:
    def __init__(self, holder: ModelHolder) -> None:
        self.holder = holder

    def build(self) -> None:
        with gr.Row(equal_height=True):
            self.info = gr.Markdown(self.model_text(), elem_id="model-info")
            self.spec = gr.Textbox(
                label="Load another model",
                placeholder="Hub id, local folder or .gguf path (empty: embedded SmolLM2)",
                scale=2,
            )
            self.load = gr.Button("Load model", scale=0)

    def model_text(self) -> str:
        lm = self.holder.lm
        dtype = str(lm.dtype).removeprefix("torch.")
        if lm.compiled is None:
            decoding = "eager decoding"
        elif lm.compiled.warming:
            decoding = "eager decoding while the compiled step warms up"
        else:
            decoding = "compiled decoding"
        return (
            f"**Model:** `{lm.model_id}` · {lm.num_layers} layers · hidden size "
            f"{lm.hidden_size} · {'chat' if lm.is_chat else 'base'} model · {dtype}, {decoding}"
        )

    def on_load_model(self, spec: str, session: StudioSession, progress=gr.Progress()):
        """Returns the model line and the plots' layer-slider update (the depth may change)."""
        progress(0, desc=f"Loading {spec or 'the embedded model'}…")
        previous = self.holder.lm.model_id
        try:
            lm = self.holder.load(spec or "")
        except AlignEZError as exc:
            return (
                self.model_text() + f"\n\n{status(f'{exc} Still using {previous}.', 'error')}",
                gr.update(),
            )
        stale = [n for n, p in session.axes.items() if p.hidden_size != lm.hidden_size]
        note = f" Axes fitted on another model: {', '.join(stale)} (re-fit them)." if stale else ""
        loaded = status(f"Loaded in {lm.load_seconds:.1f}s.{note}", "ok")
        return self.model_text() + f"\n\n{loaded}", gr.update(value=0, maximum=lm.num_layers - 1)
