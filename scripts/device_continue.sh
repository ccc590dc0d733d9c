#!/usr/bin/env bash
# A second, shorter call on the same warm GPU machine after scripts/device_train.sh (session 22: 263 s of
# the 393 s of device time the first call left): the class generator and the tokenizer's decoder side
# trained on from that call's exports, side by side, with a fresh, lower learning-rate schedule, from the
# caches it left in $WORK (a warm machine keeps /tmp between calls; a fresh one has none, and this stops).
# The tokens stay the embedded tokenizer's (--freeze-encoder), so the token cache device_train.sh brought
# back still serves scripts/after_device.sh.
#   run  command: "bash scripts/device_continue.sh"  carry: [".whl"]  timeout_s: 330
# What comes back: tokenizer.safetensors (fp16 resampler), tokenizer_config.json, generator-class.safetensors,
# generator-class_config.json, and both training logs (tok_c_log.jsonl, gen_c_log.jsonl).
set -uo pipefail
cd "$(dirname "$0")/.."
W=${WORK:-/tmp/flexvid-device}; OUT=${OUT:-out}; T=${T:-240}; DEVICE=${DEVICE:-cuda}
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1 PYTHONPATH=/tmp/site:$PWD
ls "$W" "$W/tok_b/export" "$W/gen_class/export" || { echo "no device_train.sh run in $W: nothing to continue"; exit 3; }
mkdir -p "$OUT" "$W/tok_c" "$W/gen_c"
ln -sf "$W/tok_b/latents_17f.safetensors" "$W/tok_c/"; ln -sf "$W/gen_class/tokens.safetensors" "$W/gen_c/"
c=(--device "$DEVICE" --eval-every 0 --log-every 25 --ckpt-every 500 --steps 1000000 --time-limit "$T")
timeout $((T + 50)) python3 -m flexvid.train_tokenizer --vae assets/tokenizer --init "$W/tok_b/export" --freeze-encoder \
  --out-dir "$W/tok_c" --latent-cache 65536 --batch-size 256 --lr 1.5e-4 --min-lr 1.5e-5 --warmup 20 --ema-decay 0.999 \
  "${c[@]}" --set time_mean=1.5 time_std=1.5 > "$W/tok_c.log" 2>&1 &
timeout $((T + 50)) python3 -m flexvid.train_generator --cond class --tokenizer assets/tokenizer --init "$W/gen_class/export" \
  --out-dir "$W/gen_c" --clips 65536 --long-clips 1536 --max-tokens 672 --probe-clips 0 --batch-size 128 --lr 2e-4 \
  --min-lr 2e-5 --warmup 20 "${c[@]}" > "$W/gen_c.log" 2>&1 &
wait
grep "time limit" "$W/tok_c.log" "$W/gen_c.log"
python3 -c "import sys; from flexvid.pipeline import VideoFlexTok
VideoFlexTok.from_pretrained(sys.argv[1], device='cpu').save_pretrained(sys.argv[2], half=True)" "$W/tok_c/export" "$W/tok_c_half"
cp "$W/tok_c_half/tokenizer.safetensors" "$OUT/tokenizer.safetensors"
cp "$W/tok_c_half/config.json" "$OUT/tokenizer_config.json"
cp "$W/gen_c/export/model.safetensors" "$OUT/generator-class.safetensors"
cp "$W/gen_c/export/config.json" "$OUT/generator-class_config.json"
cp "$W/tok_c/log.jsonl" "$OUT/tok_c_log.jsonl"; cp "$W/gen_c/log.jsonl" "$OUT/gen_c_log.jsonl"
