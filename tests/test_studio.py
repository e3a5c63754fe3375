"""Studio handlers on a tiny model: bad input gets a visible message and nothing is lost."""

import copy
import threading

import gradio as gr
import pytest
import torch

from alignez_core.axes.pack import AxisPack
from alignez_core.engine.warmup import WARMUP_THREAD
from tests.tiny import make_model
from ui.axes_panel import CUSTOM, AxesPanel
from ui.compare_panel import MAX_NEW_TOKENS, MAX_PROMPT_CHARS
from ui.session import StudioSession
from ui.shared import ModelHolder
from ui.studio import Studio


class FakeRequest:
    session_hash = "test-session"


@pytest.fixture(scope="module")
def studio(tiny_llama):
    studio = Studio(ModelHolder(tiny_llama))
    studio.build()
    return studio


def session_with(pack) -> StudioSession:
    session = StudioSession()
    session.add(pack)
    session.strengths[pack.name] = 1.0
    return session


def generate(studio, session, prompt, sliders=None, **overrides):
    """The generate event as the page sends it; `sliders` default to the session's values."""
    args = dict(rule="subspace", layer_mode="band", pinned="", top_n=5, positions="last",
                max_tokens=8, temperature=0.0, seed=0, budget=True, sweep=False, sweep_axis=None,
                show_prompted=True, plot_axis=None, plot_layer=0, trajectory=False)  # fmt: skip
    args.update(overrides)
    if sliders is None:
        sliders = [session.strengths.get(name, 0.0) for name in session.names()]
    return list(studio.compare.on_generate(prompt, *args.values(), session, *sliders))


@pytest.mark.parametrize(
    ("prompt", "message"),
    [("", "Type a prompt first"), ("  \n", "Type a prompt first"),
     ("x" * 100_000, f"the cap is {MAX_PROMPT_CHARS}")],
)  # fmt: skip
def test_empty_and_huge_prompts_get_a_message(studio, tiny_pack, prompt, message):
    session = session_with(tiny_pack)
    (update,) = generate(studio, session, prompt)
    assert message in update[studio.compare.status]
    assert session.names() == ["cheerful"]  # nothing lost


@pytest.mark.parametrize("tokens", [0, MAX_NEW_TOKENS + 1, 100_000])
def test_new_tokens_past_the_cap_are_refused(studio, tiny_pack, tokens):
    session = session_with(tiny_pack)
    (update,) = generate(studio, session, "hi", max_tokens=tokens)
    assert f"New tokens must be 1–{MAX_NEW_TOKENS}" in update[studio.compare.status]


def test_generate_with_no_axis_gives_base_only_with_a_note(studio):
    *_, last = generate(studio, StudioSession(), "hello")
    assert "base only" in last[studio.compare.status]


def test_generate_streams_base_edited_and_prompted_and_plots(studio, tiny_pack):
    session = session_with(tiny_pack)
    session.strengths["cheerful"] = -2.0
    updates = generate(studio, session, "hello", plot_axis="cheerful", plot_layer=1)
    streamed = [u for u in updates if studio.compare.base_out in u]
    assert len(streamed) == 8 + 1  # one update per token, then the final one repeats the answers
    assert streamed[-1][studio.compare.base_out] == streamed[-2][studio.compare.base_out]
    assert "Prompted: gloomy" in streamed[-1][studio.compare.prompted_out]["value"]
    assert "past the clean edge" in streamed[-1][studio.compare.edited_out]
    assert studio.plots.projection in updates[-1]
    assert {"base", "edited", "prompted"} <= set(session.last_traces)
    hidden = generate(studio, session, "hello", show_prompted=False)
    assert hidden[0][studio.compare.prompted_out]["visible"] is False


def test_generate_uses_the_slider_values_sent_with_the_click(studio, tiny_pack):
    """Regression: a value typed into a slider and Generate clicked at once must not be stale."""
    session = session_with(tiny_pack)
    session.strengths["cheerful"] = -1.0  # what an earlier slider event stored
    updates = generate(studio, session, "hello", sliders=[2.0])
    assert "cheerful +2.0" in updates[0][studio.compare.edited_out]
    assert session.strengths["cheerful"] == 2.0
    for bad in (float("nan"), float("inf"), 1e9):
        (refused,) = generate(studio, session, "hello", sliders=[bad])
        assert (
            f"slider for cheerful is {bad}: use a number from −2 to 2"
            in refused[studio.compare.status]
        )
    assert session.strengths["cheerful"] == 2.0  # nothing lost


