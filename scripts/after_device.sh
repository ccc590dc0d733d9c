#!/usr/bin/env bash
# After scripts/device_train.sh: unpack what the lent GPU brought back (the folder of the device tool's
# files: tokenizer.safetensors, generator-class.safetensors, tokens.safetensors.xz[.a, .b, ...],
# results.tgz) into runs/device/, train the text generator on the CPU from the class run's token cache
# (same tokenizer, same clips: only the caption embeddings are added), and evaluate all three on the test
# split. Nothing under assets/ changes unless SHIP=1 (after reading the numbers). A second folder, the
# files of scripts/device_continue.sh, replaces the tokenizer and the class generator with its own.
#   bash scripts/after_device.sh DIR [DIR2]          # STEPS=12000 text-generator steps (about 40 min at 2 threads)
#   SHIP=1 bash scripts/after_device.sh DIR [DIR2]   # the same, then copy the three models into assets/
# Dry run on a dry run's files:  SMOKE=1 bash scripts/after_device.sh /tmp/dev
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:?usage: after_device.sh DIR  (the folder of the files device_train.sh left under OUT)}
R=${RUN:-runs/device}
TAG=${TAG:-gpu2}  # names the training logs it ships (session 21's run shipped train_log_tokenizer_gpu_a/b.jsonl)
CLIPS=${CLIPS:-32768}; LONG=${LONG:-1536}; STEPS=${STEPS:-12000}; N=${N:-64}; NG=${NG:-32}
if [ -n "${SMOKE:-}" ]; then CLIPS=64; LONG=4; STEPS=3; N=2; NG=2; fi
mkdir -p "$R/tokenizer" "$R/generator-class" "$R/generator-text"
tar -xzf "$DIR/results.tgz" -C "$R"
cat "$R/results/device.log"

# the tokenizer: new resampler weights and config, the embedded VAE (stage 0 was not trained there)
cp "$DIR/tokenizer.safetensors" "$R/tokenizer/"
cp "$R/results/tokenizer_config.json" "$R/tokenizer/config.json"
cp assets/tokenizer/vae.safetensors "$R/tokenizer/"
cp "$DIR/generator-class.safetensors" "$R/generator-class/model.safetensors"
cp "$R/results/generator-class_config.json" "$R/generator-class/config.json"
if [ -n "${2:-}" ]; then  # device_continue.sh's files
  cp "$2/tokenizer.safetensors" "$R/tokenizer/"; cp "$2/tokenizer_config.json" "$R/tokenizer/config.json"
  cp "$2/generator-class.safetensors" "$R/generator-class/model.safetensors"
  cp "$2/generator-class_config.json" "$R/generator-class/config.json"
  cp "$2"/*_log.jsonl "$R/results/"
fi
python3 - "$R" <<'PY'
import json, sys
from flexvid.pipeline import VideoFlexTok
from flexvid.train_generator import fingerprint
run = sys.argv[1]
new = json.load(open(f"{run}/tokenizer/config.json"))
old = json.load(open("assets/tokenizer/config.json"))
assert new["vae"] == old["vae"], "the device run's VAE config differs from the embedded one"
fp = fingerprint(VideoFlexTok.from_pretrained(f"{run}/tokenizer", device="cpu"))
gen = json.load(open(f"{run}/generator-class/config.json"))
assert gen.get("tokenizer_fingerprint") in (None, fp), "the class generator was trained on other tokens"
print("tokenizer fingerprint", fp)
PY
# the class run's token cache: the text run finds its tokens (same fingerprint and clips) and adds captions
cat "$DIR"/tokens.safetensors.xz* | python3 -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.stdin.buffer), sys.stdout.buffer)" \
  > "$R/generator-text/tokens.safetensors"

python3 -m flexvid.train_generator --cond text --tokenizer "$R/tokenizer" --init assets/generator-text \
  --out-dir "$R/generator-text" --clips "$CLIPS" --long-clips "$LONG" --max-tokens 672 --caption-variants 4 \
  --p-variant 0.5 --text-tokens 24 --steps "$STEPS" --lr 5e-4 --min-lr 5e-5 --warmup 100 --threads 2 --no-bf16 \
  --probe-clips 8 --eval-every 2000 --ckpt-every 500

# the sampler defaults of the embedded generators (chosen on validation prompts; scripts/train_embedded.sh)
python3 - "$R" <<'PY'
import json, sys
run = sys.argv[1]
for cond, folder in (("text", f"{run}/generator-text/export"), ("class", f"{run}/generator-class")):
    cfg = json.load(open(f"{folder}/config.json"))
    shipped = json.load(open(f"assets/generator-{cond}/config.json"))["generator"]
    cfg["generator"].update({k: shipped[k] for k in ("temperature", "guidance", "decode_guidance") if k in shipped})
    cfg["text_model"] = json.load(open(f"assets/generator-{cond}/config.json")).get("text_model", cfg.get("text_model"))
    json.dump(cfg, open(f"{folder}/config.json", "w"), indent=2)
PY

flexvid eval-tokenizer --model "$R/tokenizer" --n "$N" --n-long 2 --out "$R/eval_tokenizer"
flexvid eval-generator --text-model "$R/generator-text/export" --class-model "$R/generator-class" \
  --tokenizer "$R/tokenizer" --n "$NG" --n-long 8 --out "$R/eval_generator"

if [ -n "${SHIP:-}" ]; then
  cp "$R/tokenizer/tokenizer.safetensors" "$R/tokenizer/config.json" assets/tokenizer/
  cp "$R/eval_tokenizer/eval.json" assets/tokenizer/eval.json
  for stage in a b c; do  # the tokenizer stages that ran: a (whole resampler), b and c (decoder side)
    [ -f "$R/results/tok_${stage}_log.jsonl" ] && cp "$R/results/tok_${stage}_log.jsonl" assets/tokenizer/train_log_tokenizer_${TAG}_${stage}.jsonl
  done
  cp "$R/generator-class/model.safetensors" "$R/generator-class/config.json" assets/generator-class/
  cp "$R/results/gen_class_log.jsonl" assets/generator-class/train_log_${TAG}.jsonl
  [ -f "$R/results/gen_c_log.jsonl" ] && cp "$R/results/gen_c_log.jsonl" assets/generator-class/train_log_${TAG}_c.jsonl
  cp "$R/generator-text/export/model.safetensors" "$R/generator-text/export/config.json" assets/generator-text/
  cp "$R/generator-text/log.jsonl" assets/generator-text/train_log_after_${TAG}.jsonl
  cp "$R/eval_generator/eval.json" assets/generator-text/eval.json
  echo "shipped into assets/: update the README's tables from $R/eval_tokenizer and $R/eval_generator"
fi
