#!/usr/bin/env bash
# The commands that trained the embedded default models under assets/, in order, on this project's
# 2-core CPU machine (one thread each, in the background). Each run resumes from its checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."

# Stage 0: the causal video VAE (the embedded one stopped at step 1400 of this schedule; its EMA export
# at that step is what the tokenizer was trained on).
python -m flexvid.train_vae --out-dir runs/vae --steps 2000 --lr 5e-4 --warmup 150 --threads 1

# Stage 1: the resampler, on the VAE latents of 6144 training clips computed once.
python -m flexvid.train_tokenizer --vae runs/vae/export --out-dir runs/tokenizer --steps 4000 --threads 1 \
    --ema-decay 0.998 --latent-cache 6144
mkdir -p assets/tokenizer && cp runs/tokenizer/export/* assets/tokenizer/

# Stage 2: the generators, on tokens of the frozen embedded tokenizer (cached once per run folder).
python -m flexvid.train_generator --cond text --tokenizer assets/tokenizer --out-dir runs/generator-text \
    --clips 2048 --long-clips 128 --steps 1200 --threads 1
mkdir -p runs/generator-class && cp runs/generator-text/tokens.safetensors runs/generator-class/
python -m flexvid.train_generator --cond class --tokenizer assets/tokenizer --out-dir runs/generator-class \
    --clips 2048 --long-clips 128 --steps 1200 --threads 1