def test_the_axis_name_follows_typed_poles_until_the_user_types_a_name():
    preset, name, prefit = AxesPanel.on_pole_typed("talks like a pirate", "talks plainly", False)
    assert preset == CUSTOM and name == "talks like a pirate-talks plainly"
    assert prefit["visible"] is False  # a custom axis has no pre-fitted pack
    preset, name, _ = AxesPanel.on_pole_typed("talks like a pirate", "talks plainly", True)
    assert preset == CUSTOM and name == {"__type__": "update"}


def test_pre_fitted_packs_are_offered_per_preset_and_refused_for_another_model(studio, tiny_pack):
    from alignez_core.engine.catalog import SMOLLM2
    from ui.axes_panel import has_prefit

    assert has_prefit("simple", SMOLLM2.model_id) and not has_prefit(CUSTOM, SMOLLM2.model_id)
    # the tiny model is no named model: it ships no packs, so none is offered
    assert studio.axes.on_preset("simple")[-1]["visible"] is False
    session = session_with(tiny_pack)
    view = studio.manage.on_prefitted("simple", session)
    assert "fitted on SmolLM2-135M-Instruct, and the loaded model" in view[studio.axes.fit_status]
    assert set(view) <= set(studio.axes_outputs())
    view = studio.manage.on_prefitted(CUSTOM, session)
    assert "No pre-fitted pack" in view[studio.axes.fit_status]
    assert session.names() == ["cheerful"] and session.strengths["cheerful"] == 1.0


def test_the_sweep_offers_the_prompting_baseline(studio, tiny_pack):
    session = session_with(tiny_pack)
    *_, table, _done = generate(studio, session, "hi", sweep=True, sweep_axis="cheerful")
    labels = [row[0] for row in table[studio.compare.sweep_table]["value"]]
    assert labels == ["-2.0", "-1.0", "+0.0", "+1.0", "+2.0", "prompted: gloomy",
                      "prompted: cheerful"]  # fmt: skip


def test_pinned_layers_must_parse(studio, tiny_pack):
    (update,) = generate(studio, session_with(tiny_pack), "hi", layer_mode="pinned", pinned="x,y")
    assert "expects 'auto' or a list like 8,9,10" in update[studio.compare.status]


def test_uploading_bad_files_keeps_the_other_axes(studio, tiny_pack, tmp_path):
    session = session_with(tiny_pack)
    text = tmp_path / "notes.safetensors"
    text.write_text("not a pack")
    view = studio.manage.on_upload_pack(str(text), session)
    assert "not a valid safetensors file" in view[studio.manage.status]
    other = make_model(hidden=96)
    from alignez_core.axes.axis import preset
    from alignez_core.fitting.fit import FitConfig, fit_axis

    foreign = fit_axis(other, preset("humor"), ["a?", "b?", "c?"], FitConfig(n_queries=3,
                       pooling="last"))  # fmt: skip
    path = foreign.save(tmp_path / "foreign.safetensors")
    view = studio.manage.on_upload_pack(str(path), session)
    assert "hidden size 96" in view[studio.manage.status]
    assert view[studio.session].names() == ["cheerful"]


def test_corrupt_session_file_is_refused_and_session_kept(studio, tiny_pack, tmp_path):
    session = session_with(tiny_pack)
    bad = tmp_path / "session.zip"
    bad.write_bytes(b"PK\x03\x04 this is not really a zip")
    outputs = studio.manage.on_import(str(bad), session)
    status = outputs[studio.axes_outputs().index(studio.manage.status)]
    assert "not an AlignEZ session file" in status
    assert outputs[0].names() == ["cheerful"]


