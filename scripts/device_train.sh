#!/usr/bin/env bash
# One lent GPU's work, in one call of the `device` tool (10 minutes at most a call, 15 minutes of device
# time a session, the machine's start included), ordered so that what ends first is what is worth most,
# and every result copied under $OUT as soon as it exists (a call that runs out of time still brings back
# what was done):
#   1. the CUDA checks (tests/test_cuda.py: tokens, reconstruction, KV cache and a training step in bf16
#      against the CPU in fp32) and the benchmarks on the GPU (bench_tokenizer, bench_generator);
#   2. the tokenizer trained further from the embedded one: the whole resampler for TOK_A seconds at high
#      noise (logit-normal(2, 1.2)), then its decoder side alone for TOK_B seconds at logit-normal(1.5, 1.5) (low times
#      sharpen edges, high ones teach what a short prefix says: README, session 12);
#      the schedules are fitted to the seconds (--time-limit); the comparison with the shipped one is the
#      CPU's (scripts/after_device.sh), so that the GPU's seconds go to training;
#   3. the class generator trained again on the new tokens (--init from the embedded one) for the seconds
#      left (GEN at most, GEN_MIN at least),
#      and its token cache brought back: the text generator needs the packaged text model, which cannot
#      travel (88 MB; a call carries 64 MiB with the repo), so scripts/after_device.sh trains it on the CPU
#      from that cache.
# Here first (the GPU image lacks these; `.whl/` is ignored by git):  bash scripts/device_wheels.sh
# Then, with the device tool:   run  command: "bash scripts/device_train.sh"  carry: [".whl"]  timeout_s: 600
# What comes back (4 files, under the tool's limits of 8 files and 16 MB each): tokenizer.safetensors,
# generator-class.safetensors, tokens.safetensors.xz and results.tgz (configs, logs, test output, benchmark
# JSON). scripts/after_device.sh DIR unpacks them and does the rest on the CPU.
# Dry run on the CPU (minutes; no CUDA checks):  OUT=/tmp/dev SMOKE=1 DEVICE=cpu bash scripts/device_train.sh
set -uo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-out}
TOK_A=${TOK_A:-180}       # seconds: whole resampler
TOK_B=${TOK_B:-40}        # seconds: its decoder side alone
GEN=${GEN:-300}           # seconds at most: the class generator (it takes what the stages before it leave)
GEN_MIN=${GEN_MIN:-110}   # seconds the tokenizer stages leave it at least
DEADLINE=${DEADLINE:-560} # seconds from the start: each stage's budget shrinks to end by then (call limit 600)
CLIPS=${CLIPS:-65536}     # training clips cached (latents for the tokenizer, tokens for the generators)
GEN_CLIPS=${GEN_CLIPS:-32768}  # 17-frame clips whose tokens the generators train on
LONG=${LONG:-1536}        # 81-frame clips for the generators
BATCH=${BATCH:-256}       # tokenizer batch (the CPU runs used 16)
GEN_BATCH=${GEN_BATCH:-128}
ATTR=${ATTR:-0}           # --set attr_weight for the whole-resampler stage (README, "Tried in session 11")
PIXEL=${PIXEL:-0}         # --set pixel_weight for the whole-resampler stage (README, "Tried in session 13")
PIXEL_CLIPS=${PIXEL_CLIPS:-32}  # clips of each batch whose error is also measured in pixels
THREADS=0
if [ -n "${SMOKE:-}" ]; then
  TOK_A=4; TOK_B=3; GEN=3; GEN_MIN=3; CLIPS=64; GEN_CLIPS=64; LONG=4; BATCH=4; GEN_BATCH=4; THREADS=2
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
CACHE_PID=
log() { echo "[+${SECONDS}s] $*" | tee -a "$R/device.log"; }
pack() { tar -czf "$OUT/results.tgz.tmp" -C "$W" results && mv "$OUT/results.tgz.tmp" "$OUT/results.tgz"; }
# a stage's seconds: what it asks, or less, so that the stages after it (reserve seconds) end by DEADLINE
budget() { local left=$((DEADLINE - SECONDS - $2)); [ "$left" -ge 5 ] || left=5; if [ "$1" -lt "$left" ]; then echo "$1"; else echo "$left"; fi; }
# a tokenizer folder saved again with its resampler in fp16, as the embedded one is shipped (12 MB, not 24)
tokenizer_half() { python3 -c "import sys; from flexvid.pipeline import VideoFlexTok
VideoFlexTok.from_pretrained(sys.argv[1], device='cpu').save_pretrained(sys.argv[2], half=True)" "$1" "$2"; }
common=(--device "$DEVICE" --threads "$THREADS" --eval-every 0 --ckpt-every 1000000 --log-every 25)

log "start: device $DEVICE, budgets tokenizer ${TOK_A}+${TOK_B} s, class generator ${GEN} s, $CLIPS clips"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || true
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } >> "$R/device.log"

