#!/usr/bin/env bash
# The commands that trained the embedded default models under assets/, in order, on this project's
# 2-core CPU machine (one thread each, in the background). Each run resumes from its checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."

# Stage 0: the causal video VAE (the embedded one stopped at step 1400 of this schedule; its EMA export
# at that step is what the tokenizer was trained on).
python -m flexvid.train_vae --out-dir runs/vae --steps 2000 --lr 5e-4 --warmup 150 --threads 1

# Stage 1: the resampler, on the VAE latents of 6144 training clips computed once, in four runs, each
# starting from the previous one's EMA weights (--init).
# (a) 4000 steps, flow times logit-normal(1, 1). This run's recipe changed while it ran, each time
#     resuming from its checkpoint (its log, assets/tokenizer/train_log_tokenizer_a.jsonl, shows it): steps
#     1-1000 used logit-normal(0, 1), lr 5e-4 and no variance term; 1000-1500 logit-normal(1, 1); 1500-1750
#     lr 1.5e-3; from 1750 on the variance term too. The command is the final recipe, from scratch. After
#     it the tokens carried the background only: a linear probe on them found the main object's colour
#     at chance (flexvid eval-tokenizer's token probe), and the decoder drew no objects (18.4 dB at K).
python -m flexvid.train_tokenizer --vae runs/vae/export --out-dir runs/tokenizer --steps 4000 --threads 1 \
    --ema-decay 0.998 --latent-cache 6144 --lr 1.5e-3 --min-lr 1e-4
# (b) 1500 steps almost at pure noise, logit-normal(3, 0.5): s is 0.88-0.99, where only the tokens say
#     what the clip is, so the loss there is a regression of the clip from its tokens and the encoder is
#     pushed to put the objects in. The probe on the tokens went from chance to 45% (colour) and 58%
#     (motion) at K.
python -m flexvid.train_tokenizer --vae runs/vae/export --init runs/tokenizer/export --out-dir runs/tokenizer_b \
    --steps 1500 --threads 1 --ema-decay 0.99 --latent-cache 6144 --lr 1e-3 --min-lr 1e-4 --warmup 50 \
    --set time_mean=3.0 time_std=0.5
# (c) 9000 steps at logit-normal(2.5, 1): mostly high noise, with enough low-noise steps left for a
#     generative decoder (2 threads, about 0.48 s per step, 72 minutes).
python -m flexvid.train_tokenizer --vae runs/vae/export --init runs/tokenizer_b/export --out-dir runs/tokenizer_c \
    --steps 9000 --threads 2 --ema-decay 0.998 --latent-cache 6144 --lr 1e-3 --min-lr 5e-5 --warmup 100 \
    --set time_mean=2.5 time_std=1.0
# (d) 4000 steps of the decoder side alone (--freeze-encoder: encoder, registers and FSQ fixed, so every
#     clip keeps its tokens and generators trained on them stay valid) at logit-normal(1, 1.6), which
#     reaches the low-noise times that (b) and (c) almost never drew (one thread, about 38 minutes).
python -m flexvid.train_tokenizer --vae runs/vae/export --init runs/tokenizer_c/export --out-dir runs/tokenizer_d \
    --freeze-encoder --steps 4000 --threads 1 --ema-decay 0.998 --latent-cache 6144 --lr 3e-4 --min-lr 3e-5 \
    --warmup 100 --eval-every 1000 --set time_mean=1.0 time_std=1.6
# export with fp16 tokenizer weights (under 20 MB) and the sampler settings measured on validation clips
export_tokenizer() {  # RUN_FOLDER GUIDANCE: 10 Euler steps, CFG
python - "$1" "$2" <<'PY'
import sys
from flexvid.pipeline import VideoFlexTok
tok = VideoFlexTok.from_pretrained(sys.argv[1] + "/export", device="cpu")
tok.tokenizer.cfg.sample_steps, tok.tokenizer.cfg.guidance, tok.tokenizer.cfg.guidance_mode = 10, float(sys.argv[2]), "cfg"
tok.save_pretrained("assets/tokenizer", half=True)
PY
}
export_tokenizer runs/tokenizer_d 2.0
# (e) 8000 more steps of the decoder side alone from that export, same flow times, a lower learning rate
#     (one thread, 82 minutes; every token unchanged, checked on 64 + 4 test clips), exported with CFG
#     guidance 3 (against 2 on 128 validation clips: python scripts/compare_tokenizers.py
#     runs/tokenizer_e/export --n 128 --guidance 2, then --guidance 3)
mkdir -p runs/tokenizer_e && ln -sf ../tokenizer/latents_17f.safetensors runs/tokenizer_e/latents_17f.safetensors
python -m flexvid.train_tokenizer --vae assets/tokenizer --init assets/tokenizer --out-dir runs/tokenizer_e \
    --freeze-encoder --steps 8000 --threads 1 --ema-decay 0.998 --latent-cache 6144 --lr 2e-4 --min-lr 2e-5 \
    --warmup 100 --eval-every 2000 --set time_mean=1.0 time_std=1.6
