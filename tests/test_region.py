"""The clean region of two axes (fitting/region.py): a slider grid judged by calibration's rule."""

import threading

import pytest

from alignez_core.errors import FitCancelled, FitError
from alignez_core.fitting.region import clean_region, region_queries
from alignez_core.steering import SteerSettings

STRONG = SteerSettings(scale=0.5)  # far past any clean edge on the tiny model


def test_a_strong_combination_is_not_clean_and_zero_is(tiny_llama, tiny_pack, second_pack):
    region = clean_region(tiny_llama, tiny_pack, second_pack, values=(0.0, 2.0), settings=STRONG,
                          max_new_tokens=12)  # fmt: skip
    assert region.axes == (tiny_pack.name, second_pack.name)
    assert [(c.first, c.second) for c in region.cells] == [(0, 0), (2, 0), (0, 2), (2, 2)]
    zero = region.cell(0.0, 0.0)
    assert zero.clean and zero.perplexity_ratio == pytest.approx(1.0)
    both = region.cell(2.0, 2.0)
    assert both.perplexity_ratio > 1.25 and not both.clean
    assert region.nearest(1.6, 2.4) == both
    assert region.queries == 3 and region.seconds > 0


def test_the_region_reads_the_axes_own_fit_queries(tiny_pack, second_pack):
    asked = region_queries(tiny_pack, second_pack)
    assert len(asked) == 3 and len(set(asked)) == 3
    fit = {p.query for pack in (tiny_pack, second_pack) for p in pack.pairs}
    assert set(asked) <= fit
    assert asked[1] == second_pack.pairs[0].query  # taken in turn from each pack


def test_one_axis_twice_is_refused(tiny_llama, tiny_pack):
    with pytest.raises(FitError, match="two different axes"):
        clean_region(tiny_llama, tiny_pack, tiny_pack)


def test_cancelling_stops_the_region(tiny_llama, tiny_pack, second_pack):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(FitCancelled, match="Region cancelled"):
        clean_region(tiny_llama, tiny_pack, second_pack, values=(0.0, 1.0), cancel=cancel)
