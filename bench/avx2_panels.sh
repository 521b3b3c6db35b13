#!/usr/bin/env bash
# AVX2 panel layouts vs the AVX2 file-row kernels (and the AVX-512 panels), whole model,
# interleaved per round: COPPICE_ISA=avx2 with COPPICE_PACK=0 (file rows) and =1 (panels).
#   ROUNDS=2 P=64 N=16 T=2 bash bench/avx2_panels.sh [models...]
set -euo pipefail
BIN=${BIN:-build/release/bin/coppice}
ROUNDS=${ROUNDS:-2} P=${P:-64} N=${N:-16} T=${T:-2}
MODELS=("$@")
[ ${#MODELS[@]} -gt 0 ] || MODELS=(/work/models/bench-1.1b-q4_0.gguf /work/models/bench-1.1b-q8_0.gguf /work/models/bench-1.1b-q4_k_m.gguf)
for r in $(seq "$ROUNDS"); do
  for m in "${MODELS[@]}"; do
    for cfg in "avx2 0" "avx2 1" "avx512 1"; do
      set -- $cfg
      out=$(COPPICE_ISA=$1 COPPICE_PACK=$2 "$BIN" bench -m "$m" -t "$T" -p "$P" -n "$N" -r 1 --json)
      echo "round=$r model=$(basename "$m") isa=$1 pack=$2 $out"
    done
  done
done
