"""Files written by an earlier release still load: a pack and a studio session saved by the
release before the package was regrouped by stage (tests/data/README.md says how)."""

from pathlib import Path

import pytest

import alignez_core as az
from alignez_core.steering import SteerSettings
from tests.tiny import make_model
from ui.session import StudioSession

DATA = Path(__file__).parent / "data"


def test_a_pack_from_the_previous_release_loads_and_steers():
    lm = make_model("llama")  # the same tiny model (seeded) the file was fitted on
    pack = az.AxisPack.load(DATA / "pack-fba1cde-tiny.safetensors", lm)
    assert pack.name == "cheerful" and pack.num_layers == 3 and pack.ranks() == [2, 2, 2]
    assert pack.rule_defaults["rule"] == "subspace"  # saved as `steer`, the rule's old name
    assert pack.fitted_rule() == "subspace" and pack.calibration is not None
    (answer,) = az.generate(lm, ["hi"], {pack: 8.0}, SteerSettings(), az.SamplingConfig(12))
    assert answer.edited != answer.base


def test_the_old_rule_names_still_read_as_todays():
    for old, new in (("steer", "subspace"), ("caa", "mean_diff"), ("paper", "project")):
        assert SteerSettings(rule=old).rule == new
    with pytest.raises(az.EditError, match="Unknown rule 'steering'"):
        SteerSettings(rule="steering")


def test_a_session_from_the_previous_release_loads_with_its_sliders():
    lm = make_model("llama")
    session = StudioSession.load(DATA / "session-fba1cde-tiny.zip", lm)
    assert session.names() == ["cheerful"]
    assert session.strengths == {"cheerful": -0.75}
    (pack,) = session.axes.values()
    assert session.pack_strengths() == {pack: -0.75}
