#!/usr/bin/env bash
# One lent GPU's work, in one call of the `device` tool (10 minutes at most a call, 15 minutes of device
# time a session, the machine's start included). Every result is copied under $OUT as soon as it exists
# (a call that runs out of time still brings back what was done).
#   1. the CUDA checks (tests/test_cuda.py: tokens, reconstruction, KV cache and a training step in bf16
#      against the CPU in fp32); BENCH=1 adds the GPU benchmarks (session 21 ran them);
#   2. optional (TOK_A seconds, default 0): the whole resampler trained further from the embedded one
#      (logit-normal(2, 1.2) and the pixel loss on 4 clips of each batch; TOK_SET changes its config overrides). It changes the tokens, so the generators then start over on new tokens
#      (session 21: 167 s gave +0.9 dB but left the generators on old tokens). Its fp16 export is BASE;
#      without it BASE is assets/tokenizer and every token stays as shipped;
#   3. the latent cache of CLIPS training clips (BASE's VAE) and, from those latents, the generators'
#      token cache (the tokenizer's encoder alone: no second rendering and VAE pass; session 21's cache
#      through the full pipeline in batches of 16 had not finished after 224 s); the 81-frame and the
#      validation clips through the pipeline in batches of 256, bounded by a timeout (the long clips are
#      left out if they do not make it);
#   4. side by side on the GPU until DEADLINE (both are launch-bound small networks, so two processes
#      overlap): the class generator trained again on BASE's tokens (--init the embedded one), and BASE's
#      decoder side alone (--freeze-encoder: the tokens and fingerprint stay BASE's) at logit-normal(1.5, 1.5).
#      Both export at checkpoints and run under a hard timeout as well as their --time-limit (their step
#      time is probed while the other runs).
# The text generator needs the packaged text model, which cannot travel (88 MB; a call carries 64 MiB
# with the repo), so scripts/after_device.sh trains it on the CPU from the token cache brought back.
# Here first (the GPU image lacks these; `.whl/` is ignored by git):  bash scripts/device_wheels.sh
# Then, with the device tool:   run  command: "bash scripts/device_train.sh"  carry: [".whl"]  timeout_s: 600
# What comes back (at most 8 files of at most 16 MB): tokenizer.safetensors, generator-class.safetensors,
# tokens.safetensors.xz (cut in 15 MB parts .a, .b, ... when bigger; cat joins them) and results.tgz
# (configs, logs, test output). scripts/after_device.sh DIR unpacks them and does the rest on the CPU.
# Dry run on the CPU (minutes; no CUDA checks):  OUT=/tmp/dev SMOKE=1 DEVICE=cpu bash scripts/device_train.sh
set -uo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-out}
TOK_A=${TOK_A:-0}         # seconds: whole resampler (0: the tokens stay the embedded tokenizer's)
TOK_SET=${TOK_SET-time_mean=2.0 time_std=1.2 pixel_weight=30 pixel_clips=4}  # its config overrides (--set
                          # KEY=VALUE ...); the pixel term is what session 35's CPU runs support (it and its control
                          # in docs/training-notes.md); TOK_SET="time_mean=2.0 time_std=1.2" leaves it out
read -r -a TOK_SET_ARGS <<< "$TOK_SET"
DEADLINE=${DEADLINE:-520} # seconds from the start by which the side-by-side stage ends (call limit 600)
CLIPS=${CLIPS:-65536}     # 17-frame training clips: latents for the tokenizer, tokens for the generators
LONG=${LONG:-1536}        # 81-frame clips for the generators
BATCH=${BATCH:-256}       # tokenizer batch (the CPU runs used 16)
GEN_BATCH=${GEN_BATCH:-128}
GEN_LR=${GEN_LR:-5e-4}
THREADS=0
if [ -n "${SMOKE:-}" ]; then
  CLIPS=64; LONG=4; BATCH=4; GEN_BATCH=4; THREADS=1; DEADLINE=${DEADLINE_SMOKE:-330}
  [ "$TOK_A" -gt 0 ] && TOK_A=4