export_tokenizer runs/tokenizer_e 3.0
cp runs/vae/log.jsonl assets/tokenizer/train_log_vae.jsonl
cp runs/tokenizer/log.jsonl assets/tokenizer/train_log_tokenizer_a.jsonl
cp runs/tokenizer_b/log.jsonl assets/tokenizer/train_log_tokenizer_b.jsonl
cp runs/tokenizer_c/log.jsonl assets/tokenizer/train_log_tokenizer_c.jsonl
cp runs/tokenizer_d/log.jsonl assets/tokenizer/train_log_tokenizer_d.jsonl
cp runs/tokenizer_e/log.jsonl assets/tokenizer/train_log_tokenizer_e.jsonl

# Stage 2: the generators, on tokens of the frozen embedded tokenizer (cached once per run folder; the
# class run reuses the text run's cache). Sequences of up to 672 tokens (21 steps x 32), so that 81-frame
# clips train at every budget, the full one included. The text run also learns from 4 rewordings per
# caption (half of its clips), in words that the paraphrase test of eval-generator never uses. The text
# model reads the prompt as 24 word-piece embeddings (--text-tokens 24), one prefix slot each, not one
# pooled sentence vector. Rounds, each resumed from the previous round's checkpoint (the cosine schedule
# is recomputed for the new --steps, so the learning rate rises again before it decays to 1e-4), one
# thread each, the two runs side by side:
#   - 4,500 and then 8,000 steps on 8,192 17-frame and 512 81-frame clips (about 40 + 30 minutes);
#   - 12,000 steps on the same clips (about 45 minutes; this round was stopped near step 9,000 and
#     resumed, first planned as 11,000 steps);
#   - 16,000 steps on 24,576 17-frame and 1,536 81-frame clips (about 35 minutes; the cache grows by the
#     new clips only). At 8,192 clips the training loss at k <= 4 had fallen far under the validation
#     loss (k = 4: 3.56 against 4.43): the coarse tokens were being memorised.
#   - 24,000 steps on 65,536 17-frame and 1,536 81-frame clips (about 85 minutes for the text model; the
#     class model's round was paused for about 45 minutes and resumed, same process).
#   - 30,000 steps on the same clips (about 85 minutes for the text model and 73 for the class model,
#     side by side with a tokenizer experiment, so three processes shared the two cores).
# (The class model's first 4,500 steps themselves ran as 1,500 of a 6,500-step schedule resumed with
# --steps 4500; the text model's log shows a restart from its step-750 checkpoint.) All on the same
# tokens: the tokenizer's last run (d) left every token unchanged.
for round in "4500 8192 512" "8000 8192 512" "12000 8192 512" "16000 24576 1536" "24000 65536 1536" \
             "30000 65536 1536"; do
set -- $round
python -m flexvid.train_generator --cond text --tokenizer assets/tokenizer --out-dir runs/generator-text \
    --clips $2 --long-clips $3 --max-tokens 672 --steps $1 --threads 1 --eval-every 2000 --probe-clips 8 \
    --caption-variants 4 --p-variant 0.5 --text-tokens 24
mkdir -p runs/generator-class && cp runs/generator-text/tokens.safetensors runs/generator-class/  # a superset
python -m flexvid.train_generator --cond class --tokenizer assets/tokenizer --out-dir runs/generator-class \
    --clips $2 --long-clips $3 --max-tokens 672 --steps $1 --threads 1 --eval-every 2000 --probe-clips 8
done
# ship the EMA exports with the sampler defaults chosen on validation prompts (text: temperature 0.7,
# guidance 5; class: temperature 0.7, guidance 3, against 6 and 9 on 96 prompts after the last round) and
# the decoder guidance for their grids (2, against 1.5 and 3 on the same 96 prompts: sampled grids are not
# encoded clips, and the tokenizer's own default, 3, is chosen on encoded ones)
python - <<'PY'
import json, os, shutil
for cond, (temperature, guidance) in {"text": (0.7, 5.0), "class": (0.7, 3.0)}.items():
    src, dst = f"runs/generator-{cond}", f"assets/generator-{cond}"
    os.makedirs(dst, exist_ok=True)
    shutil.copy(f"{src}/export/model.safetensors", dst)
    shutil.copy(f"{src}/log.jsonl", f"{dst}/train_log.jsonl")
    cfg = json.load(open(f"{src}/export/config.json"))
    cfg["generator"].update(temperature=temperature, guidance=guidance, decode_guidance=2.0)
    json.dump(cfg, open(f"{dst}/config.json", "w"), indent=2)
