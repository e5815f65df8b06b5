#!/usr/bin/env bash
# The wheels scripts/gpu_check.sh needs beside a GPU machine's PyTorch image (which has
# torch, transformers, lightning, safetensors, numpy, scipy, pytest): longplay's other
# runtime dependencies (soundfile with cffi and pycparser, which the image lacks) and
# diffusers (with importlib_metadata) for the reference rows, for CPython 3.12 on x86-64
# (about 4 MB: the device tool carries at most 64 MiB, so the demo model's 90 MB text
# encoder stays behind and the end-to-end rows use the Open Small architecture).
#   bash scripts/gpu_wheels.sh      # writes .whl/ (ignored by git)
set -euo pipefail
mkdir -p .whl
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform any -d .whl \
  soundfile cffi pycparser soxr "diffusers>=0.30,<1" importlib_metadata
