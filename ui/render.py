"""HTML for the answer columns (first point of divergence highlighted) and the status lines."""

from __future__ import annotations

import html


def divergence_index(base: str, edited: str) -> int:
    """Index of the first character where the two texts differ, backed off to a word start."""
    limit = min(len(base), len(edited))
    index = next((i for i in range(limit) if base[i] != edited[i]), limit)
    if index == limit and len(base) == len(edited):
        return index
    while index > 0 and not edited[index - 1].isspace():
        index -= 1
    return index


def answer_html(text: str, split: int | None, label: str, elem_class: str) -> str:
    """One answer panel; text after `split` is marked as where this answer diverged."""
    if not text:
        body = '<span class="empty">(no output yet)</span>'
    elif split is None or split >= len(text):
        body = html.escape(text)
    else:
        body = (
            html.escape(text[:split]) + f'<mark class="diverged">{html.escape(text[split:])}</mark>'
        )
    return (
        f'<div class="answer {elem_class}"><div class="answer-label">{html.escape(label)}</div>'
        f'<div class="answer-text">{body}</div></div>'
    )


def answer_columns(
    base: str, edited: str, edited_label: str, prompted: str = "", prompted_label: str = "Prompted"
) -> tuple[str, str, str]:
    """Base, edited and prompted panels; each other answer is marked where it leaves the base."""

    def split(other: str) -> int | None:
        return divergence_index(base, other) if base and other else None

    return (
        answer_html(base, split(edited) if edited else split(prompted), "Base model", "base"),
        answer_html(edited, split(edited), edited_label, "edited"),
        answer_html(prompted, split(prompted), prompted_label, "prompted"),
    )


def status(text: str, kind: str = "info") -> str:
    """A status line: info, ok, error or busy."""
    prefix = {"info": "", "ok": "**Done.** ", "error": "**Error:** ", "busy": "**Working…** "}[kind]
    return prefix + text


CSS = """
.answer { border-radius: 8px; padding: 10px 12px; min-height: 120px; white-space: pre-wrap; }
.answer.base { background: var(--block-background-fill); border: 1px solid #9ca3af; }
.answer.edited { background: var(--block-background-fill); border: 1px solid #6366f1; }
.answer.prompted { background: var(--block-background-fill); border: 1px dashed #d97706; }
.answer-label { font-size: 12px; font-weight: 600; opacity: .7; margin-bottom: 6px; }
.answer-text .empty { opacity: .5; }
mark.diverged { background: rgba(250, 204, 21, .35); color: inherit; padding: 0 1px; }
/* a calibrated slider: ±1 is the measured clean edge; the outer quarters (past ±1) are shaded */
.calibrated input[type=range]::-webkit-slider-runnable-track {
  background: linear-gradient(to right, rgba(220, 38, 38, .45) 0 25%, #d1d5db 25% 75%,
                              rgba(220, 38, 38, .45) 75% 100%) !important;
}
.calibrated input[type=range]::-moz-range-track {
  background: linear-gradient(to right, rgba(220, 38, 38, .45) 0 25%, #d1d5db 25% 75%,
                              rgba(220, 38, 38, .45) 75% 100%) !important;
}
/* the two-axes pad (pad_panel.py): fluent cells green, the rest red, the sliders' cell ringed */
.pad-cell { min-width: 0 !important; font-variant-numeric: tabular-nums; }
.pad-clean { background: rgba(22, 163, 74, .25) !important; }
.pad-loops { background: rgba(220, 38, 38, .25) !important; }
.pad-current { outline: 2px solid #6366f1 !important; font-weight: 700 !important; }
"""
