"""Studio handlers on a tiny model: bad input gets a visible message and nothing is lost."""

import pytest

from alignez_core.session import StudioSession
from tests.tiny import make_model
from ui.shared import ModelHolder
from ui.studio import MAX_PROMPT_CHARS, Studio


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


def generate(studio, session, prompt, **overrides):
    args = dict(rule="steer", layer_mode="band", pinned="", top_n=5, positions="last",
                max_tokens=8, temperature=0.0, seed=0, sweep=False, sweep_axis=None,
                plot_axis=None, plot_layer=0)  # fmt: skip
    args.update(overrides)
    return list(studio.on_generate(prompt, *args.values(), session))


@pytest.mark.parametrize(
    ("prompt", "message"),
    [("", "Type a prompt first"), ("  \n", "Type a prompt first"),
     ("x" * 100_000, f"the cap is {MAX_PROMPT_CHARS}")],
)  # fmt: skip
def test_empty_and_huge_prompts_get_a_message(studio, tiny_pack, prompt, message):
    session = session_with(tiny_pack)
    (update,) = generate(studio, session, prompt)
    assert message in update[studio.gen_status]
    assert session.names() == ["cheerful"]  # nothing lost


def test_generate_with_no_axis_gives_base_only_with_a_note(studio):
    *_, last = generate(studio, StudioSession(), "hello")
    assert "base only" in last[studio.gen_status]


def test_generate_streams_base_and_edited_and_plots(studio, tiny_pack):
    session = session_with(tiny_pack)
    session.strengths["cheerful"] = -2.0
    updates = generate(studio, session, "hello", plot_axis="cheerful", plot_layer=1)
    streamed = [u for u in updates if studio.base_out in u]
    assert len(streamed) == 8  # one update per token
    assert studio.projection_plot in updates[-1] and "edited" in session.last_traces


def test_pinned_layers_must_parse(studio, tiny_pack):
    (update,) = generate(studio, session_with(tiny_pack), "hi", layer_mode="pinned", pinned="x,y")
    assert "expects 'auto' or a list like 8,9,10" in update[studio.gen_status]


def test_uploading_bad_files_keeps_the_other_axes(studio, tiny_pack, tmp_path):
    session = session_with(tiny_pack)
    text = tmp_path / "notes.safetensors"
    text.write_text("not a pack")
    view = studio.on_upload_pack(str(text), session)
    assert "not a valid safetensors file" in view[studio.axes_status]
    other = make_model(hidden=96)
    from alignez_core.axis import preset
    from alignez_core.fit import FitConfig, fit_axis

    foreign = fit_axis(other, preset("humor"), ["a?", "b?", "c?"], FitConfig(n_queries=3,
                       pooling="last"))  # fmt: skip
    path = foreign.save(tmp_path / "foreign.safetensors")
    view = studio.on_upload_pack(str(path), session)
    assert "hidden size 96" in view[studio.axes_status]
    assert view[studio.session].names() == ["cheerful"]


def test_corrupt_session_file_is_refused_and_session_kept(studio, tiny_pack, tmp_path):
    session = session_with(tiny_pack)
    bad = tmp_path / "session.zip"
    bad.write_bytes(b"PK\x03\x04 this is not really a zip")
    outputs = studio.on_import(str(bad), session)
    status = outputs[studio._axes_outputs().index(studio.axes_status)]
    assert "not an AlignEZ session file" in status
    assert outputs[0].names() == ["cheerful"]


def test_session_export_import_round_trip(studio, tiny_pack, tmp_path):
    session = session_with(tiny_pack)
    file_update, _ = studio.on_export("my prompt", "caa", "pinned", "1,2", 3, "all", 32, 0.5, 7,
                                      session)  # fmt: skip
    outputs = studio.on_import(file_update["value"], StudioSession())
    loaded = outputs[0]
    assert loaded.names() == ["cheerful"] and loaded.strengths["cheerful"] == 1.0
    assert outputs[-9:] == ["my prompt", "caa", "pinned", "1,2", 3, "all", 32, 0.5, 7]


def test_fit_with_an_empty_pole_and_two_fits_at_once(studio):
    session = StudioSession()
    updates = list(studio.on_fit("cheerful", "", "  ", "gloomy", "", "", "", 2, 1, session,
                                 FakeRequest()))  # fmt: skip
    assert "positive must be a non-empty" in updates[-1][studio.fit_status]
    running = studio.jobs.start(FakeRequest.session_hash)
    try:
        with pytest.warns(UserWarning, match="already running"):  # shown as a toast
            updates = list(studio.on_fit("cheerful", "", "cheerful", "gloomy", "", "", "", 2, 1,
                                         session, FakeRequest()))  # fmt: skip
        assert "already running" in updates[-1][studio.axes_status]
    finally:
        studio.jobs.finish(FakeRequest.session_hash)
    assert running is not None and session.names() == []


def test_fit_and_cancel_in_the_studio(studio):
    session = StudioSession()
    updates = list(studio.on_fit("cheerful", "mood", "cheerful", "gloomy", "", "", "a?\nb?\nc?",
                                 3, 1, session, FakeRequest()))  # fmt: skip
    assert "Fitted mood" in updates[-1][studio.fit_status]
    assert updates[-1][studio.sliders[0]]["visible"] is True
    assert session.names() == ["mood"]


def test_evaluate_tab_plots_a_report_and_refuses_bad_input(studio, tiny_pack):
    session = session_with(tiny_pack)
    status, figure, table = studio.on_evaluate(
        "cheerful",
        ["words"],
        ["caa"],
        "0,4",
        8,
        "hello\nwhy?",
        session,
        progress=lambda *a, **k: None,
    )
    assert "Evaluated cheerful on 2 prompts" in status
    assert len(figure.data) == 3 and "| caa | +4 |" in table
    status, *_ = studio.on_evaluate("cheerful", ["words"], ["caa"], "1,x", 8, "hi", session,
                                    progress=lambda *a, **k: None)  # fmt: skip
    assert "Strengths expects numbers" in status
    status, *_ = studio.on_evaluate(None, ["words"], ["caa"], "1", 8, "hi", session,
                                    progress=lambda *a, **k: None)  # fmt: skip
    assert "Pick a fitted axis" in status


def test_handlers_only_update_components_wired_as_their_outputs(studio, tiny_pack):
    """Gradio rejects a returned component that is not an output of the event."""
    session = session_with(tiny_pack)
    assert set(studio._axes_view(session)) <= set(studio._axes_outputs())
    for update in generate(studio, session, "hi", plot_axis="cheerful", plot_layer=1):
        assert set(update) <= set(studio._generate_outputs())
    for update in generate(studio, session, "hi", sweep=True, sweep_axis="cheerful"):
        assert set(update) <= set(studio._generate_outputs())
