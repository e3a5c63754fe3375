"""The studio's session file (ui/session.py): a zip of packs and slider values, refused with a
message when it is too large, too full, of another version, or missing what it names."""

import copy
import io
import json
import zipfile

import pytest

from alignez_core.axes.axis import Axis
from alignez_core.errors import PackError
from ui import session as session_module
from ui.session import MAX_AXES, SESSION_VERSION, StudioSession


def saved(tiny_pack, tmp_path, edit=None):
    """A session holding `tiny_pack` at −0.5, written after `edit(manifest, members)`."""
    session = StudioSession()
    session.add(tiny_pack)
    session.strengths[tiny_pack.name] = -0.5
    with zipfile.ZipFile(io.BytesIO(session.to_bytes())) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    manifest = json.loads(members.pop("session.json"))
    if edit is not None:
        edit(manifest, members)
    path = tmp_path / "s.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("session.json", json.dumps(manifest))
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_a_session_round_trips(tiny_pack, tmp_path, tiny_llama):
    loaded = StudioSession.load(saved(tiny_pack, tmp_path), tiny_llama)
    assert loaded.names() == [tiny_pack.name] and loaded.strengths == {tiny_pack.name: -0.5}


def test_another_version_is_refused_by_number(tiny_pack, tmp_path, tiny_llama):
    path = saved(tiny_pack, tmp_path, lambda m, _: m.update(format_version=SESSION_VERSION + 1))
    with pytest.raises(PackError, match=f"unsupported session version {SESSION_VERSION + 1}"):
        StudioSession.load(path, tiny_llama)


def test_a_missing_member_is_named(tiny_pack, tmp_path, tiny_llama):
    path = saved(tiny_pack, tmp_path, lambda _, members: members.pop("axes/0.safetensors"))
    with pytest.raises(PackError, match="missing axis file 'axes/0.safetensors'"):
        StudioSession.load(path, tiny_llama)


def test_too_many_members_are_refused(tiny_pack, tmp_path, tiny_llama):
    def stuff(_, members):
        for i in range(MAX_AXES + 1):
            members[f"axes/{i}.safetensors"] = members["axes/0.safetensors"]

    with pytest.raises(PackError, match="is not an AlignEZ session file"):
        StudioSession.load(saved(tiny_pack, tmp_path, stuff), tiny_llama)


def test_an_oversized_file_or_member_is_refused(tiny_pack, tmp_path, tiny_llama, monkeypatch):
    path = saved(tiny_pack, tmp_path)
    monkeypatch.setattr(session_module, "MAX_SESSION_BYTES", path.stat().st_size - 1)
    with pytest.raises(PackError, match="too large for a session file"):
        StudioSession.load(path, tiny_llama)
    monkeypatch.undo()
    monkeypatch.setattr(session_module, "MAX_PACK_BYTES", 10)
    with pytest.raises(PackError, match="a member is larger than 10 bytes"):
        StudioSession.load(path, tiny_llama)


def test_a_session_holds_at_most_four_axes(tiny_pack):
    session = StudioSession()
    for i in range(MAX_AXES + 1):
        pack = copy.copy(tiny_pack)
        pack.axis = Axis.from_dict(tiny_pack.axis.to_dict() | {"name": f"axis{i}"})
        if i < MAX_AXES:
            session.add(pack)
        else:
            with pytest.raises(PackError, match="at most 4 axes"):
                session.add(pack)
    assert len(session.names()) == MAX_AXES == 4