PY

# Tried and not shipped: REPA against a shapes-world teacher (docs/training-notes.md).
# The teacher's run was stopped after its step-500 checkpoint (the export used), of 1,000 planned; the
# tokenizer run starts from the shipped weights and changes every token, so shipping it means training
# both generators again on its tokens.
python -m flexvid.teacher --out-dir runs/teacher --steps 1000 --threads 1
mkdir -p runs/tok6 && ln -sf ../tokenizer/latents_17f.safetensors runs/tok6/latents_17f.safetensors
python -m flexvid.train_tokenizer --vae assets/tokenizer --init assets/tokenizer --out-dir runs/tok6 \
    --repa runs/teacher/export --repa-weight 1.0 --latent-cache 6144 --steps 3000 --threads 1 --ema-decay 0.998 \
    --lr 5e-4 --min-lr 5e-5 --warmup 100 --eval-every 500 --set time_mean=2.0 time_std=1.2
python scripts/compare_tokenizers.py assets/tokenizer runs/tok6/export --n 32 --ks 1 2 4 32

# Tried and not shipped: the flow loss weighted towards detailed latent positions (flow.detail_weights:
# small objects on the smooth background weigh 5-10x a background position), the whole tokenizer from
# the shipped weights, 2,500 steps (50 minutes on one thread, sharing the cores with the generators).
# Small-object shapes at K on 64 validation clips: 14 / 25 -> 15 / 25 (docs/training-notes.md).
mkdir -p runs/tok8 && ln -sf ../tokenizer/latents_17f.safetensors runs/tok8/latents_17f.safetensors
python -m flexvid.train_tokenizer --vae assets/tokenizer --init assets/tokenizer --out-dir runs/tok8 \
    --steps 2500 --threads 1 --ema-decay 0.998 --latent-cache 6144 --lr 3e-4 --min-lr 3e-5 \
    --warmup 100 --eval-every 500 --set time_mean=1.0 time_std=1.6 detail_weight=1.0

# Stage 0 again, after the generators (session 10, shipped): the VAE's decoder alone (--freeze-encoder:
# every clip keeps its latents, so the resampler, its tokens and the generators stay valid; the export
# keeps the latent statistics), in fp32 (what the loop picks by itself on a CPU without native bf16), in
# three runs, each from the previous export (runs/vae_dec was the same decoder as assets/tokenizer then).
# (1) exact latents; stopped after its step-1,600 checkpoint (72 minutes at 2 threads). The VAE alone
#     gained 0.86 dB on 64 test clips, but through the resampler PSNR fell 0.07-0.30 dB (docs/training-notes.md).
python -m flexvid.train_vae --init assets/tokenizer --freeze-encoder --out-dir runs/vae_dec --steps 2200 --lr 2e-4 \
    --min-lr 2e-5 --warmup 50 --ema-decay 0.998 --ckpt-every 200 --eval-every 400 --threads 2 --no-bf16
# (2) latents perturbed by noise of up to 0.4 rms, about the resampler's error at K (stopped after step 300
#     once, then resumed to 500 with the same command): still 0.04-0.12 dB under through the resampler
python -m flexvid.train_vae --init runs/vae_dec/export --freeze-encoder --out-dir runs/vae_noise --steps 500 --lr 1e-4 \
    --min-lr 1e-5 --warmup 20 --ema-decay 0.99 --ckpt-every 100 --eval-every 0 --threads 2 --no-bf16 --latent-noise 0.4
# (3) every other step fitted to the resampler's own latents of 768 training clips at K (cached once, 12
#     minutes), the others as in (2); 45 minutes at 2 threads. +0.18 to +0.77 dB through the resampler
#     on the 64 test clips (docs/training-notes.md)
python -m flexvid.train_vae --init runs/vae_noise/export --tokenizer assets/tokenizer --freeze-encoder --resampled 768 \
    --out-dir runs/vae_resampled --steps 600 --lr 1e-4 --min-lr 1e-5 --warmup 20 --ema-decay 0.99 --ckpt-every 100 \
    --eval-every 0 --threads 2 --no-bf16 --latent-noise 0.4
