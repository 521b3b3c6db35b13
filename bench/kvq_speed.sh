#!/usr/bin/env bash
# Decode speed at long context per KV cache type (bench/RESULTS.md, issue 8): interleaved rounds
# of `coppice bench --depth` on a random-weight long-context model, so that load from other
# processes hits every type alike. Prints: round threads type t/s KV-MiB.
#   coppice synth /tmp/kvq8/long.gguf --dim 256 --layers 4 --heads 4 --kv-heads 4 --ffn 768 \
#     --vocab 2000 --ctx 8192 --type q8_0 --pure
set -euo pipefail
BIN=${BIN:-build/release/bin/coppice}
MODEL=${MODEL:-/tmp/kvq8/long.gguf}
DEPTH=${DEPTH:-4096}
ROUNDS=${ROUNDS:-3}
TYPES=${TYPES:-f16 q8_0 q4_0}
THREADS=${THREADS:-1 2}
for r in $(seq 1 "$ROUNDS"); do
  for t in $THREADS; do
    for ct in $TYPES; do
      out=$("$BIN" bench -m "$MODEL" -p 0 -n 64 -r 1 --depth "$DEPTH" -t "$t" --cache-type "$ct" 2>&1)
      tps=$(echo "$out" | sed -n 's/.*tg64@d[0-9]* | *\([0-9.]*\) .*/\1/p')
      mib=$(echo "$out" | sed -n 's/.*cells, \([0-9.]*\) MiB.*/\1/p')
      echo "$r $t $ct $tps $mib"
    done
  done
done
