"""The studio page (placeholder until the studio lands): model info and one base-vs-edited run."""

from __future__ import annotations

import os

import gradio as gr

from alignez_core import load_model


def build_app() -> gr.Blocks:
    lm = load_model()
    with gr.Blocks(title="AlignEZ Studio") as demo:
        gr.Markdown(
            f"# AlignEZ Studio\nModel **{lm.model_id}**: {lm.num_layers} layers, "
            f"hidden size {lm.hidden_size}."
        )
    return demo


def launch() -> None:
    demo = build_app()
    demo.queue(default_concurrency_limit=2).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
    )
