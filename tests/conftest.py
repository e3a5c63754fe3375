from __future__ import annotations

import os

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from tests.tiny import make_model


@pytest.fixture(scope="session")
def tiny_llama():
    return make_model("llama")


@pytest.fixture(scope="session", params=["llama", "qwen2", "gemma"])
def tiny_any(request):
    return make_model(request.param)


@pytest.fixture(scope="session")
def real_lm():
    from alignez_core import load_model

    return load_model()
