#!/usr/bin/env bash
# Decode weight-read bandwidth against the machine's read bandwidth (issue 3's 80 % target).
# Per model: micro_kernels read_bandwidth (1 GiB over the threads, best of 5: the issue's "best read
# bandwidth measured on the machine"; the machine is shared and single passes drop) right before
# `coppice bench -p 0 -n N`, so both see the same machine state. Bytes read per token = the
# file's tensor bytes minus token_embd (one row of it is read per token, the rest never).
#   bench/decode_bandwidth.sh [MODEL.gguf ...]   (env: BIN, MK, T=2, N=128, R=3, ROUNDS=1)
set -euo pipefail
BIN=${BIN:-build/release/bin/coppice}
MK=${MK:-build/release/bench/micro_kernels}
T=${T:-2}; N=${N:-128}; R=${R:-3}; ROUNDS=${ROUNDS:-1}
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(/work/models/bench-1.1b-{q4_0,q4_k_m,q8_0,f16}.gguf)
echo "| round | model | streamed MB/token | tg$N t/s | decode GB/s | read GB/s (best of 5) | fraction |"
echo "|---:|---|---:|---:|---:|---:|---:|"
for r in $(seq 1 "$ROUNDS"); do
  for m in "${models[@]}"; do
    bytes=$("$BIN" info --all -m "$m" 2>/dev/null | /usr/bin/python3 -c '
import sys
total = embd = 0
for line in sys.stdin:
    f = line.split()
    if len(f) >= 4 and f[-1].isdigit() and f[2].startswith("["):  # tensor  type  [shape]  bytes
        total += int(f[-1])
        if f[0] == "token_embd.weight": embd = int(f[-1])
print(total - embd)')
    bw=$(COPPICE_BENCH_THREADS=$T "$MK" --benchmark_filter=read_bandwidth --benchmark_repetitions=5 2>/dev/null |
         /usr/bin/python3 -c 'import sys,re; print(max(float(m.group(1)) for l in sys.stdin if (m := re.search(r"real_time .*bytes/s=([0-9.]+)G", l))))')
    tps=$("$BIN" bench -m "$m" -p 0 -n "$N" -r "$R" -t "$T" --json 2>/dev/null |
          /usr/bin/python3 -c 'import json,sys; print(round(json.load(sys.stdin)[0]["tokens_per_second"], 2))')
    /usr/bin/python3 -c "b=$bytes; t=$tps; bw=$bw; g=b*t/1e9; print(f'| $r | $(basename "$m") | {b/1e6:.0f} | {t} | {g:.1f} | {bw:.1f} | {100*g/bw:.0f} % |')"
  done
done
