"""The two-axes pad (ui/pad_panel.py) on a tiny model: the region is measured once per pair of
packs, a cell sets both sliders, and bad picks get a message."""

import pytest

from ui.pad_panel import SIZE, cell_values, pad_cells
from ui.session import StudioSession
from ui.shared import ModelHolder
from ui.studio import Studio


@pytest.fixture(scope="module")
def studio(tiny_llama):
    studio = Studio(ModelHolder(tiny_llama))
    studio.build()
    return studio


@pytest.fixture(scope="module")
def third_pack(tiny_llama):
    from alignez_core.axes.axis import preset
    from alignez_core.fitting.fit import FitConfig, fit_axis

    return fit_axis(tiny_llama, preset("formal"), ["a?", "b?", "c?"], FitConfig(n_queries=3))


@pytest.fixture
def session(tiny_pack, second_pack):
    session = StudioSession()
    session.add(tiny_pack)
    session.add(second_pack)
    return session


def quiet(*args, **kwargs) -> None:
    """Stands in for gr.Progress outside a request."""


def test_cells_run_row_by_row_from_the_top_left():
    assert cell_values(0) == (-2.0, 2.0)  # top left: first −2, second +2
    assert cell_values(SIZE - 1) == (2.0, 2.0)
    assert cell_values(SIZE * SIZE - 1) == (2.0, -2.0)
    labels = [label for label, _ in pad_cells(None, 0.0, 0.0)]
    assert labels[0] == "-2 · +2" and all("✓" not in x and "●" not in x for x in labels)


def test_the_pad_shows_only_with_two_axes(studio, tiny_pack, session):
    one = StudioSession()
    one.add(tiny_pack)
    assert studio.axes_view(one)[studio.pad.group]["visible"] is False
    view = studio.axes_view(session)
    assert view[studio.pad.group]["visible"] is True
    assert view[studio.pad.first]["value"] == "cheerful"
    assert view[studio.pad.second]["value"] == "concise"


def test_mapping_shades_cells_and_marks_the_sliders_then_reuses_the_measure(studio, session):
    pad = studio.pad
    out = pad.on_map("cheerful", "concise", session, 1.0, -1.0, None, None, progress=quiet)
    assert out[0] is session and "slider pairs stay fluent" in out[1]
    cells = out[2:]
    assert len(cells) == SIZE * SIZE
    assert all(("pad-clean" in c["elem_classes"]) != ("pad-loops" in c["elem_classes"])
               for c in cells)  # fmt: skip
    marked = [i for i, c in enumerate(cells) if "pad-current" in c["elem_classes"]]
    assert [cell_values(i) for i in marked] == [(1.0, -1.0)]  # where the sliders are
    (region,) = session.regions.values()
    again = pad.on_map("cheerful", "concise", session, 0.0, 0.0, None, None, progress=quiet)
    assert session.regions == {(session.axes["cheerful"], session.axes["concise"]): region}
    assert "● " in again[2 + 2 * SIZE + 2]["value"]  # the centre, read from the same measure


def test_a_click_sets_both_sliders_and_keeps_the_others(studio, session, third_pack):
    session.add(third_pack)
    pad = studio.pad
    index = 3 * SIZE + 3  # first +1, second −1
    out = pad.cell_handler(index)("cheerful", "concise", session, 0.5, 0.0, 0.7, None)
    _, note, *rest = out
    sliders, cells = rest[: len(pad.sliders)], rest[len(pad.sliders) :]
    assert [s.get("value") for s in sliders[:3]] == [1.0, -1.0, 0.7]
    assert session.strengths == {"cheerful": 1.0, "concise": -1.0, third_pack.name: 0.7}
    assert "cheerful +1, concise -1" in note and len(cells) == SIZE * SIZE


def test_bad_picks_get_a_message_and_change_nothing(studio, session):
    pad = studio.pad
    out = pad.on_map("cheerful", "cheerful", session, 0.0, 0.0, None, None, progress=quiet)
    assert "two different axes" in out[1] and not session.regions
    out = pad.cell_handler(0)("cheerful", None, session, 0.3, 0.4, None, None)
    assert "two different axes" in out[1]
    assert session.strengths == {"cheerful": 0.0, "concise": 0.0}