def test_session_export_import_round_trip(studio, tiny_pack, tmp_path):
    session = session_with(tiny_pack)
    file_update, _ = studio.manage.on_export("my prompt", "mean_diff", "pinned", "1,2", 3, "all",
                                             32,
                                             0.5, 7, False, session, -1.5)  # fmt: skip
    outputs = studio.manage.on_import(file_update["value"], StudioSession())
    loaded = outputs[0]
    assert loaded.names() == ["cheerful"] and loaded.strengths["cheerful"] == -1.5
    assert outputs[-10:] == ["my prompt", "mean_diff", "pinned", "1,2", 3, "all", 32, 0.5, 7, False]


def test_fit_with_an_empty_pole_and_two_fits_at_once(studio):
    session = StudioSession()
    updates = list(studio.axes.on_fit("cheerful", "", "  ", "gloomy", "", "", "", 2, 1, "persona",
                                      "mean", session, FakeRequest()))  # fmt: skip
    assert "positive must be a non-empty" in updates[-1][studio.axes.fit_status]
    running = studio.jobs.start(FakeRequest.session_hash)
    try:
        with pytest.warns(UserWarning, match="already running"):  # shown as a toast
            fit = studio.axes.on_fit("cheerful", "", "cheerful", "gloomy", "", "", "", 2, 1,
                                     "persona", "mean", session, FakeRequest())  # fmt: skip
            updates = list(fit)
        assert "already running" in updates[-1][studio.manage.status]
    finally:
        studio.jobs.finish(FakeRequest.session_hash)
    assert running is not None and session.names() == []


def test_a_fit_in_the_studio_adds_its_axis(studio):
    session = StudioSession()
    fit = studio.axes.on_fit("cheerful", "mood", "cheerful", "gloomy", "", "", "a?\nb?\nc?", 3, 1,
                             "answers", "mean", session, FakeRequest())  # fmt: skip
    updates = list(fit)
    assert "Fitted mood" in updates[-1][studio.axes.fit_status]
    assert updates[-1][studio.axes.sliders[0]]["visible"] is True
    assert session.names() == ["mood"] and session.axes["mood"].fit_config["readout"] == "answers"
    assert studio.axes.samples_default()["value"] == 1  # a chat model: one pair per sample


def test_a_trained_fit_in_the_studio_says_its_expected_time_and_stores_its_training(studio):
    session = StudioSession()
    fit = studio.axes.on_fit("cheerful", "mood", "cheerful", "gloomy", "", "", "a?\nb?\nc?", 3, 1,
                             "persona", "trained", session, FakeRequest())  # fmt: skip
    updates = list(fit)
    assert "training adds about" in updates[0][studio.axes.fit_status]
    assert "Fitted mood" in updates[-1][studio.axes.fit_status]
    pack = session.axes["mood"]
    assert pack.training is not None and pack.fit_config["method"] == "trained"
    refused = list(studio.axes.on_fit("cheerful", "m2", "cheerful", "gloomy", "", "", "a?", 1, 1,
                                      "answers", "trained", session, FakeRequest()))  # fmt: skip
    assert "trains the vector the mean_diff rule adds" in refused[-1][studio.axes.fit_status]
    assert session.names() == ["mood"]


def test_the_samples_slider_and_a_fit_follow_the_models_kind(tiny_llama):
    """On a base model the studio offers 4 samples chosen by the model's own contrast, and a fit
    takes the slider's count with the base model's way of writing pairs."""
    from alignez_core.engine.model import LoadedModel

    base = Studio(ModelHolder(LoadedModel.wrap(tiny_llama.model, tiny_llama.tokenizer, "tiny",
                                               kind="base")))  # fmt: skip
    base.build()
    assert base.axes.samples.value == 4 and base.axes.readout.value == "answers"
    assert "contrast" in base.axes.samples_default()["info"]
    session = StudioSession()
    fit = base.axes.on_fit("cheerful", "mood", "cheerful", "gloomy", "", "", "a?\nb?\nc?", 3, 2,
                           "answers", "mean", session, FakeRequest())  # fmt: skip
    assert "Fitted mood" in list(fit)[-1][base.axes.fit_status]
    pairs = session.axes["mood"].fit_config["pairs"]
    assert (pairs["ask"], pairs["select"], pairs["samples_per_pole"]) == ("persona", "contrast", 2)


