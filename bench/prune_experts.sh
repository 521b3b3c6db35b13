#!/usr/bin/env bash
# Expert pruning of a random-weight MoE model (bench/RESULTS.md, issue 9): KL / top-1 vs the
# number of experts removed per layer, file size, and decode speed (interleaved rounds).
# There is no trained MoE in ../shared/models, so the model is `coppice synth` qwen3moe.
set -euo pipefail
BIN=${BIN:-build/release/bin/coppice}
OUT=${OUT:-/tmp/coppice-prune-experts}
ROUNDS=${ROUNDS:-2}
mkdir -p "$OUT"
BASE="$OUT/moe16.gguf"
[ -s "$BASE" ] || "$BIN" synth "$BASE" --arch qwen3moe --dim 512 --layers 4 --heads 8 --kv-heads 4 \
  --ffn 512 --ffn-exp 512 --experts 16 --experts-used 4 --vocab 4096 --ctx 1024 --type f16 --pure --std 0.05 -t 2 > /dev/null
EVAL=README.md CALIB=docs/ARCHITECTURE.md
echo "| experts removed | kept | used/token | file MiB | ppl | mean KL | top-1 |"
echo "|---:|---:|---:|---:|---:|---:|---:|"
for keep in 16 14 12 10 8 6 4 2; do
  "$BIN" prune "$BASE" "$OUT/k$keep.gguf" --method experts --experts-keep $keep --calib "$CALIB" \
    --calib-tokens 1024 --calib-ctx 256 -t 2 --eval "$EVAL" --eval-ctx 128 --eval-chunks 16 > "$OUT/log.txt" 2>/dev/null
  used=$(grep 'experts per layer' "$OUT/log.txt" | sed 's/.*used per token: \([0-9]*\).*/\1/')
  mib=$(grep '  file: base' "$OUT/log.txt" | sed 's/.*pruned \([0-9.]*\) MiB.*/\1/')
  ppl=$(grep 'perplexity:' "$OUT/log.txt" | sed 's/.*pruned \([0-9.]*\).*/\1/')
  kl=$(grep 'KL(base' "$OUT/log.txt" | sed 's/.*mean \([0-9.]*\);.*/\1/')
  top=$(grep 'KL(base' "$OUT/log.txt" | sed 's/.*agreement \([0-9.]*%\).*/\1/')
  echo "| $((16 - keep)) | $keep | $used | $mib | $ppl | $kl | $top |"
done
grep 'perplexity:' "$OUT/log.txt"
echo
echo "decode (tg32) and prefill (pp64) tok/s, 2 threads, interleaved:"
for r in $(seq 1 "$ROUNDS"); do
  for m in moe16 k16 k8 k4 k2; do
    "$BIN" bench -m "$OUT/$m.gguf" -p 64 -n 32 -r 2 -t 2 2>/dev/null | grep -E 'pp64|tg32' | tr -s ' ' | sed "s/^/round $r $m: /"
  done
done
