"""The 'Manage axes' panel: rename, remove, re-fit, packs in and out, sessions in and out, and
the focused axis's pairs and per-layer stats."""

from __future__ import annotations

import tempfile
from dataclasses import astuple, fields
from pathlib import Path

import gradio as gr

from alignez_core import AlignEZError
from alignez_core.axes.pack import AxisPack
from alignez_core.axes.prefit import prefitted_pack
from alignez_core.engine.memory import release_freed_memory
from alignez_core.interop import load_axis_file
from ui.session import StudioSession, StudioSettings

from .axes_panel import AxesView
from .render import status
from .shared import ModelHolder
from .sliders import apply_sliders


class ManagePanel:
    def __init__(self, holder: ModelHolder) -> None:
        self.holder = holder
        self.view: AxesView = lambda session, **_: {}  # the studio's full view, set at wiring
        self.outputs: list = []  # the studio's axes outputs, in order, set at wiring

    def build(self) -> None:
        with gr.Accordion("Manage axes", open=False):
            self.axis = gr.Dropdown([], label="Axis", elem_id="selected-axis")
            with gr.Row():
                self.new_name = gr.Textbox(label="Rename to", scale=2)
                self.rename_button = gr.Button("Rename", scale=0)
            with gr.Row():
                self.refit_button = gr.Button("Re-fit")
                self.remove_button = gr.Button("Remove", variant="stop")
                self.download_button = gr.Button("Download pack")
            self.pack_file = gr.File(label="Axis pack (.safetensors)", visible=False)
            self.upload_pack = gr.UploadButton(
                "Upload axis pack, control vector (.gguf) or steering vector",
                file_types=[".safetensors", ".gguf"],
                elem_id="upload-pack",
            )
            with gr.Row():
                self.export_button = gr.Button("Export session")
                self.import_session = gr.UploadButton(
                    "Import session", file_types=[".zip"], elem_id="import-session"
                )
            self.session_file = gr.File(label="Session file", visible=False)
            self.status = gr.Markdown(elem_id="axes-status")
        with gr.Accordion("Generated pairs and per-layer stats", open=False):
            self.pairs_table = gr.Dataframe(
                headers=["query", "positive answer", "negative answer"], wrap=True
            )
            self.stats_table = gr.Dataframe(
                headers=["layer", "pairs kept", "rank k", "explained"], wrap=True
            )

    def axes_outputs(self) -> list:
        return [self.axis, self.pairs_table, self.stats_table]

    def axes_view(self, session: StudioSession, focus: AxisPack | None) -> dict:
        pairs = [[p.query, p.positive, p.negative] for p in focus.pairs] if focus else []
        stats = (
            [[i, layer.pairs_kept, layer.rank, round(layer.explained, 3)]
             for i, layer in enumerate(focus.layers)]
            if focus else []
        )  # fmt: skip
        return {
            self.axis: gr.update(choices=session.names(), value=focus.name if focus else None),
            self.pairs_table: pairs,
            self.stats_table: stats,
        }

    def on_remove(self, name, session: StudioSession):
        if name not in session.axes:
            return self.view(session, axes_status=status("Pick an axis to remove.", "error"))
        session.remove(name)
        release_freed_memory()
        return self.view(session, axes_status=status(f"Removed {name}.", "ok"))

    def on_rename(self, name, new_name, session: StudioSession):
        try:
            session.rename(name or "", new_name or "")
        except AlignEZError as exc:
            return self.view(session, axes_status=status(str(exc), "error"), focus=name)
        return self.view(
            session,
            axes_status=status(f"Renamed to {new_name.strip()}.", "ok"),
            focus=" ".join(new_name.split()),
        )

    def on_upload_pack(self, file, session: StudioSession):
        try:
            path = file_path(file)
            # an axis pack, a llama.cpp / repeng control vector or a steering-vectors file
            pack = load_axis_file(path, self.holder.lm)
            session.add(pack)
        except AlignEZError as exc:
            return self.view(session, axes_status=status(str(exc), "error"))
        return self.view(
            session, axes_status=status(f"Loaded axis {pack.name}.", "ok"), focus=pack.name
        )

    def on_prefitted(self, preset_name, session: StudioSession):
        """Add the preset's shipped pack: it steers at once, with no fit (embedded model only)."""
        try:
            pack = prefitted_pack(preset_name or "", self.holder.lm)
            session.add(pack)
        except AlignEZError as exc:
            return self.view(session, fit_status=status(str(exc), "error"))
        done = status(
            f"Loaded the pre-fitted {pack.name} pack ({len(pack.pairs)} pairs, fitted with the "
            "defaults): its slider steers now.",
            "ok",
        )
        return self.view(session, fit_status=done, focus=pack.name)

    def on_download_pack(self, name, session: StudioSession):
        pack = session.axes.get(name) if name else None
        if pack is None:
            return gr.update(visible=False), status("Pick an axis to download.", "error")
        folder = Path(tempfile.mkdtemp(prefix="alignez-pack-"))
        path = pack.save(folder / f"{safe_filename(pack.name)}.safetensors")
        return gr.update(value=str(path), visible=True), status(f"Pack for {name} ready.", "ok")

    def on_export(self, *values):
        """(settings widgets in `StudioSettings` order, session, slider values)."""
        count = len(fields(StudioSettings))
        settings, session, strengths = values[:count], values[count], values[count + 1 :]
        try:
            apply_sliders(session, strengths)
        except AlignEZError as exc:
            return gr.update(visible=False), status(str(exc), "error")
        session.settings = StudioSettings(*settings)
        folder = Path(tempfile.mkdtemp(prefix="alignez-session-"))
        path = session.save(folder / "alignez-session.zip")
        return gr.update(value=str(path), visible=True), status("Session exported.", "ok")

    def on_import(self, file, session: StudioSession):
        """Replace the session from a file; the settings widgets follow `StudioSettings` order."""
        try:
            loaded = StudioSession.load(file_path(file), self.holder.lm)
        except (AlignEZError, OSError, TypeError, ValueError) as exc:
            view = self.view(session, axes_status=status(str(exc), "error"))
            settings = [gr.update()] * len(fields(StudioSettings))
            return [view.get(c, gr.update()) for c in self.outputs] + settings
        done = status(f"Imported a session with {len(loaded.axes)} axes.", "ok")
        view = self.view(loaded, axes_status=done)
        return [view.get(c, gr.update()) for c in self.outputs] + list(astuple(loaded.settings))


def file_path(file) -> str:
    return file if isinstance(file, str) else getattr(file, "name", str(file))


def safe_filename(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)[:60] or "axis"
