#!/usr/bin/env bash
# Quality vs sparsity of `coppice prune` on stories260K (bench/RESULTS.md, issue 9).
# Evaluation text: stories sampled from the model itself (seeds 1..N, temperature 1); the
# calibration of wanda / nm is the prune command's own self-generated text (seed 42), so the
# two never overlap. Prints one markdown row per (method, sparsity).
# ONLY=structured runs just the structured rows.
set -euo pipefail
BIN=${BIN:-build/release/bin/coppice}
MODEL=${MODEL:-../shared/models/stories260K.gguf}
OUT=${OUT:-/tmp/coppice-prune-bench}
mkdir -p "$OUT"
EVAL="$OUT/eval.txt"
if [ ! -s "$EVAL" ]; then
  for s in $(seq 1 24); do
    "$BIN" run -m "$MODEL" -p "Once upon a time" -n 256 --temp 1 --seed "$s" -t 1 2>/dev/null >> "$EVAL"
    echo >> "$EVAL"
  done
fi
echo "| method | sparsity | ppl | mean KL | top-1 |"
echo "|---|---:|---:|---:|---:|"
row() {  # method label sparsity args...
  local label=$1 sp=$2; shift 2
  "$BIN" prune "$MODEL" "$OUT/p.gguf" "$@" -t 1 --eval "$EVAL" --eval-ctx 128 --eval-chunks 64 > "$OUT/log.txt" 2>/dev/null
  local ppl kl top
  ppl=$(grep 'perplexity:' "$OUT/log.txt" | sed 's/.*pruned \([0-9.]*\).*/\1/')
  kl=$(grep 'KL(base' "$OUT/log.txt" | sed 's/.*mean \([0-9.]*\);.*/\1/')
  top=$(grep 'KL(base' "$OUT/log.txt" | sed 's/.*agreement \([0-9.]*%\).*/\1/')
  echo "| $label | $sp | $ppl | $kl | $top |"
}
[ "${ONLY:-}" = structured ] || for sp in 0.1 0.2 0.3 0.4 0.5 0.6; do
  row magnitude "$sp" --method magnitude --sparsity "$sp"
  row wanda "$sp" --method wanda --sparsity "$sp"
done
for sp in 0.1 0.2 0.3 0.4 0.5 0.6; do
  row "structured (bias compensation)" "$sp" --method structured --sparsity "$sp"
  row "structured (no compensation)" "$sp" --method structured --sparsity "$sp" --no-bias-comp
  row "structured --ffn-global (comp.)" "$sp" --method structured --sparsity "$sp" --ffn-global
done
row "nm 2:4 (wanda score)" 0.5 --method nm --nm 2:4
row "nm 2:4 (magnitude score)" 0.5 --method nm --nm 2:4 --nm-magnitude
"$BIN" prune "$MODEL" "$OUT/p.gguf" --method magnitude --sparsity 0 -t 1 --eval "$EVAL" --eval-ctx 128 --eval-chunks 64 2>/dev/null | grep 'perplexity:'
