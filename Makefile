# Every target creates .venv on first use and installs what it needs, so a fresh clone works.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch lies on disk; a bare `torch` requirement would pull a multi-GB CUDA build.
TORCH_PIN := torch==2.13.0
STAMP := $(VENV)/.installed
# lpips is installed only for its LPIPS head weights (weights/v0.1/*.pth, read as files; vqtok never imports it),
# with --no-deps: its torchvision requirement would replace the pinned CPU torch with a CUDA build.

.PHONY: venv test lint demo demo-audio demo-photos bench bench-gpu clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_PIN)
	$(BIN)/pip install -q -e ".[dev,data,bench,interop]"
	$(BIN)/pip install -q --no-deps "lpips>=0.1.4"
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check vqtok tests benchmarks
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check vqtok tests benchmarks
	$(BIN)/ruff format --check vqtok tests benchmarks

# Fashion-MNIST comes from the Debian package; install it when missing and we can (root + apt-get).
FMNIST_DIR := /usr/share/datasets/fashion-mnist

demo: $(STAMP)
	@if [ ! -e $(FMNIST_DIR)/t10k-images-idx3-ubyte.gz ] && command -v apt-get >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; \
		else echo "Fashion-MNIST missing: run 'sudo apt-get install dataset-fashion-mnist'"; fi; \
	fi
	$(BIN)/python -m vqtok.cli demo

# Audio codec on the Asterisk English prompts (apt package asterisk-core-sounds-en-wav), CPU; the config is sized for
# at most 15 minutes on 2 idle cores (3000 steps). A tqdm bar shows steps/s and ETA; 1 torch thread when the machine
# is busy.
demo-audio: $(STAMP)
	@test -d /usr/share/asterisk/sounds/en || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y asterisk-core-sounds-en-wav; \
	  else echo "missing /usr/share/asterisk/sounds/en: sudo apt-get install asterisk-core-sounds-en-wav"; exit 1; fi; }
	$(BIN)/python examples/audio_codec_demo.py

# Colour demo on 64x64 crops of the photos bundled with scikit-image/scikit-learn/matplotlib, vs JPEG and WebP.
demo-photos: $(STAMP)
	$(BIN)/python -m vqtok.cli demo photos --threads 2

bench: $(STAMP)
	$(BIN)/python benchmarks/search.py && $(BIN)/python benchmarks/train_step.py

# One GPU, <= 8 minutes: gpu tests, Triton search, vq training step, demo throughput (docs/gpu.md). Uses the
# python that has CUDA torch (GPU_PY; the venv's torch is the CPU build). Extra arguments: GPU_ARGS="--parts search".
GPU_PY ?= python3
bench-gpu:
	PYTHONPATH=$(CURDIR) $(GPU_PY) benchmarks/gpu.py $(GPU_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
