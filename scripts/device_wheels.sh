#!/usr/bin/env bash
# Wheels that the lent GPU's image lacks (it has torch, einops, numpy, opencv, safetensors, tqdm,
# huggingface_hub, pytest), for Python 3.12 on x86-64, into .whl/ (ignored by git), which the device
# tool's call carries: `carry: [".whl"]`. PyAV and plotly are not needed there (nothing writes mp4 or
# HTML on that machine) and would not fit: the call carries 64 MiB with the repo.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform any -d .whl \
  vector-quantize-pytorch==1.32.0 einx==0.4.3 frozendict==2.5.1 loguru==0.7.3 torch-einops-utils==0.2.0 \
  pytorch-msssim==1.0.0
du -sh .whl
