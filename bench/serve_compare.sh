#!/usr/bin/env bash
# Serving load, coppice serve vs llama.cpp's llama-server, same GGUF, threads and slots, one
# after the other on the same machine (bench/serve_load.mjs drives both with streaming
# completions: a mix of short and long prompts, greedy, max_tokens tokens each).
#
#   bench/serve_compare.sh MODEL.gguf /path/to/llama-server [CONCURRENCY=1,4,16,64] [SECONDS=30]
#
# llama.cpp is not part of this project: build it yourself beside the project. Env: THREADS (2),
# PARALLEL (slots, 16), CTX (context per slot, 2048), MAX_TOKENS (64), LONG_WORDS (120),
# COPPICE_ARGS (extra `coppice serve` flags, e.g. "--tpot-ms 150"), SKIP_LLAMA=1 (coppice only).
set -euo pipefail
cd "$(dirname "$0")/.."
model=$1 llama_server=$2 conc=${3:-1,4,16,64} secs=${4:-30}
threads=${THREADS:-2} parallel=${PARALLEL:-16} ctx=${CTX:-2048} max_tokens=${MAX_TOKENS:-64}
port_a=18431 port_b=18432
wait_up() { for _ in $(seq 1 120); do curl -sf "http://127.0.0.1:$1/health" >/dev/null && return 0; sleep 0.5; done; return 1; }
run_load() {
  node bench/serve_load.mjs --url "http://127.0.0.1:$1/v1" --concurrency "$conc" --duration "$secs" \
    --max-tokens "$max_tokens" --long-words "${LONG_WORDS:-120}" --extra "$2"
}

build/release/bin/coppice serve -m "$model" --port $port_a -t "$threads" --parallel "$parallel" \
  -c "$ctx" ${COPPICE_ARGS:-} > /tmp/coppice_serve.log 2>&1 &
pid=$!
wait_up $port_a
echo "## coppice serve (-t $threads --parallel $parallel -c $ctx)"
run_load $port_a '{}'
kill -TERM $pid; wait $pid || true

[ "${SKIP_LLAMA:-0}" = 1 ] && exit 0
"$llama_server" -m "$model" --port $port_b -t "$threads" -np "$parallel" -c $((ctx * parallel)) \
  --cont-batching > /tmp/llama_server.log 2>&1 &
pid=$!
wait_up $port_b
echo "## llama-server (-t $threads -np $parallel -c $((ctx * parallel)))"
run_load $port_b '{"ignore_eos":true}'
kill -TERM $pid; wait $pid || true