python - <<'PY'
from flexvid.pipeline import VideoFlexTok
from flexvid.train_tokenizer import load_vae
tok = VideoFlexTok.from_pretrained("assets/tokenizer", device="cpu")
VideoFlexTok(load_vae("runs/vae_resampled/export"), tok.tokenizer, device="cpu").save_pretrained("runs/tok_resampled", half=True)
PY
flexvid eval-tokenizer --model runs/tok_resampled --n 64 --n-long 2 --out runs/eval_tok_resampled
cp runs/tok_resampled/config.json runs/tok_resampled/vae.safetensors assets/tokenizer/
cp runs/vae_dec/log.jsonl assets/tokenizer/train_log_vae_decoder_1.jsonl
cp runs/vae_noise/log.jsonl assets/tokenizer/train_log_vae_decoder_2.jsonl
cp runs/vae_resampled/log.jsonl assets/tokenizer/train_log_vae_decoder_3.jsonl
flexvid eval-generator --n 32 --n-long 8 --out eval/generator

# Tried in session 11, not shipped (docs/training-notes.md): the first token of every step asked to name the main object
# (--set attr_weight: a training-only head on the token's FSQ code, cross-entropy against the clip's
# colour, shape, size and motion from shapes.attribute_labels; motion from the second step on). The new
# head is first fitted alone to the shipped tokens (held-out accuracy: colour 0.27, shape 0.36, size
# 0.57, motion 0.24; chance 0.17 / 0.33 / 0.50 / 0.20: the first token says almost nothing of the
# object). After 2,400 steps the head read colour 0.80, size 0.89, motion 0.55 and shape at chance, but
# decoded, the first token's colour was no better drawn (0.41 at k = 1 on 32 validation clips) and PSNR fell
# 0.6-1.6 dB at every k. Shipping such a tokenizer would mean training both generators again on its tokens
# (train-generator --init from the shipped generators).
mkdir -p runs/tok_attr
python -m flexvid.train_tokenizer --vae assets/tokenizer --init assets/tokenizer --out-dir runs/tok_attr \
    --latent-cache 8192 --steps 2400 --threads 2 --no-bf16 --ema-decay 0.995 --lr 5e-4 --min-lr 5e-5 --warmup 50 \
    --ckpt-every 200 --eval-every 0 --set attr_weight=0.5 time_mean=2.0 time_std=1.2
python scripts/compare_tokenizers.py assets/tokenizer runs/tok_attr/export --n 32 --ks 1 2 4 32 --guidance 3
# then 450 steps of its decoder side alone (11 minutes): colour at k = 1 0.41 -> 0.50, PSNR +0.15 dB at k = 1
mkdir -p runs/tok_attr_dec && ln -sf ../tok_attr/latents_17f.safetensors runs/tok_attr_dec/latents_17f.safetensors
python -m flexvid.train_tokenizer --vae assets/tokenizer --init runs/tok_attr/export --freeze-encoder \
    --out-dir runs/tok_attr_dec --latent-cache 8192 --steps 450 --threads 2 --no-bf16 --ema-decay 0.99 --lr 3e-4 \
    --min-lr 3e-5 --warmup 20 --ckpt-every 150 --eval-every 0 --set time_mean=1.0 time_std=1.6
python scripts/compare_tokenizers.py runs/tok_attr_dec/export --n 32 --ks 1 2 4 32 --guidance 3

# Session 12, not shipped (docs/training-notes.md): 1,500 more decoder-side steps at low noise (no change), then the decoder
# side trained at high noise instead, from the attribute run (colour at k = 1 0.41 -> 0.59 on 32 validation clips)
mkdir -p runs/tok_attr_dec2 && ln -sf ../tok_attr/latents_17f.safetensors runs/tok_attr_dec2/latents_17f.safetensors
python -m flexvid.train_tokenizer --vae assets/tokenizer --init runs/tok_attr_dec/export --freeze-encoder \
    --out-dir runs/tok_attr_dec2 --latent-cache 8192 --steps 1500 --threads 1 --no-bf16 --ema-decay 0.995 --lr 3e-4 \
    --min-lr 3e-5 --warmup 20 --ckpt-every 150 --eval-every 0 --set time_mean=1.0 time_std=1.6
python scripts/compare_tokenizers.py runs/tok_attr_dec2/export --n 32 --ks 1 2 4 32 --guidance 3
mkdir -p runs/tok_attr_hi && ln -sf ../tok_attr/latents_17f.safetensors runs/tok_attr_hi/latents_17f.safetensors
python -m flexvid.train_tokenizer --vae assets/tokenizer --init runs/tok_attr/export --freeze-encoder \
    --out-dir runs/tok_attr_hi --latent-cache 8192 --steps 100000 --time-limit 2400 --threads 2 --no-bf16 \
    --ema-decay 0.995 --lr 3e-4 --min-lr 3e-5 --warmup 20 --ckpt-every 200 --eval-every 0 --set time_mean=2.5 time_std=1.0