def test_loading_a_model_of_another_kind_resets_the_kinds_defaults(tiny_llama):
    """The samples slider and the readout radio follow the loaded model's kind; a load that
    fails leaves them as they are."""
    from alignez_core.engine.model import LoadedModel
    from alignez_core.errors import ModelLoadError

    def load(spec):
        if spec == "missing":
            raise ModelLoadError("No model named missing.")
        return LoadedModel.wrap(tiny_llama.model, tiny_llama.tokenizer, spec, kind="base")

    studio = Studio(ModelHolder(tiny_llama))
    studio.holder._loader = load
    studio.build()
    assert (studio.axes.samples.value, studio.axes.readout.value) == (1, "persona")
    line, _, samples, readout = studio.model_bar.on_load_model("missing", StudioSession())
    assert "Still using" in line and samples == readout == gr.update()
    line, _, samples, readout = studio.model_bar.on_load_model("base-tiny", StudioSession())
    assert "pretrained (base)" in line
    assert (samples["value"], readout["value"]) == (4, "answers")


def test_cancel_stops_a_running_fit_and_keeps_the_other_axes(studio, tiny_pack):
    session = session_with(tiny_pack)
    assert "No fit is running" in studio.axes.on_cancel(FakeRequest())
    fit = studio.axes.on_fit("cheerful", "halfway", "cheerful", "gloomy", "", "",
                             "\n".join(f"q{i}?" for i in range(12)), 12, 1, "answers", "mean",
                             session, FakeRequest())  # fmt: skip
    first = next(fit)  # the worker has started
    assert "starting" in first[studio.axes.fit_status]
    assert "Cancelling" in studio.axes.on_cancel(FakeRequest())
    last = list(fit)[-1]
    assert "Fit cancelled" in last[studio.axes.fit_status]
    assert session.names() == ["cheerful"]  # no half-made axis, the other one kept


def test_remove_rename_refit_and_download_act_on_the_named_axis(studio, tiny_pack, tmp_path):
    session = session_with(copy.copy(tiny_pack))  # renaming rewrites the pack's axis
    manage = studio.manage
    assert "Pick an axis to remove" in manage.on_remove("nope", session)[studio.manage.status]
    assert (
        "Renamed to happy" in manage.on_rename("cheerful", " happy ", session)[studio.manage.status]
    )
    assert session.names() == ["happy"] and session.strengths == {"happy": 1.0}  # value kept
    refused = manage.on_rename("happy", "", session)[studio.manage.status]
    assert refused.startswith("**Error:**") and session.names() == ["happy"]
    file_update, message = manage.on_download_pack("happy", session)
    assert "ready" in message and file_update["visible"] is True
    downloaded = AxisPack.load(file_update["value"], studio.holder.lm)
    assert downloaded.name == "happy" and downloaded.ranks() == tiny_pack.ranks()
    assert manage.on_download_pack("gone", session)[0]["visible"] is False
    refit = list(studio.axes.on_refit("happy", session, FakeRequest()))
    assert "Fitted happy" in refit[-1][studio.axes.fit_status]
    assert session.axes["happy"] is not tiny_pack  # replaced by the new fit
    assert (
        "Pick an axis to re-fit"
        in next(studio.axes.on_refit(None, session, FakeRequest()))[studio.axes.fit_status]
    )
    assert "Removed happy" in manage.on_remove("happy", session)[studio.manage.status]
    assert session.names() == []


def test_evaluate_tab_plots_a_report_and_refuses_bad_input(studio, tiny_pack):
    session = session_with(tiny_pack)
    status, figure, table = studio.evaluate.on_evaluate(
        "cheerful",
        ["words"],
        ["mean_diff"],
        "0,4",
        8,
        "hello\nwhy?",
        True,
        session,
        progress=lambda *a, **k: None,
    )
    assert "Evaluated cheerful on 2 prompts" in status
    assert len(figure.data) == 6  # mean_diff and the prompting baseline, per judge panel
    assert "| mean_diff | +4 |" in table and "| prompted |" in table
    status, *_ = studio.evaluate.on_evaluate("cheerful", ["words"], ["mean_diff"], "1,x", 8, "hi",
                                             False,
                                             session, progress=lambda *a, **k: None)  # fmt: skip
    assert "Strengths expects numbers" in status
    status, *_ = studio.evaluate.on_evaluate(None, ["words"], ["mean_diff"], "1", 8, "hi", False,
                                             session, progress=lambda *a, **k: None)  # fmt: skip
    assert "Pick a fitted axis" in status


