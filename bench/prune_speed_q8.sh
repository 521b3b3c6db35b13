#!/usr/bin/env bash
# 2:4 with Q8_0 values vs the dense Q8_0 1.1B model (bench/RESULTS.md, issue 9): interleaved
# rounds of `coppice bench`; the third column runs the same pruned file with COPPICE_SPARSE=0
# (dense q8_0 kernels on the pruned weights).
set -euo pipefail
BIN=${BIN:-build/release/bin/coppice}
DENSE=${DENSE:-/work/models/bench-1.1b-q8_0.gguf}
DIR=${DIR:-/tmp/prune-1b}
ROUNDS=${ROUNDS:-2}
mkdir -p "$DIR"
[ -s "$DIR/nm24-q8_0.gguf" ] || "$BIN" prune "$DENSE" "$DIR/nm24-q8_0.gguf" --method nm --nm-magnitude -t 2
run() {  # label env model
  env $2 "$BIN" bench -m "$3" -p 64 -n 16 -r 2 -t 2 --json 2>/dev/null |
    /usr/bin/python3 -c "import json,sys; [print('$r', '$1', t['test'], round(t['tokens_per_second'],3), round(t['stddev'],3)) for t in json.load(sys.stdin)]"
}
for r in $(seq 1 "$ROUNDS"); do
  run dense-q8_0 COPPICE_SPARSE=1 "$DENSE"
  run nm24-q8_0 COPPICE_SPARSE=1 "$DIR/nm24-q8_0.gguf"
  run nm24-q8_0-dense-kernels COPPICE_SPARSE=0 "$DIR/nm24-q8_0.gguf"
done
