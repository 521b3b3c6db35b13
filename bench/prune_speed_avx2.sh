#!/usr/bin/env bash
# The AVX2 2:4 kernels (COPPICE_ISA=avx2 on an AVX-512 machine) vs dense AVX2 kernels on the
# same pruned 1.1B files (COPPICE_SPARSE=0) and the dense models (bench/RESULTS.md, issue 9).
# Needs /tmp/prune-1b/nm24.gguf (bench/prune_speed.sh) and nm24-q8_0.gguf (prune_speed_q8.sh).
set -euo pipefail
BIN=${BIN:-build/release/bin/coppice}
DIR=${DIR:-/tmp/prune-1b}
ROUNDS=${ROUNDS:-1}
run() {  # label sparse model
  COPPICE_ISA=avx2 COPPICE_SPARSE=$2 "$BIN" bench -m "$3" -p 64 -n 16 -r 2 -t 2 --json 2>/dev/null |
    /usr/bin/python3 -c "import json,sys; [print('$r', '$1', t['test'], round(t['tokens_per_second'],3), round(t['stddev'],3)) for t in json.load(sys.stdin)]"
}
for r in $(seq 1 "$ROUNDS"); do
  run dense-f16 1 /work/models/bench-1.1b-f16.gguf
  run nm24-f16-sparse 1 "$DIR/nm24.gguf"
  run nm24-f16-dense-kernels 0 "$DIR/nm24.gguf"
  run dense-q8_0 1 /work/models/bench-1.1b-q8_0.gguf
  run nm24-q8_0-sparse 1 "$DIR/nm24-q8_0.gguf"
  run nm24-q8_0-dense-kernels 0 "$DIR/nm24-q8_0.gguf"
done