def test_handlers_only_update_components_wired_as_their_outputs(studio, tiny_pack):
    """Gradio rejects a returned component that is not an output of the event."""
    session = session_with(tiny_pack)
    assert set(studio.axes_view(session)) <= set(studio.axes_outputs())
    for update in generate(studio, session, "hi", plot_axis="cheerful", plot_layer=1):
        assert set(update) <= set(studio.compare.outputs())
    for update in generate(studio, session, "hi", sweep=True, sweep_axis="cheerful"):
        assert set(update) <= set(studio.compare.outputs())


def test_a_session_file_with_path_traversal_names_is_refused(studio, tiny_pack, tmp_path):
    import json
    import zipfile

    crafted = tmp_path / "evil.zip"
    axes = [{"name": "x", "file": "../../x"}]
    manifest = {"format": "alignez-session", "format_version": 1, "axes": axes}
    with zipfile.ZipFile(crafted, "w") as archive:
        archive.writestr("session.json", json.dumps(manifest))
        archive.writestr(
            "../../x", tiny_pack.to_bytes() if hasattr(tiny_pack, "to_bytes") else b"x"
        )
    session = session_with(tiny_pack)
    outputs = studio.manage.on_import(str(crafted), session)
    status = outputs[studio.axes_outputs().index(studio.manage.status)]
    assert "member name '../../x' points outside the file" in status
    assert outputs[0].names() == ["cheerful"]
    assert not (tmp_path.parent.parent / "x").exists()


def test_a_control_vector_gguf_uploads_as_an_axis(studio, tiny_pack, tmp_path):
    from alignez_core.interop import export_control_vector

    path = export_control_vector(tiny_pack, tmp_path / "mood.gguf", -1.0)
    view = studio.manage.on_upload_pack(str(path), StudioSession())
    assert "Loaded axis cheerful" in view[studio.manage.status]
    assert view[studio.session].axes["cheerful"].fit_config["imported_from"].endswith("mood.gguf")


def test_a_steering_vectors_file_uploads_as_an_axis_and_a_foreign_one_loses_nothing(
    studio, tiny_pack, tmp_path
):
    from safetensors.torch import save_file

    from alignez_core.interop import save_steering_vector

    session = session_with(tiny_pack)
    path = save_steering_vector({1: torch.ones(64)}, tmp_path / "calm.safetensors")
    view = studio.manage.on_upload_pack(str(path), session)
    assert "Loaded axis calm" in view[studio.manage.status]
    save_file({"lm_head.weight": torch.zeros(2, 64)}, str(tmp_path / "weights.safetensors"))
    view = studio.manage.on_upload_pack(str(tmp_path / "weights.safetensors"), session)
    assert "not named by a layer index" in view[studio.manage.status]
    assert view[studio.session].names() == ["cheerful", "calm"]


def test_serving_model_refuses_an_unknown_dtype_by_name(monkeypatch):
    from alignez_core.errors import ModelLoadError
    from ui.shared import serving_model

    monkeypatch.setenv("ALIGNEZ_DTYPE", "float16")
    with pytest.raises(ModelLoadError, match="ALIGNEZ_DTYPE must be one of float32, bfloat16"):
        serving_model(None)


@pytest.mark.parametrize(("setting", "compiled"), [(None, True), ("1", True), ("0", False)])
def test_the_studio_decodes_compiled_unless_told_not_to(monkeypatch, setting, compiled):
    import ui.shared

    monkeypatch.setattr(ui.shared, "load_model", lambda spec, **kw: make_model("llama", layers=2))
    if setting is None:
        monkeypatch.delenv("ALIGNEZ_COMPILE", raising=False)
    else:
        monkeypatch.setenv("ALIGNEZ_COMPILE", setting)
    lm = ui.shared.serving_model(None)
    assert (lm.compiled is not None) is compiled
    for thread in threading.enumerate():  # a compile still running at exit aborts the process
        if thread.name == WARMUP_THREAD:
            thread.join()
    assert (lm.compiled is not None) is compiled  # and the warm-up did not fail