# 1. CUDA checks and GPU timings
if [ -z "${SMOKE:-}" ]; then
  FLEXVID_TEST_DEVICE=$DEVICE timeout 90 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py > "$R/cuda_tests.log" 2>&1
  log "CUDA checks: $(tail -n 1 "$R/cuda_tests.log")"
  timeout 45 python3 benchmarks/bench_tokenizer.py --device "$DEVICE" --json "$R/bench_tokenizer_$DEVICE.json" \
    > "$R/bench_tokenizer.log" 2>&1; log "bench_tokenizer: rc $?"
  timeout 45 python3 benchmarks/bench_generator.py --device "$DEVICE" --model assets/generator-class \
    --json "$R/bench_generator_$DEVICE.json" > "$R/bench_generator.log" 2>&1; log "bench_generator: rc $?"
  pack
fi

# 2. the tokenizer: whole resampler, then its decoder side alone
T_A=$(budget "$TOK_A" $((TOK_B + GEN_MIN + 150)))
log "tokenizer, whole resampler: $T_A s"
python3 -m flexvid.train_tokenizer --vae assets/tokenizer --init assets/tokenizer --out-dir "$W/tok_a" \
  --latent-cache "$CLIPS" --batch-size "$BATCH" --steps 1000000 --time-limit "$T_A" --lr 5e-4 --min-lr 5e-5 \
  --warmup 100 --ema-decay 0.999 "${common[@]}" --set time_mean=2.0 time_std=1.2 attr_weight="$ATTR" \
  pixel_weight="$PIXEL" pixel_clips="$PIXEL_CLIPS" > "$R/tok_a.log" 2>&1
log "tokenizer, whole resampler: $(grep -c '"loss"' "$W/tok_a/log.jsonl" 2>/dev/null) log lines, $(grep -m1 'time limit' "$R/tok_a.log")"
cp "$W/tok_a/log.jsonl" "$R/tok_a_log.jsonl" 2>/dev/null
TOK=$W/tok_a/export
if [ -f "$TOK/tokenizer.safetensors" ]; then
  T_B=$(budget "$TOK_B" $((GEN_MIN + 90)))
  # The decoder-side stage leaves every token as it is (--freeze-encoder), so the class generator's token
  # cache is built from this stage's export (in fp16, as shipped: the same fingerprint as the final one)
  # while that stage trains, off the critical path: in session 21 it did not finish in 224 s after it.
  tokenizer_half "$TOK" "$W/tok_a_half"
  mkdir -p "$W/gen_class"
  # bounded: whatever it has not written by then, the class stage is skipped rather than waiting on it
  CACHE_T=$((DEADLINE - SECONDS - GEN_MIN - 80)); [ "$CACHE_T" -ge 30 ] || CACHE_T=30
  timeout "$CACHE_T" python3 -c "import sys, torch; from flexvid.pipeline import VideoFlexTok
