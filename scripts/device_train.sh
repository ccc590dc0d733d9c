#!/usr/bin/env bash
# Train the embedded models further on a lent GPU (the `device` tool), starting from assets/, and bring
# the exports back through $OUT. Run it once per session, with MINUTES of training in all:
#
#   device run: bash scripts/device_train.sh 8        (carry: [".whl"])
#
# The GPU image has torch, einops, opencv, safetensors and tqdm, but not vector-quantize-pytorch and its
# needs; carry them as wheels (see the device tool's notes), downloaded here first with
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux2014_x86_64 --platform any -d .whl \
#     vector-quantize-pytorch einx loguru torch-einops-utils av plotly pytorch-msssim
# Test it on the CPU first:  OUT=/tmp/out DEVICE=cpu SMOKE=1 bash scripts/device_train.sh 1
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${1:-8}
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-out}
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
mkdir -p "$OUT"
# steps per minute measured in the first seconds of each run would be nicer; these fit an H200 roughly
if [ -n "${SMOKE:-}" ]; then VAE_STEPS=3; TOK_STEPS=3; CACHE=64; else
  VAE_STEPS=$((MINUTES * 150)); TOK_STEPS=$((MINUTES * 400)); CACHE=65536; fi
python3 -m flexvid.train_vae --init assets/tokenizer --out-dir /tmp/vae --device "$DEVICE" \
    --steps "$VAE_STEPS" --batch-size 64 --lr 3e-4 --warmup 50 --ckpt-every 500 --eval-every 500 2>&1 | tee "$OUT/vae.log" | grep -v "it/s"
python3 -m flexvid.train_tokenizer --vae /tmp/vae/export --init assets/tokenizer --out-dir /tmp/tok --device "$DEVICE" \
    --steps "$TOK_STEPS" --batch-size 128 --lr 1e-3 --warmup 100 --latent-cache "$CACHE" --ckpt-every 1000 \
    --eval-every 1000 2>&1 | tee "$OUT/tokenizer.log" | grep -v "it/s"
mkdir -p "$OUT/tokenizer"
cp /tmp/tok/export/* "$OUT/tokenizer/"
cp /tmp/vae/log.jsonl "$OUT/vae_log.jsonl"; cp /tmp/tok/log.jsonl "$OUT/tokenizer_log.jsonl"
