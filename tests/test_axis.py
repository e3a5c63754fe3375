import pytest

from alignez_core.axes.axis import Axis, preset, preset_band, preset_names, seed_queries
from alignez_core.axes.queries import MAX_QUERIES, parse_queries, read_queries
from alignez_core.errors import FitError


def test_paper_presets_verbatim_and_ours():
    assert preset_names() == [
        "helpful",
        "harmless",
        "humor",
        "concise",
        "formal",
        "cheerful",
        "simple",
    ]
    assert (preset("helpful").positive, preset("helpful").negative) == ("helpful", "useless")
    assert (preset("harmless").positive, preset("harmless").negative) == (
        "safety-first",
        "malicious",
    )
    assert (preset("humor").positive, preset("humor").negative) == ("humorous", "dull and boring")
    assert preset("cheerful").negative == "gloomy"
    with pytest.raises(FitError, match="Unknown preset 'sad'"):
        preset("sad")


def test_seed_set_is_large_and_diverse():
    queries = seed_queries()
    assert len(queries) >= 40 and len(set(queries)) == len(queries)


@pytest.mark.parametrize("bad", ["", "   ", "\n\t"])
def test_empty_or_whitespace_keywords_are_refused(bad):
    with pytest.raises(FitError, match="positive must be a non-empty"):
        Axis("x", bad, "gloomy")
    with pytest.raises(FitError, match="negative must be a non-empty"):
        Axis("x", "cheerful", bad)


def test_identical_or_overlong_poles_are_refused():
    with pytest.raises(FitError, match="must differ"):
        Axis("x", "Calm", "calm")
    with pytest.raises(FitError, match="cap is 80"):
        Axis("x", "a" * 81, "b")


def test_persona_carries_the_description():
    assert preset("cheerful").persona(True).startswith("cheerful assistant who sounds happy")
    assert Axis("x", "terse", "chatty").persona(False) == "chatty assistant"


def test_query_files_empty_binary_and_huge(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    with pytest.raises(FitError, match="has no queries"):
        read_queries(empty)
    binary = tmp_path / "blob.bin"
    binary.write_bytes(bytes(range(256)) * 10)
    with pytest.raises(FitError, match="not a (UTF-8 )?text file"):
        read_queries(binary)
    huge = tmp_path / "huge.txt"
    huge.write_text("\n".join(f"question number {i}?" for i in range(100_000)))
    parsed = read_queries(huge)
    assert len(parsed.queries) == MAX_QUERIES
    assert any("read the first 1 MiB" in n for n in parsed.notes)
    assert any(f"first {MAX_QUERIES} of" in n for n in parsed.notes)


def test_long_queries_are_cut_and_said_so():
    parsed = parse_queries("x" * 5000)
    assert len(parsed.queries[0]) == 2000 and "cut to 2000" in parsed.notes[0]


def test_a_band_travels_with_the_axis_and_is_validated():
    concise = preset("concise")
    assert concise.band == (0.25, 0.7)  # measured: length sits earlier than tone
    assert preset("cheerful").band is None and "band" not in preset("cheerful").to_dict()
    assert Axis.from_dict(concise.to_dict()) == concise  # JSON's list comes back a tuple
    for bad in [(0.7, 0.25), (0.2, 1.5), (float("nan"), 0.5), "ab", (0.1,)]:
        with pytest.raises(FitError, match="axis band must"):
            Axis("x", "terse", "chatty", band=bad)


def test_a_presets_band_holds_only_while_its_poles_are_untouched():
    assert preset_band("concise", Axis("x", " concise ", "verbose")) == (0.25, 0.7)
    assert preset_band("concise", Axis("x", "brief", "verbose")) is None  # edited: custom
    assert preset_band("cheerful", preset("cheerful")) is None  # no band of its own
    assert preset_band("custom", preset("concise")) is None
