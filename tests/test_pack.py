import json
import pickle
from dataclasses import replace

import pytest
import torch
from safetensors.torch import save_file

from alignez_core.axes.pack import AxisPack
from alignez_core.errors import PackError


def test_round_trip_keeps_everything(tiny_pack, tmp_path):
    path = tiny_pack.save(tmp_path / "cheer.safetensors")
    loaded = AxisPack.load(path)
    assert loaded.axis == tiny_pack.axis
    assert loaded.ranks() == tiny_pack.ranks() and loaded.pairs == tiny_pack.pairs
    for a, b in zip(loaded.layers, tiny_pack.layers, strict=True):
        assert torch.equal(a.basis, b.basis) and torch.equal(a.mean_difference, b.mean_difference)
    assert loaded.info()["hidden_size"] == 64 and loaded.info()["pairs"] == len(tiny_pack.pairs)
    assert loaded.timings.keys() == {"self_generation", "activations", "svd", "calibration"}
    assert loaded.site == "residual" and loaded.residual_norms == tiny_pack.residual_norms
    assert len(loaded.residual_norms) == tiny_pack.num_layers
    assert loaded.calibration == tiny_pack.calibration is not None
    assert loaded.info()["calibration"]["positive"] == tiny_pack.calibration.positive


def test_truncated_pack_is_refused(tiny_pack, tmp_path):
    path = tiny_pack.save(tmp_path / "p.safetensors")
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(PackError, match="not a valid safetensors file"):
        AxisPack.load(path)


def test_pickle_is_refused_without_loading(tmp_path):
    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('pickle code ran')",))

    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(PackError, match="pickle"):
        AxisPack.load(path)


def test_a_pack_whose_header_length_opens_with_a_pickle_byte_still_loads(tiny_pack, tmp_path):
    """safetensors writes its header's length first; a low byte of 0x80 is no pickle."""
    path = tmp_path / "p.safetensors"
    for extra in range(300):
        axis = replace(tiny_pack.axis, positive_description="warm" + "!" * extra)
        replace(tiny_pack, axis=axis).save(path)
        if path.read_bytes()[:1] == b"\x80":
            break
    else:
        pytest.fail("no header length with a low byte of 0x80 in 300 tries")
    assert AxisPack.load(path).axis.positive_description == axis.positive_description


def test_text_and_foreign_safetensors_are_refused(tmp_path):
    text = tmp_path / "notes.safetensors"
    text.write_text("hello, I am not a pack")
    with pytest.raises(PackError, match="not a valid safetensors file"):
        AxisPack.load(text)
    foreign = tmp_path / "weights.safetensors"
    save_file({"w": torch.ones(2)}, foreign)
    with pytest.raises(PackError, match="not an AlignEZ axis pack"):
        AxisPack.load(foreign)


def _rewrite(pack: AxisPack, path, edit_meta=None, edit_tensors=None, rehash=True):
    from alignez_core.axes import pack as pack_module

    tensors = pack._tensors()
    meta = pack._metadata()
    if edit_meta:
        edit_meta(meta)
    if edit_tensors:
        edit_tensors(tensors)
    if rehash:
        meta["content_hash"] = pack_module._content_hash(meta, tensors)
    save_file(tensors, path, metadata={"alignez": json.dumps(meta)})


def test_metadata_that_lies_about_shapes_is_refused(tiny_pack, tmp_path):
    path = tmp_path / "lie.safetensors"
    layer = next(i for i, r in enumerate(tiny_pack.ranks()) if r > 0)

    def lie(meta):
        meta["layers"][layer]["rank"] += 1

    _rewrite(tiny_pack, path, edit_meta=lie)
    with pytest.raises(PackError, match=f"layer {layer} tensors have shapes"):
        AxisPack.load(path)


def test_altered_contents_fail_the_hash(tiny_pack, tmp_path):
    path = tmp_path / "tampered.safetensors"

    def tamper(tensors):
        tensors["layers.0.mean_difference"] = tensors["layers.0.mean_difference"] + 1

    _rewrite(tiny_pack, path, edit_tensors=tamper, rehash=False)
    with pytest.raises(PackError, match="content hash mismatch"):
        AxisPack.load(path)


def test_newer_format_and_other_hidden_size_are_refused(tiny_pack, tmp_path, tiny_llama):
    path = tmp_path / "v9.safetensors"
    _rewrite(tiny_pack, path, edit_meta=lambda m: m.update(format_version=9))
    with pytest.raises(PackError, match="format version 9"):
        AxisPack.load(path)
    from tests.tiny import make_model

    wider = make_model(hidden=96)
    saved = tiny_pack.save(tmp_path / "ok.safetensors")
    with pytest.raises(PackError, match="hidden size 64.*has hidden size 96"):
        AxisPack.load(saved, wider)
    AxisPack.load(saved, tiny_llama)  # the right model is accepted


def test_a_pack_saved_before_readout_sites_loads_as_mlp_and_says_so(tiny_pack, tmp_path):
    path = tmp_path / "old.safetensors"

    def as_before(meta):  # the metadata a pack had before sites, norms and calibration
        for key in ("site", "residual_norms", "calibration"):
            del meta[key]

    _rewrite(tiny_pack, path, edit_meta=as_before)
    old = AxisPack.load(path)
    assert old.site == "mlp" and old.residual_norms == [] and old.calibration is None
    info = old.info()
    assert info["site"] == "mlp" and "MLP output" in info["site_note"]
    assert "not calibrated" in info["calibration_note"]


