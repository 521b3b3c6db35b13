#!/usr/bin/env bash
# Speed of pruned 1.1B models vs the dense F16 model (bench/RESULTS.md, issue 9): interleaved
# rounds of `coppice bench` so that load from other processes hits every model alike.
#   coppice prune bench-1.1b-f16.gguf nm24.gguf --method nm --calib-tokens 64 --calib-ctx 64
#   coppice prune bench-1.1b-f16.gguf st25.gguf --method structured --sparsity 0.25 --calib README.md --calib-tokens 128 --calib-ctx 128
set -euo pipefail
BIN=${BIN:-build/release/bin/coppice}
DENSE=${DENSE:-/work/models/bench-1.1b-f16.gguf}
DIR=${DIR:-/tmp/prune-1b}
ROUNDS=${ROUNDS:-2}
for r in $(seq 1 "$ROUNDS"); do
  for m in "$DENSE" "$DIR/nm24.gguf" "$DIR/st25.gguf"; do
    "$BIN" bench -m "$m" -p 64 -n 16 -r 2 -t 2 --json 2>/dev/null |
      /usr/bin/python3 -c "import json,sys; [print('$r', '$(basename "$m")', t['test'], round(t['tokens_per_second'],3), round(t['stddev'],3)) for t in json.load(sys.stdin)]"
  done
done