python scripts/compare_tokenizers.py runs/tok_attr_hi/export --n 32 --ks 1 2 4 32 --guidance 3

# Session 13 (docs/training-notes.md): the error also measured in pixels (--set pixel_weight: the clean latents that the
# predicted velocity implies and the true ones, both decoded by the frozen VAE, for 4 clips of each batch;
# 3.3 s a step instead of 1.9). First why: no fixed weighting of the latent channels counts like pixels
# (the VAE decoder's own 16 x 16 pixel metric leaves the background's share of the latents' variation at 0.42)
python scripts/latent_variance.py --n 64 --metric 16
# (1) the whole resampler from the shipped weights (changes the tokens); stopped at step 600 of 1,288 in session 13.
#     Session 35 ran it with --time-limit 4000 (2,726 steps) and compared it on 64 validation clips (--n 64):
#     colour and motion at k = 1 up by 5 and 4 clips, shape at K down by 4; not shipped (docs/training-notes.md)
mkdir -p runs/tok_px
python -m flexvid.train_tokenizer --vae assets/tokenizer --init assets/tokenizer --out-dir runs/tok_px \
    --latent-cache 6144 --steps 100000 --time-limit 4200 --threads 2 --no-bf16 --ema-decay 0.995 --lr 3e-4 \
    --min-lr 3e-5 --warmup 50 --ckpt-every 200 --eval-every 0 --set pixel_weight=30.0 pixel_clips=4 time_mean=2.0 time_std=1.2
python scripts/compare_tokenizers.py runs/tok_px/export --n 32 --ks 1 2 4 32 --guidance 3
# (1b) session 36: that run's decoder side alone (tokens unchanged; its config's pixel term kept), to win back
#      PSNR at K; 746 steps in 2,300 s, no gain (docs/training-notes.md)
mkdir -p runs/tok_pxd && ln -sf ../tok_px/latents_17f.safetensors runs/tok_pxd/latents_17f.safetensors
python -m flexvid.train_tokenizer --vae runs/tok_px/export --init runs/tok_px/export --freeze-encoder --out-dir runs/tok_pxd \
    --latent-cache 6144 --steps 100000 --time-limit 2300 --threads 2 --no-bf16 --ema-decay 0.995 --lr 2e-4 --min-lr 2e-5 \
    --warmup 20 --ckpt-every 200 --eval-every 0 --set time_mean=1.0 time_std=1.6
python scripts/compare_tokenizers.py runs/tok_px/export runs/tok_pxd/export --n 64 --ks 1 2 4 32 --guidance 3
# (2) its decoder side alone (tokens unchanged). Session 14 ran it again from the shipped weights (2,103 steps
#     in 2,300 s at 2 threads, its own 6,144-clip latent cache) and evaluated it: not shipped (docs/training-notes.md)
mkdir -p runs/tok_pxdec && ln -sf ../tok_px/latents_17f.safetensors runs/tok_pxdec/latents_17f.safetensors
python -m flexvid.train_tokenizer --vae assets/tokenizer --init assets/tokenizer --freeze-encoder --out-dir runs/tok_pxdec \
    --latent-cache 6144 --steps 100000 --time-limit 2300 --threads 2 --no-bf16 --ema-decay 0.995 --lr 2e-4 --min-lr 2e-5 \
    --warmup 20 --ckpt-every 100 --eval-every 0 --set pixel_weight=30.0 pixel_clips=4 time_mean=1.0 time_std=1.6
python scripts/compare_tokenizers.py runs/tok_pxdec/export assets/tokenizer --n 128 --ks 1 2 4 32 --guidance 3

# Session 14 (shipped): best-of-N sampling for the generators with a learned reranker (flexvid/rerank.py).
# Its perception network: the shapes teacher trained on clean, blurred and noisy renders (18 minutes at 2
# threads, stopped by the time limit at step 1,327); its prompt reader: linear heads on MiniLM sentence
# embeddings of training captions and their rewordings (17 s). Then the best-of check on validation
# prompts and, on test prompts, eval-generator's best_of section.
python -m flexvid.teacher --out-dir runs/scorer --frames 17 --augment --steps 2000 --time-limit 1100 --threads 2 \
    --eval-every 250 --ckpt-every 250