from flexvid.train_generator import token_cache, training_groups; from flexvid.training import bf16_native
dev = sys.argv[5]  # the dtype rule train_generator uses, so that its run takes these tokens as they are
pipe = VideoFlexTok.from_pretrained(sys.argv[1], device=dev, dtype='bf16' if bf16_native(torch.device(dev)) else 'fp32')
token_cache(sys.argv[2], pipe, training_groups(int(sys.argv[3]), int(sys.argv[4]), 128))
print('token cache written', flush=True)" "$W/tok_a_half" "$W/gen_class/tokens.safetensors" "$GEN_CLIPS" "$LONG" "$DEVICE" \
    > "$R/gen_cache.log" 2>&1 &
  CACHE_PID=$!
  mkdir -p "$W/tok_b" && ln -sf "$W/tok_a/latents_17f.safetensors" "$W/tok_b/latents_17f.safetensors"
  python3 -m flexvid.train_tokenizer --vae assets/tokenizer --init "$TOK" --freeze-encoder --out-dir "$W/tok_b" \
    --latent-cache "$CLIPS" --batch-size "$BATCH" --steps 1000000 --time-limit "$T_B" --lr 3e-4 --min-lr 3e-5 \
    --warmup 50 --ema-decay 0.999 "${common[@]}" --set time_mean=1.5 time_std=1.5 > "$R/tok_b.log" 2>&1
  log "tokenizer, decoder side: $(grep -m1 'time limit' "$R/tok_b.log")"
  cp "$W/tok_b/log.jsonl" "$R/tok_b_log.jsonl" 2>/dev/null
  [ -f "$W/tok_b/export/tokenizer.safetensors" ] && TOK=$W/tok_b/export
  # shipped in fp16, as the embedded one is (12 MB, not 24); the generator learns the tokens of these weights
  tokenizer_half "$TOK" "$W/tok_ship" && TOK=$W/tok_ship
  cp "$TOK/tokenizer.safetensors" "$OUT/tokenizer.safetensors.tmp" && mv "$OUT/tokenizer.safetensors.tmp" "$OUT/tokenizer.safetensors"
  cp "$TOK/config.json" "$R/tokenizer_config.json"
  pack
else
  log "no tokenizer export: see tok_a.log"; pack; exit 1
fi

# 3. the class generator on the new tokens; its token cache serves the text generator (after_device.sh)
[ -n "$CACHE_PID" ] && { wait "$CACHE_PID"; log "generator token cache: rc $?, $(tail -n 1 "$R/gen_cache.log")"; }
if [ ! -f "$W/gen_class/tokens.safetensors" ]; then
  log "no generator token cache: the class stage is skipped"; pack; exit 0
fi
T_G=$(budget "$GEN" 80)   # reserve: its token cache (before the clock starts), export, compression
log "class generator: $T_G s"
python3 -m flexvid.train_generator --cond class --tokenizer "$TOK" --init assets/generator-class \
  --out-dir "$W/gen_class" --clips "$GEN_CLIPS" --long-clips "$LONG" --max-tokens 672 --probe-clips 0 \
  --batch-size "$GEN_BATCH" --steps 1000000 --time-limit "$T_G" --lr 5e-4 --min-lr 5e-5 --warmup 100 \
  "${common[@]}" > "$R/gen_class.log" 2>&1
log "class generator: $(grep -m1 'time limit' "$R/gen_class.log")"
cp "$W/gen_class/log.jsonl" "$R/gen_class_log.jsonl" 2>/dev/null
if [ -f "$W/gen_class/export/model.safetensors" ]; then
  cp "$W/gen_class/export/model.safetensors" "$OUT/generator-class.safetensors"
  cp "$W/gen_class/export/config.json" "$R/generator-class_config.json"
fi
if [ -f "$W/gen_class/tokens.safetensors" ]; then
  # files come back up to 16 MB each: compressed, and cut in 15 MB parts when it is bigger (cat joins them)
  python3 -c "import lzma, shutil, sys; shutil.copyfileobj(open(sys.argv[1], 'rb'), lzma.open(sys.argv[2], 'wb', preset=3))" \
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
