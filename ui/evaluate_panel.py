"""The Evaluate panel: does the slider steer, by independent judges, beside prompting?"""

from __future__ import annotations

import gradio as gr

from alignez_core import AlignEZError
from alignez_core.axes.pack import AxisPack
from alignez_core.axes.queries import parse_queries
from alignez_core.evaluation.evaluate import EvalConfig, evaluate
from alignez_core.evaluation.report import eval_figure, markdown_table
from alignez_core.measure.judges import JUDGE_NAMES
from alignez_core.steering import SLIDER_RULES
from alignez_core.steering.options import parse_floats
from ui.session import StudioSession

from .render import status
from .shared import ModelHolder

EVAL_MAX_PROMPTS = 24
EVAL_PROMPTS = [
    "What should I do this weekend?",
    "Describe your morning commute.",
    "How do I make a good cup of coffee?",
    "Tell me about autumn.",
]


class EvaluatePanel:
    def __init__(self, holder: ModelHolder) -> None:
        self.holder = holder

    def build(self) -> None:
        with gr.Accordion("Evaluate: does the slider steer? (independent judges)", open=False):
            with gr.Row():
                self.axis = gr.Dropdown([], label="Axis", elem_id="eval-axis")
                self.judges = gr.CheckboxGroup(
                    list(JUDGE_NAMES), value=["tone", "pole"], label="Judges"
                )
                self.rules = gr.CheckboxGroup(
                    list(SLIDER_RULES), value=["subspace", "mean_diff"], label="Rules"
                )
            with gr.Row():
                self.strengths = gr.Textbox("-2,-1,0,1,2", label="Strengths")
                self.tokens = gr.Slider(8, 128, value=32, step=8, label="Max new tokens")
                self.prompted = gr.Checkbox(
                    value=True, label="Prompting baseline",
                    info="the pole asked for in words at ±1, no edit",
                )  # fmt: skip
            self.prompts = gr.Textbox(
                "\n".join(EVAL_PROMPTS), lines=4, label="Prompts, one per line"
            )
            self.button = gr.Button("Evaluate", elem_id="evaluate")
            self.status = gr.Markdown(elem_id="eval-status")
            self.plot = gr.Plot(elem_id="eval-plot")
            self.table = gr.Markdown()

    def inputs(self) -> list:
        return [self.axis, self.judges, self.rules, self.strengths, self.tokens, self.prompts,
                self.prompted]  # fmt: skip

    def axes_outputs(self) -> list:
        return [self.axis]

    def axes_view(self, session: StudioSession, focus: AxisPack | None) -> dict:
        return {self.axis: gr.update(choices=session.names(), value=focus.name if focus else None)}

    def on_evaluate(
        self, name, judges, rules, strengths, tokens, prompts_text, prompted,
        session: StudioSession, progress=gr.Progress(),
    ):  # fmt: skip
        pack = session.axes.get(name) if name else None
        try:
            if pack is None:
                raise AlignEZError("Pick a fitted axis to evaluate.")
            prompts = parse_queries(prompts_text or "", "prompts").queries[:EVAL_MAX_PROMPTS]
            config = EvalConfig(
                strengths=parse_floats(strengths or "", "Strengths"),
                rules=tuple(rules or ()),
                judges=tuple(judges or ()),
                max_new_tokens=int(tokens),
                prompted=bool(prompted),
            )
            if not config.judges:
                raise AlignEZError("Pick at least one judge.")
            report = evaluate(
                self.holder.lm,
                pack,
                prompts,
                config,
                lambda stage, done, total: progress((done, total), desc=stage),
            )
        except AlignEZError as exc:
            return status(str(exc), "error"), gr.update(), gr.update()
        done = status(f"Evaluated {pack.name} on {len(prompts)} prompts.", "ok")
        return done, eval_figure(report), markdown_table(report)