python -m flexvid.rerank --teacher runs/scorer/export --out assets/reranker
cp runs/scorer/log.jsonl assets/reranker/train_log_teacher.jsonl
python scripts/best_of_val.py --n 48 --candidates 4
flexvid eval-generator --n 96 --ks 32 --skip-long --skip-paraphrase --skip-condition-probe --best-of 4 --out eval/generator_best_of

# Session 15 (tried, not shipped): rejection-sampling fine-tuning on the reranker's picks (flexvid/select_samples.py).
# The token cache of 8,192 17-frame, 128 validation and 512 81-frame clips, with word-piece and reworded caption
# embeddings, was built once (34 minutes, sharing the cores) and linked into each run folder.
flexvid select-samples --cond class --n 768 --candidates 4 --out runs/sel/class.safetensors --threads 1   # 40 min
flexvid select-samples --cond class --n 768 --candidates 1 --out runs/sel/class-plain.safetensors --threads 1  # control
flexvid select-samples --cond text --n 384 --candidates 4 --out runs/sel/text.safetensors --threads 1     # 19 min
for run in "class runs/sel/class.safetensors gen-class-ft" "class runs/sel/class-plain.safetensors gen-class-ctrl" \
           "text runs/sel/text.safetensors gen-text-ft"; do
set -- $run
extra=""; [ "$1" = text ] && extra="--caption-variants 4 --p-variant 0.5 --text-tokens 24"
python -m flexvid.train_generator --cond $1 --init assets/generator-$1 --selected $2 --p-selected 0.5 \
    --out-dir runs/$3 --clips 8192 --long-clips 512 --val-clips 128 --max-tokens 672 --steps 1000 --lr 2e-4 \
    --min-lr 2e-5 --warmup 50 --ema-decay 0.995 --threads 1 --eval-every 500 --probe-clips 0 --ckpt-every 250 \
    --no-bf16 $extra
done
flexvid eval-generator --text-model none --class-model runs/gen-class-ft/export --n 96 --ks 4 32 --skip-long \
    --skip-paraphrase --skip-condition-probe --best-of 0 --out runs/eval/class-ft   # and the others likewise

# Session 15 (shipped): the reranker's prompt reader as attention over word pieces; the perception network
# kept bit for bit from the session-14 reranker (2.7 minutes at 2 threads). Then the test prompts again.
cp -r assets/reranker runs/reranker-linear
python -m flexvid.rerank --teacher runs/reranker-linear --out assets/reranker   # --reader attention (default)
flexvid eval-generator --class-model none --n 96 --ks 32 --skip-long --skip-paraphrase --skip-condition-probe \
    --best-of 4 --out eval/text_best_of_4   # -> assets/reranker/eval_best_of_4_attention.json (and --best-of 8)
python scripts/best_of_val.py --n 48 --candidates 4 --reranker assets/reranker
python scripts/paraphrase_best_of.py --n 48 --rerankers runs/reranker-linear assets/reranker

# Session 20 (tried, not shipped; docs/training-notes.md): a cool-down of both generators on fresh clips (train-generator --first-clip: clips 65,536 ...
# 90,111 of the training split and 512 81-frame ones that no earlier round saw; session 18's class
# cool-down on the first 16,384 clips, seen many times before, had lost probe score). The cache of 24,576
# 17-frame, 128 validation and 512 81-frame clips with word-piece and reworded caption embeddings was built
# once at 2 threads (2,865 s; the same token_cache call train-generator makes, scripted so that it could use
# both cores) and hard-linked into the class run's folder. Each run: 2,200 steps from the shipped weights,
# lr 1e-4 -> 1e-6 (the rounds above ended at 1e-4), one thread each, side by side (started as 3,000 steps
# and resumed from its step-250 checkpoint with --steps 2200 to fit the session).
mkdir -p runs/gen-class-fresh && ln runs/gen-text-fresh/tokens.safetensors runs/gen-class-fresh/
for cond in text class; do
extra=""; [ $cond = text ] && extra="--caption-variants 4 --p-variant 0.5 --text-tokens 24"
python -m flexvid.train_generator --cond $cond --tokenizer assets/tokenizer --out-dir runs/gen-$cond-fresh \
    --init assets/generator-$cond --clips 24576 --long-clips 512 --first-clip 65536 --max-tokens 672 \
    --steps 2200 --lr 1e-4 --min-lr 1e-6 --warmup 50 --threads 1 --eval-every 1100 --probe-clips 8 $extra &
done; wait
flexvid eval-generator --class-model none --text-model runs/gen-text-fresh/export --n 96 --ks 4 32 --skip-long \
    --skip-condition-probe --best-of 0 --temperature 0.7 --guidance 5 --decode-guidance 2 --out runs/eval/text-fresh
