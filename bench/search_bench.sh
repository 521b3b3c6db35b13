#!/usr/bin/env bash
# Success rate vs token budget for each search strategy on stories260K: reward = the text
# mentions "dog" (+1) and ends with a full stop (+1); a hit is a best candidate scoring 2.
# Candidates are at most 3 sentences (--step delim:. --max-steps 3, -n 64), 4 branches.
# "plain" is one independent sample per seed (best-of-n with -N 1): what the same budget buys
# without a scorer, since any one of several unscored samples is as good as the first.
# usage: bench/search_bench.sh [BIN] [MODEL] [SEEDS]
set -euo pipefail
BIN=${1:-build/release/bin/coppice}
MODEL=${2:-../shared/models/stories260K.gguf}
SEEDS=${3:-32}
COMMON=(-m "$MODEL" -p "Once upon a time" -t 1 --temp 1 --top-k 0 --top-p 1 --min-p 0
        -n 64 --step 'delim:.' --max-steps 3 --scorer rules --keyword dog --rule '\.\s*$' --json -q)
hits() {  # strategy budget N -> hits out of SEEDS
  local h=0
  for ((s = 1; s <= SEEDS; s++)); do
    score=$("$BIN" search "${COMMON[@]}" --strategy "$1" --budget "$2" -N "$3" -s $((1000 + s)) |
            /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["candidates"][0]["score"])')
    [[ "$score" == "2.0" ]] && h=$((h + 1))
  done
  echo "$h"
}
echo "| strategy | budget 160 | budget 320 | budget 640 |"
echo "|---|---:|---:|---:|"
row="| plain sampling (1 sample) |"
p=$(hits best-of-n 64 1)
for b in 160 320 640; do row+=" $p/$SEEDS |"; done
echo "$row"
for st in best-of-n beam diverse-beam tree particles; do
  row="| $st |"
  for b in 160 320 640; do
    n=4
    # best-of-n: as many samples as the budget pays for in full (-n 64 each); more would all
    # be cut mid-sentence, since the samples run side by side.
    [[ $st == best-of-n ]] && n=$((b / 64))
    row+=" $(hits "$st" "$b" "$n")/$SEEDS |"
  done
  echo "$row"
done
