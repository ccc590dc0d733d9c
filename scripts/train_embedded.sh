#!/usr/bin/env bash
# The commands that trained the embedded default models under assets/, in order, on this project's
# 2-core CPU machine (one thread each, in the background). Each run resumes from its checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."

# Stage 0: the causal video VAE (the embedded one stopped at step 1400 of this schedule; its EMA export
# at that step is what the tokenizer was trained on).
python -m flexvid.train_vae --out-dir runs/vae --steps 2000 --lr 5e-4 --warmup 150 --threads 1

# Stage 1: the resampler, on the VAE latents of 6144 training clips computed once. The embedded run was
# changed twice while it ran, each time resuming from its last checkpoint (the log shows it): steps 1-1000
# used flow times logit-normal(0, 1), lr 5e-4 and no variance term; steps 1000-1500 logit-normal(1, 1);
# steps 1500-1750 lr 1.5e-3; from step 1750 on the variance term too. The command below is the final
# recipe, from scratch.
python -m flexvid.train_tokenizer --vae runs/vae/export --out-dir runs/tokenizer --steps 4000 --threads 1 \
    --ema-decay 0.998 --latent-cache 6144 --lr 1.5e-3 --min-lr 1e-4
# export with fp16 tokenizer weights (under 20 MB) and the sampler settings measured on validation clips
python - <<'PY'
from flexvid.pipeline import VideoFlexTok
tok = VideoFlexTok.from_pretrained("runs/tokenizer/export", device="cpu")
tok.tokenizer.cfg.sample_steps, tok.tokenizer.cfg.guidance, tok.tokenizer.cfg.guidance_mode = 10, 4.0, "apg"
tok.save_pretrained("assets/tokenizer", half=True)
PY
cp runs/vae/log.jsonl assets/tokenizer/train_log_vae.jsonl
cp runs/tokenizer/log.jsonl assets/tokenizer/train_log_tokenizer.jsonl

# Stage 2: the generators, on tokens of the frozen embedded tokenizer (cached once per run folder).
python -m flexvid.train_generator --cond text --tokenizer assets/tokenizer --out-dir runs/generator-text \
    --clips 2048 --long-clips 128 --steps 1200 --threads 1
mkdir -p runs/generator-class && cp runs/generator-text/tokens.safetensors runs/generator-class/
python -m flexvid.train_generator --cond class --tokenizer assets/tokenizer --out-dir runs/generator-class \
    --clips 2048 --long-clips 128 --steps 1200 --threads 1