fi
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1   # no progress bars in the logs
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PYTHONPATH
fi
W=${WORK:-/tmp/flexvid-device}
mkdir -p "$OUT" "$W/results"
R=$W/results
log() { echo "[+${SECONDS}s] $*" | tee -a "$R/device.log"; }
pack() { tar -czf "$OUT/results.tgz.tmp" -C "$W" results && mv "$OUT/results.tgz.tmp" "$OUT/results.tgz"; }
# a tokenizer folder saved again with its resampler in fp16, as the embedded one is shipped (12 MB, not 24)
tokenizer_half() { python3 -c "import sys; from flexvid.pipeline import VideoFlexTok
VideoFlexTok.from_pretrained(sys.argv[1], device='cpu').save_pretrained(sys.argv[2], half=True)" "$1" "$2"; }
fp() { python3 -c "import sys; from flexvid.pipeline import VideoFlexTok; from flexvid.train_generator import fingerprint
print(fingerprint(VideoFlexTok.from_pretrained(sys.argv[1], device='cpu')))" "$1" 2>/dev/null | tail -n 1; }
common=(--device "$DEVICE" --threads "$THREADS" --eval-every 0 --log-every 25)

log "start: device $DEVICE, whole resampler ${TOK_A} s ($TOK_SET), side-by-side stage until +${DEADLINE} s, $CLIPS clips"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || true; df -h /dev/shm 2>&1; nproc
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } >> "$R/device.log"

# 1. CUDA checks (and, with BENCH=1, GPU timings)
if [ -z "${SMOKE:-}" ]; then
  FLEXVID_TEST_DEVICE=$DEVICE timeout 90 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py > "$R/cuda_tests.log" 2>&1
  log "CUDA checks: $(tail -n 1 "$R/cuda_tests.log")"
  if [ -n "${BENCH:-}" ]; then
    timeout 45 python3 benchmarks/bench_tokenizer.py --device "$DEVICE" --json "$R/bench_tokenizer_$DEVICE.json" \
      > "$R/bench_tokenizer.log" 2>&1; log "bench_tokenizer: rc $?"
  fi
  pack
fi

# 2. optional: the whole resampler (new tokens)
BASE=assets/tokenizer
mkdir -p "$W/tok_b" "$W/gen_class"
if [ "$TOK_A" -gt 0 ]; then
  log "tokenizer, whole resampler: $TOK_A s"
  python3 -m flexvid.train_tokenizer --vae assets/tokenizer --init assets/tokenizer --out-dir "$W/tok_a" \
    --latent-cache "$CLIPS" --batch-size "$BATCH" --steps 1000000 --time-limit "$TOK_A" --lr 5e-4 --min-lr 5e-5 \
    --warmup 100 --ema-decay 0.999 "${common[@]}" --ckpt-every 1000000 --set "${TOK_SET_ARGS[@]}" \
    > "$R/tok_a.log" 2>&1
  log "tokenizer, whole resampler: $(grep -m1 'time limit' "$R/tok_a.log")"
  cp "$W/tok_a/log.jsonl" "$R/tok_a_log.jsonl" 2>/dev/null
  if [ -f "$W/tok_a/export/tokenizer.safetensors" ]; then
    tokenizer_half "$W/tok_a/export" "$W/tok_a_half" && BASE=$W/tok_a_half
    ln -sf "$W/tok_a/latents_17f.safetensors" "$W/tok_b/latents_17f.safetensors"
  else
    log "no export of the whole-resampler stage: going on from the embedded tokenizer"
  fi
fi
log "base tokenizer $BASE, fingerprint $(fp "$BASE")"

# 3. the latent cache, then the generators' token cache: training clips from those latents; validation
#    clips, then the long ones, through the pipeline (each group written as soon as it is made)
timeout $((DEADLINE / 3)) python3 -c "import sys, torch
from flexvid.pipeline import VideoFlexTok
from flexvid.train_generator import token_cache, training_groups
from flexvid.train_tokenizer import latent_cache
from flexvid.training import bf16_native
base, out, clips, long_clips, dev = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
# the dtype rule train_generator uses, so that its run takes these tokens as they are
pipe = VideoFlexTok.from_pretrained(base, device=dev, dtype='bf16' if bf16_native(torch.device(dev)) else 'fp32')
pipe.max_batch = 256
z = latent_cache(pipe.vae, out + '/tok_b/latents_17f.safetensors', clips, 17)
print('latent cache', tuple(z.shape), flush=True)
groups = training_groups(clips, long_clips, 128)
path = out + '/gen_class/tokens.safetensors'
token_cache(path, pipe, {g: groups[g] for g in ('train', 'val')}, latents={'train': z})
print('token cache written: train and val', flush=True)
token_cache(path, pipe, groups, latents={'train': z})
print('token cache written: train, val and long', flush=True)" "$BASE" "$W" "$CLIPS" "$LONG" "$DEVICE" > "$R/caches.log" 2>&1
log "caches: rc $?, $(grep -c written "$R/caches.log") token cache writes; $(grep tokenized "$R/caches.log" | tr '\n' ';')"
GEN_LONG=$LONG
grep -q "train, val and long" "$R/caches.log" || GEN_LONG=0
pack

# 4. side by side: the class generator and the decoder side, both ending by DEADLINE
LEFT=$((DEADLINE - SECONDS - 25)); [ "$LEFT" -ge 10 ] || LEFT=10   # 25 s: each one's start and export
log "side by side for $LEFT s (long clips for the generator: $GEN_LONG)"
if [ -f "$W/tok_b/latents_17f.safetensors" ]; then
  timeout $((LEFT + 30)) python3 -m flexvid.train_tokenizer --vae "$BASE" --init "$BASE" --freeze-encoder \
    --out-dir "$W/tok_b" --latent-cache "$CLIPS" --batch-size "$BATCH" --steps 1000000 --time-limit "$LEFT" \
    --lr 3e-4 --min-lr 3e-5 --warmup 50 --ema-decay 0.999 "${common[@]}" --ckpt-every 500 \
    --set time_mean=1.5 time_std=1.5 > "$R/tok_b.log" 2>&1 &
  TOK_PID=$!
fi
GEN_PID=
if [ -f "$W/gen_class/tokens.safetensors" ]; then
  timeout $((LEFT + 30)) python3 -m flexvid.train_generator --cond class --tokenizer "$BASE" \
    --init assets/generator-class --out-dir "$W/gen_class" --clips "$CLIPS" --long-clips "$GEN_LONG" \
    --max-tokens 672 --probe-clips 0 --batch-size "$GEN_BATCH" --steps 1000000 --time-limit "$LEFT" \
    --lr "$GEN_LR" --min-lr 5e-5 --warmup 100 "${common[@]}" --ckpt-every 500 > "$R/gen_class.log" 2>&1 &
  GEN_PID=$!
else
  log "no generator token cache: the class stage is skipped"
fi
[ -n "${TOK_PID:-}" ] && { wait "$TOK_PID"; log "decoder side: rc $?, $(grep -m1 'time limit' "$R/tok_b.log")"; }
[ -n "$GEN_PID" ] && { wait "$GEN_PID"; log "class generator: rc $?, $(grep -m1 'time limit' "$R/gen_class.log")"; }
cp "$W/tok_b/log.jsonl" "$R/tok_b_log.jsonl" 2>/dev/null
cp "$W/gen_class/log.jsonl" "$R/gen_class_log.jsonl" 2>/dev/null

# what comes back: the tokenizer (fp16 resampler, as shipped), the class generator, the token cache
TOK=$BASE
[ -f "$W/tok_b/export/tokenizer.safetensors" ] && TOK=$W/tok_b/export
tokenizer_half "$TOK" "$W/tok_ship" && TOK=$W/tok_ship
log "shipped tokenizer fingerprint $(fp "$TOK")"
cp "$TOK/tokenizer.safetensors" "$OUT/tokenizer.safetensors.tmp" && mv "$OUT/tokenizer.safetensors.tmp" "$OUT/tokenizer.safetensors"
cp "$TOK/config.json" "$R/tokenizer_config.json"
if [ -f "$W/gen_class/export/model.safetensors" ]; then
  cp "$W/gen_class/export/model.safetensors" "$OUT/generator-class.safetensors"
  cp "$W/gen_class/export/config.json" "$R/generator-class_config.json"
fi
pack
if [ -f "$W/gen_class/tokens.safetensors" ]; then
  # files come back up to 16 MB each: compressed, and cut in 15 MB parts when it is bigger (cat joins them)
  python3 -c "import lzma, shutil, sys; shutil.copyfileobj(open(sys.argv[1], 'rb'), lzma.open(sys.argv[2], 'wb', preset=1))" \
    "$W/gen_class/tokens.safetensors" "$W/tokens.safetensors.xz"
  if [ "$(stat -c %s "$W/tokens.safetensors.xz")" -gt 15728640 ]; then
    split -b 15M -a 1 "$W/tokens.safetensors.xz" "$OUT/tokens.safetensors.xz."
  else
    cp "$W/tokens.safetensors.xz" "$OUT/tokens.safetensors.xz"
  fi
  log "token cache: $(du -h "$W/tokens.safetensors.xz" | cut -f1) compressed"
fi
log "done"
nvidia-smi --query-gpu=name,memory.used,utilization.gpu --format=csv >> "$R/device.log" 2>&1
pack
