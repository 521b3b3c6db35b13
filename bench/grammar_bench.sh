#!/usr/bin/env bash
# Per-token overhead of grammar-constrained generation vs unconstrained, and grammar compile
# time for the largest test schema. Usage: bench/grammar_bench.sh [MODEL] [N_TOKENS]
# Reports generation ms/token for: unconstrained, a nested JSON Schema, and a GBNF grammar.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=build/release/bin/coppice
model=${1:-../shared/models/stories260K.gguf}
n=${2:-256}
schema=tests/data/schemas/40_nested.json
runs=5
ms_per_tok() {  # args...: prints mean generation ms/token over $runs seeds
  local total=0 toks=0
  for s in $(seq 1 $runs); do
    line=$("$bin" run -m "$model" -p "Once upon a time" --no-display-prompt -t 1 --temp 1 -s "$s" -n "$n" -v "$@" 2>&1 >/dev/null | grep '^prompt:')
    t=$(sed -E 's/.*generation: ([0-9]+) tokens in ([0-9.]+) ms.*/\1 \2/' <<<"$line")
    toks=$((toks + ${t% *})); total=$(echo "$total + ${t#* }" | bc -l)
  done
  printf "%-28s %6d tokens  %8.4f ms/token\n" "$1" "$toks" "$(echo "$total / $toks" | bc -l)"
}
echo "model: $model, up to $n tokens x $runs seeds, 1 thread"
ms_per_tok --ignore-eos
ms_per_tok --json-schema "@$schema"
ms_per_tok --grammar 'root ::= "{" ([a-z ]{1,20} ":" [0-9]{1,3} ","){1,30} "}"'
largest=$(ls -S tests/data/schemas/*.json | head -1)
echo "compile time, largest schema ($largest):"
"$bin" run -m "$model" -p x -n 1 -v --json-schema "@$largest" 2>&1 >/dev/null | grep '^grammar:'
echo "compile time, 45 KiB generated enum schema:"
python3 -c 'import json; print(json.dumps({"type":"object","properties":{f"k{i}":{"enum":[f"v{j}" for j in range(40)]} for i in range(60)},"required":[f"k{i}" for i in range(60)]}))' > /tmp/coppice_big_schema.json
"$bin" run -m "$model" -p x -n 1 -v --json-schema @/tmp/coppice_big_schema.json 2>&1 >/dev/null | grep '^grammar:'