def test_bad_site_norms_and_calibration_are_refused(tiny_pack, tmp_path):
    cases = {
        "unknown readout site": lambda m: m.update(site="attention"),
        "residual_norms must be": lambda m: m.update(residual_norms=[1.0]),
        "calibration strengths": lambda m: m["calibration"].update(positive=float("inf")),
    }
    for message, edit in cases.items():
        path = tmp_path / "bad.safetensors"
        _rewrite(tiny_pack, path, edit_meta=edit)
        with pytest.raises(PackError, match=message):
            AxisPack.load(path)


def test_the_fitted_rule_round_trips_and_a_foreign_one_is_refused(tiny_pack, tmp_path):
    loaded = AxisPack.load(tiny_pack.save(tmp_path / "p.safetensors"))
    assert (loaded.fitted_rule(), loaded.fitted_positions()) == ("subspace", "last")
    for bad in ({"rule": "teleport"}, {"rule": "mean_diff", "positions": "middle"}):
        path = tmp_path / "bad.safetensors"
        _rewrite(tiny_pack, path, edit_meta=lambda m, bad=bad: m.update(rule_defaults=bad))
        with pytest.raises(PackError, match="unknown fitted rule"):
            AxisPack.load(path)
    path = tmp_path / "bad-band.safetensors"
    _rewrite(tiny_pack, path, edit_meta=lambda m: m.update(rule_defaults={"band": [0.9, 0.2]}))
    with pytest.raises(PackError, match="fitted band must be two fractions"):
        AxisPack.load(path)


def _refused(tiny_pack, tmp_path, edit_meta=None, edit_tensors=None) -> str:
    path = tmp_path / "edited.safetensors"
    _rewrite(tiny_pack, path, edit_meta=edit_meta, edit_tensors=edit_tensors)
    with pytest.raises(PackError) as refused:
        AxisPack.load(path)
    return str(refused.value)


def _set(key, value):
    return lambda meta: meta.__setitem__(key, value)


def test_each_inconsistency_is_refused_with_its_own_message(tiny_pack, tmp_path):
    n = tiny_pack.num_layers
    assert _refused(tiny_pack, tmp_path, _set("num_layers", n + 1)) == (
        f"edited.safetensors: metadata lists {n} layers, claims {n + 1}."
    )
    assert "metadata lists" in _refused(tiny_pack, tmp_path, _set("hidden_size", 0))
    assert _refused(tiny_pack, tmp_path, _set("hidden_size", 1)).startswith(
        "edited.safetensors: layer 0 tensors have shapes"
    )  # a width of 1 is allowed here, and then the tensors disagree with it
    extra = _refused(tiny_pack, tmp_path, edit_tensors=lambda t: t.update(x=torch.zeros(1)))
    assert extra == "edited.safetensors: tensors do not match the layers the metadata describes."

    def with_nan(tensors):  # a copy: the pack's own tensors are shared with the fixture
        poisoned = tensors["layers.1.mean_difference"].clone()
        poisoned[0] = float("nan")
        tensors["layers.1.mean_difference"] = poisoned

    nan = _refused(tiny_pack, tmp_path, edit_tensors=with_nan)
    assert nan == "edited.safetensors: layer 1 holds NaN or inf values."
    coords = _refused(
        tiny_pack,
        tmp_path,
        edit_tensors=lambda t: t.update({"layers.2.pair_coords": torch.zeros(3, 2)}),
    )
    assert coords == "edited.safetensors: layer 2 pair coordinates do not match the pairs."
    assert _refused(tiny_pack, tmp_path, _set("site", "attention")) == (
        "edited.safetensors: unknown readout site 'attention'; known: residual, mlp."
    )
    norms = _refused(tiny_pack, tmp_path, _set("residual_norms", [1.0] * (n - 1)))
    assert norms == f"edited.safetensors: residual_norms must be {n} positive numbers."
    assert "residual_norms must be" in _refused(
        tiny_pack, tmp_path, _set("residual_norms", [0.0] * n)
    )
    assert "residual_norms must be" in _refused(
        tiny_pack, tmp_path, _set("residual_norms", [1e12] * n)
    )


def test_a_loaded_pack_keeps_every_field(tiny_pack, tmp_path):
    loaded = AxisPack.load(tiny_pack.save(tmp_path / "p.safetensors"))
    assert (loaded.model_id, loaded.hidden_size, loaded.pooling) == (
        tiny_pack.model_id,
        tiny_pack.hidden_size,
        tiny_pack.pooling,
    )
    as_json = json.loads(json.dumps(tiny_pack.fit_config))  # tuples come back as lists
    assert loaded.fit_config == as_json and loaded.created == tiny_pack.created
    assert loaded.rule_defaults == json.loads(json.dumps(tiny_pack.rule_defaults))
    for a, b in zip(loaded.layers, tiny_pack.layers, strict=True):
        assert torch.equal(a.singular_values, b.singular_values)
        assert (a.pairs_kept, a.pairs_total) == (b.pairs_kept, b.pairs_total)
    for a, b in zip(loaded.pair_coords, tiny_pack.pair_coords, strict=True):
        assert torch.allclose(a, b)
    info = loaded.info()
    assert info["pairs"] == len(tiny_pack.pairs) and "readout_note" not in info
    assert "calibration_note" not in info and "site_note" not in info
    assert loaded.slider_note() == (
        f"±1 = the calibrated clean edge: +1 pushes {tiny_pack.calibration.positive:g}, −1 pushes "
        f"{tiny_pack.calibration.negative:g} × each edited layer's residual norm"
    )
    loaded.calibration = None
    assert "not calibrated" in loaded.info()["calibration_note"]
    assert loaded.slider_note() == "±1 = the rule's default scale (this axis is not calibrated)"
