# longplay: set-up, tests, lint, demo.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of PyTorch; override for a CUDA build, e.g. make install TORCH_SPEC="torch==2.13.0"
# with the index of your choice.
TORCH_SPEC ?= torch==2.13.0

.PHONY: install eval-deps test test-fast lint format demo bench clean browser-deps compiler-deps

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev]"
	$(MAKE) eval-deps
	touch $@

# The pretrained models of FD_openl3 and KL_passt (longplay evaluate): PyTorch ports
# installed without their declared dependencies, which (torchaudio; timm, which needs
# torchvision) would replace the CPU build of torch; the dependencies their code needs
# are the eval extra (pyproject.toml). The weights are local files (README, "Evaluate").
EVAL_PORTS := torchopenl3==1.0.1 hear21passt==0.0.26
eval-deps:
	$(PY) -m pip install --quiet -e ".[eval]"
	$(PY) -m pip install --quiet --no-deps $(EVAL_PORTS)

# A C++ compiler for torch.compile on a CPU (`--compile` and its tests; root or sudo; CI
# runs this). Without it, --compile runs eagerly with a warning.
compiler-deps:
	command -v g++ >/dev/null || (apt-get update -qq && apt-get install -y -q g++)

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

# The main job: 45 s of music from a prompt with the bundled demo model, offline: a
# 2-step draft of its distilled variant refined by it in 12 steps (--draft demo-fast,
# the bundled model's default; docs/speed.md). DRAFT= runs the model's own 50 guided
# steps instead (--draft none).
# MODEL=/path/to/a/model/folder uses another model (e.g. Stable Audio Open 1.0; no draft).
MODEL ?=
DRAFT ?= $(if $(MODEL),,demo-fast)
PROMPT ?= bossa nova, latin, nylon guitar and flute, 120 BPM
demo: install
	mkdir -p outputs
	$(VENV)/bin/longplay generate "$(PROMPT)" --duration 45 --seed 0 -o outputs/demo.wav \
		$(if $(MODEL),--model $(MODEL),) $(if $(DRAFT),--draft $(DRAFT),--draft none)

bench: install
	$(PY) -m pip install --quiet -e ".[bench]"
	$(PY) benchmarks/dit_step.py
	$(PY) benchmarks/vae_decode.py
	$(PY) benchmarks/end_to_end.py --open-small --compile
	$(PY) benchmarks/compile.py
	$(PY) benchmarks/profiles.py

clean:
	rm -rf $(VENV) outputs .pytest_cache .ruff_cache

# Debian packages that `longplay data build-corpus` runs (as root: sudo make corpus-deps).
.PHONY: corpus-deps
corpus-deps:
	apt-get update -qq
	apt-get install -y -q fluidsynth fluid-soundfont-gm timgm6mb-soundfont abcmidi mma