flexvid eval-generator --text-model none --class-model runs/gen-class-fresh/export --n 96 --ks 4 32 --skip-long \
    --skip-paraphrase --skip-condition-probe --best-of 0 --temperature 0.7 --guidance 3 --decode-guidance 2 \
    --out runs/eval/class-fresh

# Session 21 (shipped): the first lent GPU (one H200). `bash scripts/device_train.sh` (carry .whl) trained the
# tokenizer's whole resampler from the embedded one for 167 s (2,141 steps of 256 clips, logit-normal(2, 1.2),
# lr 5e-4 -> 5e-5, EMA 0.999, bf16 autocast; a latent cache of 65,536 training clips) and its decoder side
# alone for 40 s (795 steps, logit-normal(1.5, 1.5), lr 3e-4 -> 3e-5); the class-generator stage ran out of
# the call's time (its token cache, since moved beside the decoder stage). Its logs sit beside the weights
# (train_log_tokenizer_gpu_a.jsonl, _b). The generators were not retrained: their grids were measured through
# the new tokenizer (docs/training-notes.md) and each config records it under measured_with:
python scripts/compare_tokenizers.py assets/tokenizer runs/device/tokenizer --n 64 --ks 1 2 4 8 32 --guidance 3
flexvid eval-tokenizer --model runs/device/tokenizer --n 64 --n-long 2 --out runs/eval/tok-new
for m in class text; do other=$([ $m = class ] && echo text || echo class)
flexvid eval-generator --$m-model assets/generator-$m --$other-model none --tokenizer runs/device/tokenizer \
    --n 96 --ks 4 32 --skip-long --skip-paraphrase --skip-condition-probe --best-of 0 --dtype fp32 \
    --out runs/eval/old-$m-newtok &
done; wait

# Sessions 25-26 (shipped, docs/training-notes.md): the text generator retrained on the shipped tokenizer's tokens on the
# CPU (2 threads, bf16 autocast where the CPU has native bf16), in two rounds on fresh clips; each export
# keeps the init's sampler defaults (round 1 was measured with the shipped ones copied in, before --init
# carried them).
flexvid train-generator --cond text --tokenizer assets/tokenizer --init assets/generator-text \
    --clips 8192 --long-clips 384 --max-tokens 672 --caption-variants 4 --p-variant 0.5 --text-tokens 24 \
    --time-limit 3300 --lr 5e-4 --min-lr 5e-5 --warmup 100 --threads 2 --out-dir runs/s25/text
flexvid train-generator --cond text --tokenizer assets/tokenizer --init runs/s25/text/export \
    --first-clip 8192 --clips 16384 --long-clips 384 --max-tokens 672 --caption-variants 4 --p-variant 0.5 \
    --text-tokens 24 --steps 12000 --time-limit 2900 --lr 3e-4 --min-lr 3e-5 --warmup 100 --threads 2 \
    --out-dir runs/s25/text2
for m in assets/generator-text runs/s25/text2/export; do
flexvid eval-generator --class-model none --text-model $m --n 384 --ks 4 32 --skip-long --skip-paraphrase \
    --skip-condition-probe --best-of 0 --dtype fp32 --seed 0 --out runs/eval/text-384-$(basename $(dirname $m))
done
cp runs/s25/text2/export/{model.safetensors,config.json} assets/generator-text/
flexvid eval-generator --n 32 --n-long 8 --out runs/eval/generator && cp runs/eval/generator/eval.json assets/generator-text/
# Session 29 (tried, not shipped; docs/training-notes.md): the VAE's decoder fitted again to the resampler's own
# latents, now that the GPU runs changed the resampler's decoder side (session 10 fitted it to the CPU one). 1,024
# cached clips at K (6 minutes), 700 steps in 1,078 s. On 64 validation clips at k = 1 / 2 / 4 / 8 / 32: PSNR
# 17.98 / 20.33 / 23.72 / 25.68 / 27.38 -> 17.90 / 20.26 / 23.67 / 25.65 / 27.47 dB, all four 0.88 -> 0.84 at K.
python -m flexvid.train_vae --init assets/tokenizer --tokenizer assets/tokenizer --freeze-encoder --resampled 1024 \
    --out-dir runs/s29/vae_resampled --steps 700 --lr 1e-4 --min-lr 1e-5 --warmup 20 --ema-decay 0.99 --ckpt-every 100 \
    --eval-every 0 --threads 2 --no-bf16 --latent-noise 0.4 --time-limit 2700
