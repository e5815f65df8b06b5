# longplay: set-up, tests, lint, demo.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of PyTorch; override for a CUDA build, e.g. make install TORCH_SPEC="torch==2.13.0"
# with the index of your choice.
TORCH_SPEC ?= torch==2.13.0

.PHONY: install test test-fast lint format demo bench clean browser-deps

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

# Debian's chromium for the browser test (root or sudo; CI runs this).
browser-deps:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -q chromium)

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

lint: install
	$(VENV)/bin/ruff check src tests benchmarks scripts

format: install
	$(VENV)/bin/ruff check --fix src tests benchmarks scripts

# The main job for now: round-trip an example through the VAE. With no published
# weights on this machine it uses an untrained debug VAE (the output is noise);
# pass MODEL=/path/to/stable-audio-open-1.0 to use real weights.
MODEL ?=
demo: install
	mkdir -p outputs
	$(PY) scripts/example_audio.py -o outputs/example.wav
	$(VENV)/bin/longplay vae reconstruct outputs/example.wav -o outputs/reconstruction.wav \
		$(if $(MODEL),--model $(MODEL),--random-weights debug)

bench: install
	$(PY) benchmarks/vae_decode.py

clean:
	rm -rf $(VENV) outputs .pytest_cache .ruff_cache

# Debian packages that `longplay data build-corpus` runs (as root: sudo make corpus-deps).
.PHONY: corpus-deps
corpus-deps:
	apt-get update -qq
	apt-get install -y -q fluidsynth fluid-soundfont-gm timgm6mb-soundfont abcmidi mma