python - <<'PY'
from flexvid.pipeline import VideoFlexTok
from flexvid.train_tokenizer import load_vae
tok = VideoFlexTok.from_pretrained("assets/tokenizer", device="cpu")
VideoFlexTok(load_vae("runs/s29/vae_resampled/export"), tok.tokenizer, device="cpu").save_pretrained("runs/s29/tok_a", half=True)
PY
python scripts/compare_tokenizers.py assets/tokenizer runs/s29/tok_a --n 64 --ks 1 2 4 8 32 --guidance 3
# Session 29 (tried, not shipped): round 4 again with batches of 64 (same fresh clips), 1,700 steps in 2,724 s.
# Paired 384-prompt evaluation, all four right at k = 4 / 32: 0.57 / 0.67 -> 0.56 / 0.66; two-object prompts
# 0.32 -> 0.44 at K, one-object 0.79 -> 0.75.
flexvid train-generator --cond text --tokenizer assets/tokenizer --init assets/generator-text \
    --first-clip 40960 --clips 16384 --long-clips 384 --max-tokens 672 --caption-variants 4 --p-variant 0.5 \
    --text-tokens 24 --steps 12000 --batch-size 64 --time-limit 2700 --lr 2e-4 --min-lr 2e-5 --warmup 100 \
    --threads 2 --out-dir runs/s29/text4b
flexvid eval-generator --class-model none --text-model runs/s29/text4b/export --n 384 --ks 4 32 --skip-long \
    --skip-paraphrase --skip-condition-probe --best-of 0 --dtype fp32 --seed 0 --out runs/s29/cmp384_text4b

# Session 27 (shipped, docs/training-notes.md): a third text round from round 2's weights on 16,384 more fresh clips, smaller
# steps; 4,325 steps in 2,706 s after a 14-minute token cache. The paired 384-prompt evaluation against round 2
# (runs/eval/text-384-export above, the same seeds): all four right at k = 4 / 32 0.57 / 0.62 -> 0.57 / 0.67.
flexvid train-generator --cond text --tokenizer assets/tokenizer --init runs/s25/text2/export \
    --first-clip 24576 --clips 16384 --long-clips 384 --max-tokens 672 --caption-variants 4 --p-variant 0.5 \
    --text-tokens 24 --steps 12000 --time-limit 2700 --lr 2e-4 --min-lr 2e-5 --warmup 100 --threads 2 \
    --out-dir runs/s27/text3
flexvid eval-generator --class-model none --text-model runs/s27/text3/export --n 384 --ks 4 32 --skip-long \
    --skip-paraphrase --skip-condition-probe --best-of 0 --dtype fp32 --seed 0 --out runs/eval/text-384-round3
cp runs/s27/text3/export/{model.safetensors,config.json} assets/generator-text/
# Session 27 (tried, not shipped): a CPU round of the class generator (session 22's GPU retrain) on the same
# fresh clips, its token cache copied from the text round's (a superset); 4,947 steps in 2,403 s. Validation loss
# stayed flat (k = 32 1.944 at step 500 -> 1.940 at 4,000) and the paired 384-label evaluation fell: colour, shape
# and motion right at k = 4 / 32 0.47 / 0.52 (shipped) -> 0.43 / 0.48.
mkdir -p runs/s27/class3 && cp runs/s27/text3/tokens.safetensors runs/s27/class3/
flexvid train-generator --cond class --tokenizer assets/tokenizer --init assets/generator-class \
    --first-clip 24576 --clips 16384 --long-clips 384 --max-tokens 672 --steps 12000 --time-limit 2400 \
    --lr 1e-4 --min-lr 1e-5 --warmup 100 --threads 2 --out-dir runs/s27/class3
for m in assets/generator-class runs/s27/class3/export; do
flexvid eval-generator --text-model none --class-model $m --n 384 --ks 4 32 --skip-long --skip-paraphrase \
    --skip-condition-probe --best-of 0 --dtype fp32 --seed 0 --out runs/eval/class-384-$(basename $(dirname $m))
done
# Session 28 (tried, not shipped; issue note): round 4 from the shipped round-3 weights on 16,384 more fresh clips,
# 5,070 steps in 3,303 s. Paired 384-prompt evaluation, all four right at k = 4 / 32: 0.57 / 0.67 -> 0.59 / 0.68 (noise).
flexvid train-generator --cond text --tokenizer assets/tokenizer --init assets/generator-text \
    --first-clip 40960 --clips 16384 --long-clips 384 --max-tokens 672 --caption-variants 4 --p-variant 0.5 \
    --text-tokens 24 --steps 12000 --time-limit 3300 --lr 1.5e-4 --min-lr 1.5e-5 --warmup 100 --threads 2 \
    --out-dir runs/s28/text4
